"""Owner-granted support access: the owner allows and ends it; a VasBox support agent
enters the owner's code and sees the business's tokens and token activity read-only.

Access is checked against the database on every request (no cache), so ending access or
the code expiring cuts the agent off at the very next request.
"""

from __future__ import annotations

import secrets
import unicodedata
from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select

from . import audit
from . import tokens as token_service
from .activity import page_arg, token_activity
from .auth import roles_required
from .database import begin_write
from .extensions import db
from .htmx import is_htmx
from .models import Business, Role, SupportAccess, SupportGrant, User, utcnow
from .security import PUBLIC_ID_ALPHABET, PUBLIC_ID_RE, keyed_hash
from .throttle import support_code_by_agent, support_code_by_business

GRANT_LIFETIME = timedelta(minutes=30)
CODE_LENGTH = 8
SEARCH_LIMIT = 10
NO_ACCESS_MESSAGE = (
    "You have no access to this business right now. Ask the Business Owner to click "
    "“Allow support access” and read you the code. Access lasts 30 minutes and stops as "
    "soon as the owner ends it."
)
WRONG_CODE_MESSAGE = (
    "That code does not open this business. Check it with the owner: codes work for 30 "
    "minutes and stop when the owner ends access."
)

bp = Blueprint("support", __name__, url_prefix="/support")
owner_bp = Blueprint("support_access", __name__, url_prefix="/admin/support-access")

_support_only = roles_required(
    Role.SUPPORT, message="The support console is for VasBox support staff."
)
_owner_only = roles_required(
    Role.OWNER, message="Only the Business Owner can allow or end support access."
)


def generate_code() -> str:
    """A random 8-character code from the unambiguous alphabet, easy to read aloud."""
    return "".join(secrets.choice(PUBLIC_ID_ALPHABET) for _ in range(CODE_LENGTH))


def format_code(code: str) -> str:
    """The code as shown to the owner: upper case, in two groups of four."""
    return f"{code[:4]}-{code[4:]}".upper()


def normalize_code(raw: str | None) -> str:
    """The code as typed by the agent, without spaces or dashes and in lower case."""
    text = unicodedata.normalize("NFKC", raw or "")
    return "".join(ch for ch in text if ch not in " -\t").lower()[:64]


def _live(now):
    return (SupportGrant.ended_at.is_(None), SupportGrant.expires_at > now)


def active_grant(business_id: int) -> SupportGrant | None:
    """The business's live grant (not ended, not expired), if any."""
    return db.session.scalar(
        select(SupportGrant)
        .where(SupportGrant.business_id == business_id, *_live(utcnow()))
        .order_by(SupportGrant.created_at.desc(), SupportGrant.id.desc())
        .limit(1)
    )


def grant_agents(grant: SupportGrant) -> list[str]:
    """Names of the agents who entered the grant's code, first one first."""
    return list(
        db.session.scalars(
            select(User.display_name)
            .join(SupportAccess, SupportAccess.agent_id == User.id)
            .where(SupportAccess.grant_id == grant.id)
            .order_by(SupportAccess.created_at, SupportAccess.id)
        )
    )


def _end_live_grants(business_id: int, actor_id: int, reason: str) -> int:
    now = utcnow()
    grants = db.session.scalars(
        select(SupportGrant).where(SupportGrant.business_id == business_id, *_live(now))
    ).all()
    for grant in grants:
        grant.ended_at, grant.ended_by_id = now, actor_id
        audit.record(
            "support.ended",
            business_id=business_id,
            actor_user_id=actor_id,
            target_type="support_grant",
            target_id=grant.id,
            details={"reason": reason},
        )
    return len(grants)


def grant_access(owner: User) -> tuple[SupportGrant, str]:
    """Open support access for the owner's business; returns (grant, code).

    The code is returned once and stored only as a keyed hash. A new grant replaces a live
    one, so a business has at most one code that works.
    """
    owner_id, business_id = owner.id, owner.business_id
    code = generate_code()
    begin_write()
    _end_live_grants(business_id, owner_id, "replaced")
    now = utcnow()
    grant = SupportGrant(
        business_id=business_id,
        code_hash=keyed_hash(code),
        created_by_id=owner_id,
        created_at=now,
        expires_at=now + GRANT_LIFETIME,
    )
    db.session.add(grant)
    db.session.flush()
    audit.record(
        "support.granted",
        business_id=business_id,
        actor_user_id=owner_id,
        target_type="support_grant",
        target_id=grant.id,
        details={"expires_at": grant.expires_at.isoformat()},
    )
    db.session.commit()
    return grant, code


