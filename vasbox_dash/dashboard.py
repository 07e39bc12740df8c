"""The API Tokens page and its htmx fragments (owners only)."""

from __future__ import annotations

import secrets

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    url_for,
)
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField

from . import tokens as token_service
from .auth import roles_required
from .htmx import hx_retarget, is_htmx
from .models import ApiToken, Role, utcnow
from .tokens import TokenAlreadyCreated, TokenError

bp = Blueprint("dashboard", __name__, url_prefix="/admin")

FORBIDDEN_MESSAGE = (
    "Only the Business Owner can manage API tokens. Ask your Business Owner if an "
    "integration needs a token."
)
_owner_only = roles_required(Role.OWNER, message=FORBIDDEN_MESSAGE)


class CreateTokenForm(FlaskForm):
    name = StringField(
        "Name",
        render_kw={
            "placeholder": "e.g., Accounting Integration",
            "autocomplete": "off",
            "maxlength": "200",
        },
    )
    # A one-time key per dialog: a double submit finds the first token instead of making two.
    creation_key = HiddenField()


def _no_store(response: Response) -> Response:
    # The reveal (and anything that could carry it) must never be cached or replayed.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _page_context() -> dict:
    active, revoked = token_service.list_tokens(current_user.business_id)
    return {
        "active": active,
        "revoked": revoked,
        "tz": current_user.business.timezone,
        "max_tokens": _max_tokens(),
    }


def _max_tokens() -> int:
    return current_app.config["MAX_ACTIVE_TOKENS"]


def _token_or_404(public_id: str) -> ApiToken:
    token = token_service.get_token(current_user.business_id, public_id)
    if token is None:
        abort(404)
    return token


def _new_form() -> CreateTokenForm:
    form = CreateTokenForm()
    form.creation_key.data = secrets.token_urlsafe(16)
    return form


@bp.get("/api-tokens")
@_owner_only
def list_tokens():
    """The API Tokens page."""
    return render_template("tokens/index.html", **_page_context())


@bp.get("/api-tokens/new")
@_owner_only
def new_token():
    """The create dialog (htmx) or, without JavaScript, a page with the same form."""
    form = _new_form()
    if is_htmx():
        return render_template("tokens/_create_dialog.html", form=form)
    return render_template("tokens/new.html", form=form)


@bp.post("/api-tokens")
@_owner_only
def create_token():
    """Create a token and reveal its secret once; never cached, never pushed to history."""
    form = CreateTokenForm()
    if not form.validate_on_submit():
        abort(400)
    key = (form.creation_key.data or "").strip()[:64] or None
    try:
        token, plaintext = token_service.issue_token(current_user, form.name.data, key)
    except TokenAlreadyCreated:
        return _no_store(_already_created_response())
    except TokenError as error:
        form.name.errors = [str(error)]
        template = "tokens/_create_dialog.html" if is_htmx() else "tokens/new.html"
        return _no_store(make_response(render_template(template, form=form), 422))
    context = {"token": token, "plaintext": plaintext, **_page_context()}
    if is_htmx():
        body = render_template("tokens/_reveal_dialog.html", oob_sections=True, **context)
    else:
        body = render_template("tokens/created.html", **context)
    return _no_store(make_response(body, 201 if not is_htmx() else 200))


def _already_created_response() -> Response:
    message = (
        "This form was already sent, and the token was created then. For security, its "
        "secret is shown only once. If you did not copy it, revoke that token and create "
        "a new one."
    )
    if is_htmx():
        return make_response(
            render_template(
                "tokens/_already_created_dialog.html", message=message, **_page_context()
            ),
            409,
        )
    flash(message, "warning")
    return redirect(url_for("dashboard.list_tokens"), code=303)


@bp.get("/api-tokens/<public_id>/revoke")
@_owner_only
def confirm_revoke(public_id: str):
    """The inline confirmation row (htmx) or a confirmation page."""
    token = _token_or_404(public_id)
    if token.is_revoked:
        if is_htmx():
            return _revoked_elsewhere(token)
        return redirect(url_for("dashboard.list_tokens"))
    tz = current_user.business.timezone
    if is_htmx():
        return render_template("tokens/_token_row.html", token=token, state="confirming", tz=tz)
    return render_template("tokens/revoke.html", token=token, tz=tz)


@bp.get("/api-tokens/<public_id>/row")
@_owner_only
def token_row(public_id: str):
    """The token's row in its current state (Cancel on the confirmation)."""
    token = _token_or_404(public_id)
    if not is_htmx():
        return redirect(url_for("dashboard.list_tokens"))
    if token.is_revoked:
        return _revoked_elsewhere(token)
    return render_template(
        "tokens/_token_row.html", token=token, state="normal", tz=current_user.business.timezone
    )


def _revoked_elsewhere(token: ApiToken) -> Response:
    # The row is stale (revoked in another tab or by another request). A redirect would make
    # htmx swap the whole page into this one row, and a revoked row does not fit the active
    # table, so both lists are re-rendered instead.
    body = render_template(
        "tokens/_sections.html",
        alert_message=f"“{token.name}” was already revoked.",
        **_page_context(),
    )
    return hx_retarget(make_response(body), "#token-sections", "outerHTML")


@bp.post("/api-tokens/<public_id>/revoke")
@_owner_only
def revoke_token(public_id: str):
    """Revoke now; committed before the response is sent, and idempotent."""
    token, changed = token_service.revoke_token(current_user, public_id)
    if token is None:
        abort(404)
    message = (
        f"“{token.name}” was revoked. Apps using it can no longer connect."
        if changed
        else f"“{token.name}” was already revoked."
    )
    if is_htmx():
        return render_template("tokens/_sections.html", alert_message=message, **_page_context())
    flash(message, "success")
    return redirect(url_for("dashboard.list_tokens"), code=303)


@bp.get("/api-tokens/times")
@_owner_only
def token_times():
    """Fresh "last used" wording for every active row, as out-of-band swaps."""
    if not is_htmx():
        return redirect(url_for("dashboard.list_tokens"))
    active, _ = token_service.list_tokens(current_user.business_id)
    return render_template(
        "tokens/_times.html", active=active, tz=current_user.business.timezone, now=utcnow()
    )
