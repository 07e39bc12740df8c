"""The home page and the health check."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import text

from .extensions import db
from .models import Role

bp = Blueprint("main", __name__)


@bp.get("/")
@login_required
def home():
    if current_user.role == Role.OWNER:
        return redirect(url_for("dashboard.list_tokens"))
    if current_user.role == Role.SUPPORT:
        return redirect(url_for("support.console"))
    return render_template("home.html")


@bp.get("/healthz")
def healthz():
    """Unauthenticated health check for load balancers: 200 when the database answers."""
    db.session.execute(text("SELECT 1"))
    return jsonify(status="ok")