def end_access(owner: User) -> int:
    """End every live grant of the owner's business at once; returns how many were live."""
    owner_id, business_id = owner.id, owner.business_id
    begin_write()
    ended = _end_live_grants(business_id, owner_id, "ended")
    db.session.commit()
    return ended


def agent_grant(agent_id: int, business_id: int) -> SupportGrant | None:
    """The live grant through which the agent may view the business, else None."""
    return db.session.scalar(
        select(SupportGrant)
        .join(SupportAccess, SupportAccess.grant_id == SupportGrant.id)
        .where(
            SupportAccess.agent_id == agent_id,
            SupportGrant.business_id == business_id,
            *_live(utcnow()),
        )
        .order_by(SupportGrant.expires_at.desc())
        .limit(1)
    )


def agent_grants(agent_id: int) -> list[SupportGrant]:
    """The agent's live grants across businesses, soonest to expire first."""
    return list(
        db.session.scalars(
            select(SupportGrant)
            .join(SupportAccess, SupportAccess.grant_id == SupportGrant.id)
            .where(SupportAccess.agent_id == agent_id, *_live(utcnow()))
            .order_by(SupportGrant.expires_at)
        )
    )


def redeem_code(agent: User, business: Business, raw_code: str | None) -> SupportGrant | None:
    """Check the agent's code for the business; on success record the agent's access.

    Both outcomes are audited for the business's owner. The caller throttles attempts.
    """
    agent_id, agent_name, business_id = agent.id, agent.display_name, business.id
    code = normalize_code(raw_code)
    well_formed = len(code) == CODE_LENGTH and all(ch in PUBLIC_ID_ALPHABET for ch in code)
    begin_write()
    grant = None
    if well_formed:
        # The lookup is by keyed hash, so the stored value never reveals the code.
        grant = db.session.scalar(
            select(SupportGrant).where(
                SupportGrant.business_id == business_id,
                SupportGrant.code_hash == keyed_hash(code),
                *_live(utcnow()),
            )
        )
    if grant is None:
        audit.record(
            "support.code_failed",
            business_id=business_id,
            actor_user_id=agent_id,
            target_type="business",
            target_id=business_id,
            details={"agent": agent_name},
        )
        db.session.commit()
        return None
    already = db.session.scalar(
        select(func.count()).where(
            SupportAccess.grant_id == grant.id, SupportAccess.agent_id == agent_id
        )
    )
    if not already:
        db.session.add(SupportAccess(grant_id=grant.id, agent_id=agent_id, created_at=utcnow()))
    audit.record(
        "support.code_accepted",
        business_id=business_id,
        actor_user_id=agent_id,
        target_type="support_grant",
        target_id=grant.id,
        details={"agent": agent_name},
    )
    db.session.commit()
    return grant


def search_businesses(query: str) -> list[Business]:
    """Businesses whose id is query or whose name contains it (case-insensitive)."""
    query = query.strip()
    if not query:
        return []
    found: list[Business] = []
    if query.isdigit():
        business = db.session.get(Business, int(query))
        if business is not None:
            found.append(business)
    escaped = query.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    for business in db.session.scalars(
        select(Business)
        .where(Business.name_key.like(f"%{escaped}%", escape="\\"))
        .order_by(Business.name_key)
        .limit(SEARCH_LIMIT)
    ):
        if business not in found:
            found.append(business)
    return found[:SEARCH_LIMIT]


def _no_store(response: Response) -> Response:
    # The support code must never be cached or replayed from history.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@owner_bp.app_context_processor
def _support_banner_context() -> dict:
    def current_support_grant() -> SupportGrant | None:
        if not (current_user.is_authenticated and current_user.is_owner):
            return None
        return active_grant(current_user.business_id)

    return {"current_support_grant": current_support_grant, "grant_agents": grant_agents}


@owner_bp.get("")
@_owner_only
def access_banner():
    """The support-access banner in its current state (polled while access is on); never
    the code, which is shown only in the response to the grant."""
    if not is_htmx():
        return redirect(url_for("dashboard.list_tokens"))
    return render_template("support/_owner_banner.html", tz=current_user.business.timezone)


