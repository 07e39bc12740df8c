"""Sign-in, sign-out and server-side sessions."""

from __future__ import annotations

import secrets
from datetime import timedelta
from functools import wraps
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from . import audit
from .accounts import get_user_by_email, normalize_email
from .database import begin_write
from .extensions import db, login_manager
from .htmx import hx_redirect, is_htmx
from .models import Role, User, UserSession, utcnow
from .security import hash_password, keyed_hash, needs_rehash, verify_password
from .throttle import login_by_account, login_by_ip

bp = Blueprint("auth", __name__)

GENERIC_LOGIN_ERROR = "Incorrect email or password."
LAST_SEEN_WRITE_INTERVAL = timedelta(seconds=60)


class LoginForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[DataRequired("Enter your email address."), Length(max=254)],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired("Enter your password."), Length(max=256)],
        render_kw={"autocomplete": "current-password"},
    )


def safe_next(target: str | None) -> str | None:
    """Return target if it is a path on this site, else None (no open redirects)."""
    if not target or len(target) > 2000:
        return None
    if any(ord(ch) < 32 or ch == "\\" for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def home_for(user: User) -> str:
    """Where a user lands after sign-in."""
    if user.role == Role.OWNER:
        return url_for("dashboard.list_tokens")
    if user.role == Role.SUPPORT:
        return url_for("support.console")
    return url_for("main.home")


def _end_record(record: UserSession, reason: str) -> None:
    record.ended_at = utcnow()
    record.end_reason = reason


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Load the user of the server-side session named by the cookie, if it is still live."""
    sid = session.get("sid")
    if not sid or not isinstance(sid, str):
        return None
    record = db.session.scalar(select(UserSession).where(UserSession.sid_hash == keyed_hash(sid)))
    if record is None or str(record.user_id) != user_id:
        return None
    if record.ended_at is not None:
        # Ended on the server (sign-out elsewhere, deactivation, password change): say so.
        g.session_end_reason = record.end_reason or "ended"
        return None
    now = utcnow()
    config = current_app.config
    reason = None
    if not record.user.active:
        reason = "deactivated"
    elif now - record.created_at > timedelta(seconds=config["SESSION_ABSOLUTE_SECONDS"]):
        reason = "absolute_timeout"
    elif now - record.last_seen_at > timedelta(seconds=config["SESSION_IDLE_SECONDS"]):
        reason = "idle_timeout"
    # Background polls (the page refreshing its "last used" times) are not the person
    # doing anything, so they must not keep an idle session alive.
    background = request.headers.get("X-VasBox-Background") == "1"
    stale = not background and now - record.last_seen_at > LAST_SEEN_WRITE_INTERVAL
    if reason or stale:
        # Touching last_seen at most once a minute keeps idle tracking honest without a
        # database write on every page view.
        record_id = record.id
        begin_write()
        record = db.session.get(UserSession, record_id)
        if reason:
            _end_record(record, reason)
        else:
            record.last_seen_at = now
        db.session.commit()
    if reason:
        g.session_end_reason = reason
        return None
    g.user_session = record
    return record.user


@login_manager.unauthorized_handler
def unauthorized() -> Response:
    """Send anonymous visitors to sign in; htmx requests get 401 plus HX-Redirect."""
    reason = g.get("session_end_reason")
    message = (
        "Your session has ended. Please sign in again." if reason else "Please sign in to continue."
    )
    flash(message, "info")
    if is_htmx():
        current = request.headers.get("HX-Current-URL", "")
        parts = urlsplit(current)
        back = (
            safe_next(parts.path + (f"?{parts.query}" if parts.query else "")) if current else None
        )
        login_url = url_for("auth.login", next=back) if back else url_for("auth.login")
        return hx_redirect(make_response("", 401), login_url)
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def roles_required(*roles: Role, message: str | None = None):
    """Allow only signed-in users with one of roles; others get a 403 page saying message."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403, message)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _start_session(user: User) -> None:
    # A fresh cookie and a fresh server-side record: nothing from before sign-in survives,
    # so a planted session id cannot be promoted (no fixation).
    session.clear()
    sid = secrets.token_urlsafe(32)
    db.session.add(
        UserSession(
            sid_hash=keyed_hash(sid),
            user_id=user.id,
            ip=audit.client_ip(),
            user_agent=audit.client_user_agent(),
        )
    )
    session["sid"] = sid
    login_user(user)


def _throttled_response(form: LoginForm, retry_after: int) -> Response:
    minutes = max(1, round(retry_after / 60))
    error = (
        "Too many failed sign-in attempts. Wait "
        f"{minutes} minute{'s' if minutes != 1 else ''} and try again."
    )
    response = make_response(render_template("auth/login.html", form=form, error=error), 429)
    response.headers["Retry-After"] = str(retry_after)
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or home_for(current_user))
    form = LoginForm()
    if request.method == "GET":
        return render_template("auth/login.html", form=form)
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form), 400

    email = normalize_email(form.email.data)
    ip = audit.client_ip() or "unknown"
    retry_after = login_by_ip.retry_after(ip) or login_by_account.retry_after(email)
    if retry_after:
        return _throttled_response(form, retry_after)

    user = get_user_by_email(email)
    # Unknown users still cost one argon2 verify, so timing does not reveal who has an account.
    password_ok = verify_password(user.password_hash if user else None, form.password.data)
    if not (user and password_ok and user.active):
        login_by_ip.hit(ip)
        login_by_account.hit(email)
        begin_write()
        audit.record(
            "auth.login_failed",
            business_id=user.business_id if user else None,
            target_type="user" if user else None,
            target_id=user.id if user else None,
            details={"email": email},
        )
        db.session.commit()
        return render_template("auth/login.html", form=form, error=GENERIC_LOGIN_ERROR), 400

    login_by_account.clear(email)
    user_id = user.id
    new_hash = hash_password(form.password.data) if needs_rehash(user.password_hash) else None
    begin_write()
    user = db.session.get(User, user_id)
    if new_hash:
        user.password_hash = new_hash
    _start_session(user)
    audit.record(
        "auth.login",
        business_id=user.business_id,
        actor_user_id=user.id,
        target_type="user",
        target_id=user.id,
    )
    db.session.commit()
    return redirect(safe_next(request.args.get("next")) or home_for(user), code=303)


@bp.post("/logout")
def logout():
    record = g.get("user_session") if current_user.is_authenticated else None
    if record is not None:
        record_id, user = record.id, current_user._get_current_object()
        begin_write()
        record = db.session.get(UserSession, record_id)
        _end_record(record, "logout")
        audit.record(
            "auth.logout",
            business_id=user.business_id,
            actor_user_id=user.id,
            target_type="user",
            target_id=user.id,
        )
        db.session.commit()
    logout_user()
    session.clear()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.login"), code=303)
