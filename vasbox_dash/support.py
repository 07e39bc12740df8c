"""VasBox support console (read-only, owner-granted access)."""

from __future__ import annotations

from flask import Blueprint, render_template

from .auth import roles_required
from .models import Role

bp = Blueprint("support", __name__, url_prefix="/support")


@bp.get("/")
@roles_required(Role.SUPPORT)
def console():
    return render_template("support/console.html")