@owner_bp.post("")
@_owner_only
def allow_access():
    """Open support access and show its code once (never cached, never in history)."""
    grant, code = grant_access(current_user)
    context = {
        "grant": grant,
        "code": format_code(code),
        "tz": current_user.business.timezone,
        "lifetime_minutes": int(GRANT_LIFETIME.total_seconds() // 60),
    }
    if is_htmx():
        body = render_template("support/_owner_banner.html", **context)
    else:
        body = render_template("support/granted.html", **context)
    return _no_store(make_response(body))


@owner_bp.post("/end")
@_owner_only
def end_support_access():
    """End support access now; the agent's next request is refused."""
    ended = end_access(current_user)
    message = (
        "Support access ended. VasBox support can no longer see your tokens."
        if ended
        else "Support access had already ended."
    )
    if is_htmx():
        return render_template(
            "support/_owner_banner.html", grant=None, alert_message=message, tz=None
        )
    flash(message, "success")
    return redirect(url_for("dashboard.list_tokens"), code=303)


def _business_or_404(business_id: int) -> Business:
    business = db.session.get(Business, business_id)
    if business is None:
        abort(404)
    return business


@bp.get("/")
@_support_only
def console():
    """Find a business by name or id; lists the agent's open accesses."""
    query = (request.args.get("q") or "").strip()[:120]
    return render_template(
        "support/console.html",
        query=query,
        results=search_businesses(query) if query else [],
        open_grants=agent_grants(current_user.id),
    )


@bp.get("/businesses/<int:business_id>/access")
@_support_only
def enter_code(business_id: int):
    """The code form for one business (straight to its tokens if access is already open)."""
    business = _business_or_404(business_id)
    if agent_grant(current_user.id, business.id) is not None:
        return redirect(url_for("support.list_tokens", business_id=business.id))
    return render_template("support/enter_code.html", business=business)


@bp.post("/businesses/<int:business_id>/access")
@_support_only
def redeem(business_id: int):
    """Check the owner's code; wrong codes are throttled per agent and per business."""
    business = _business_or_404(business_id)
    agent_key, business_key = str(current_user.id), str(business.id)
    retry_after = support_code_by_agent.retry_after(agent_key) or (
        support_code_by_business.retry_after(business_key)
    )
    if retry_after:
        minutes = max(1, round(retry_after / 60))
        error = (
            f"Too many wrong codes. Wait {minutes} minute{'s' if minutes != 1 else ''}, "
            "then ask the owner for the code again."
        )
        response = make_response(
            render_template("support/enter_code.html", business=business, error=error), 429
        )
        response.headers["Retry-After"] = str(retry_after)
        return response
    grant = redeem_code(current_user, business, request.form.get("code"))
    if grant is None:
        support_code_by_agent.hit(agent_key)
        support_code_by_business.hit(business_key)
        return make_response(
            render_template("support/enter_code.html", business=business, error=WRONG_CODE_MESSAGE),
            422,
        )
    support_code_by_agent.clear(agent_key)
    return redirect(url_for("support.list_tokens", business_id=business.id), code=303)


def _open_view(business_id: int, public_id: str | None = None):
    """Check the agent's live grant and audit the view, in one transaction.

    Returns (business, grant, token or None); no grant means 403, no token 404.
    """
    agent_id, agent_name = current_user.id, current_user.display_name
    if public_id is not None and not PUBLIC_ID_RE.match(public_id):
        abort(404)
    begin_write()
    grant = agent_grant(agent_id, business_id)
    if grant is None:
        db.session.rollback()
        abort(403, NO_ACCESS_MESSAGE)
    token = None
    if public_id is not None:
        token = token_service.get_token(business_id, public_id)
        if token is None:
            db.session.rollback()
            abort(404)
    audit.record(
        "support.viewed",
        business_id=business_id,
        actor_user_id=agent_id,
        target_type="token" if token else "business",
        target_id=token.public_id if token else business_id,
        details={
            "agent": agent_name,
            "page": "token" if token else "tokens",
            "grant_id": grant.id,
            **({"public_id": token.public_id, "name": token.name} if token else {}),
        },
    )
    db.session.commit()
    return db.session.get(Business, business_id), grant, token


@bp.get("/businesses/<int:business_id>/tokens")
@_support_only
def list_tokens(business_id: int):
    """The business's tokens, read-only: the same names, identifiers and times as the owner's."""
    business, grant, _ = _open_view(business_id)
    active, revoked = token_service.list_tokens(business.id)
    return render_template(
        "support/tokens.html",
        business=business,
        grant=grant,
        active=active,
        revoked=revoked,
        tz=business.timezone,
    )


@bp.get("/businesses/<int:business_id>/tokens/<public_id>")
@_support_only
def show_token(business_id: int, public_id: str):
    """A token's activity, read-only; htmx gets just the recent-requests section (paging)."""
    business, grant, token = _open_view(business_id, public_id)
    context = {
        **token_activity(token, page_arg()),
        "business": business,
        "grant": grant,
        "readonly": True,
        "detail_endpoint": "support.show_token",
        "detail_args": {"business_id": business.id},
    }
    if is_htmx():
        return render_template("activity/_requests.html", **context)
    return render_template("support/token.html", **context)
