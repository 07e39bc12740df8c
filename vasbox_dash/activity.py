"""Token activity (detail page, inline rename) and the audit log with CSV export (owners).

The activity and audit read functions are shared with the support console, which shows the
same facts read-only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.orm import selectinload

from . import tokens as token_service
from .auth import roles_required
from .extensions import db
from .filters import exact_time, iso_utc, relative_time, zone
from .htmx import is_htmx
from .models import ApiToken, AuditEvent, Business, Role, TokenUsage, utcnow
from .security import PUBLIC_ID_RE
from .tokens import TokenError

bp = Blueprint("activity", __name__, url_prefix="/admin")

FORBIDDEN_MESSAGE = "Only the Business Owner can see token activity and the audit log."
_owner_only = roles_required(Role.OWNER, message=FORBIDDEN_MESSAGE)

REQUESTS_PER_PAGE = 20
EVENTS_PER_PAGE = 50
CSV_MAX_ROWS = 100_000
# Outcomes where the presented token was not accepted: these are not requests *made with*
# the token, so they are left out of the counts and summarised as failed attempts instead.
AUTH_FAILURES = frozenset(
    {"malformed", "unknown_token", "wrong_secret", "revoked", "creator_inactive"}
)
COUNT_WINDOWS = (
    ("24h", "Last 24 hours", timedelta(hours=24)),
    ("7d", "Last 7 days", timedelta(days=7)),
    ("30d", "Last 30 days", timedelta(days=30)),
)

# Kinds of event offered by the audit log's filter: key -> (label, actions).
EVENT_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "token.created": ("Token created", ("token.created",)),
    "token.renamed": ("Token renamed", ("token.renamed",)),
    "token.revoked": ("Token revoked", ("token.revoked",)),
    "token.revoked_used": ("Revoked token used", ("token.revoked_used",)),
    "support": (
        "Support access",
        (
            "support.granted",
            "support.code_accepted",
            "support.code_failed",
            "support.viewed",
            "support.ended",
        ),
    ),
    "sign-in": ("Sign-ins and sign-outs", ("auth.login", "auth.logout")),
    "sign-in-failed": ("Failed sign-ins", ("auth.login_failed",)),
    "receipt": ("Receipts", ("receipt.created",)),
    "user": ("User changes", ("user.role_changed", "user.deactivated", "user.password_changed")),
}
ACTION_LABELS = {
    "token.created": "Token created",
    "token.renamed": "Token renamed",
    "token.revoked": "Token revoked",
    "token.revoked_used": "Revoked token used",
    "support.granted": "Support access granted",
    "support.code_accepted": "Support access started",
    "support.code_failed": "Wrong support code",
    "support.viewed": "Support viewed",
    "support.ended": "Support access ended",
    "auth.login": "Signed in",
    "auth.logout": "Signed out",
    "auth.login_failed": "Failed sign-in",
    "receipt.created": "Receipt created",
    "user.role_changed": "Role changed",
    "user.deactivated": "User deactivated",
    "user.password_changed": "Password changed",
}


@dataclass
class Page:
    """One page of a newest-first list."""

    items: list[Any]
    number: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_newer(self) -> bool:
        return self.number > 1

    @property
    def has_older(self) -> bool:
        return self.number < self.pages

    @property
    def first_index(self) -> int:
        return 0 if not self.items else (self.number - 1) * self.per_page + 1

    @property
    def last_index(self) -> int:
        return (self.number - 1) * self.per_page + len(self.items)


def _paginate(query: Select, count_query: Select, number: int, per_page: int) -> Page:
    total = db.session.scalar(count_query) or 0
    pages = max(1, -(-total // per_page))
    number = min(max(1, number), pages)
    items = list(db.session.scalars(query.limit(per_page).offset((number - 1) * per_page)))
    return Page(items, number, per_page, total)


def page_arg() -> int:
    """The ?page= query argument as a positive int (1 when missing or nonsense)."""
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


@dataclass
class FailedAttempts:
    """Refused uses of one token with one outcome, summarised in plain words."""

    outcome: str
    count: int
    last_at: datetime
    sentence: str


def _times(count: int) -> str:
    return "once" if count == 1 else "twice" if count == 2 else f"{count} times"


def failed_attempt_sentence(outcome: str, count: int, last_at: datetime, tz: str, now) -> str:
    """Plain words for refused uses, e.g. "Someone tried to use this revoked token 3 times,
    most recently 10 minutes ago." """
    when = relative_time(last_at, tz, now=now)
    if when in ("Just now", "Yesterday"):
        when = when.lower()
    elif not when.endswith(" ago"):  # a date such as "3 Dec" reads "on 3 Dec"
        when = f"on {when}"
    when_text = when if count == 1 else f"most recently {when}"
    what = {
        "revoked": "Someone tried to use this revoked token",
        "wrong_secret": "Someone tried to use this token’s identifier with a wrong secret",
        "creator_inactive": (
            "Someone tried to use this token after the person who created it lost access"
        ),
    }[outcome]
    return f"{what} {_times(count)}, {when_text}."


def failed_attempts(token: ApiToken, tz: str, now: datetime) -> list[FailedAttempts]:
    """Refused uses of the token (revoked, wrong secret, creator inactive), all time."""
    rows = db.session.execute(
        select(TokenUsage.outcome, func.count(), func.max(TokenUsage.created_at))
        .where(
            TokenUsage.token_id == token.id,
            TokenUsage.business_id == token.business_id,
            TokenUsage.outcome.in_(("revoked", "wrong_secret", "creator_inactive")),
        )
        .group_by(TokenUsage.outcome)
    ).all()
    order = {"revoked": 0, "wrong_secret": 1, "creator_inactive": 2}
    return [
        FailedAttempts(
            outcome, count, last_at, failed_attempt_sentence(outcome, count, last_at, tz, now)
        )
        for outcome, count, last_at in sorted(rows, key=lambda row: order[row[0]])
    ]


def usage_counts(token: ApiToken, now: datetime) -> list[tuple[str, str, int]]:
    """Requests made with the token in the last 24 hours, 7 days and 30 days:
    [(key, label, count)]; refused attempts are not counted."""
    columns = [
        func.coalesce(func.sum(case((TokenUsage.created_at > now - span, 1), else_=0)), 0)
        for _key, _label, span in COUNT_WINDOWS
    ]
    longest = max(span for _key, _label, span in COUNT_WINDOWS)
    row = db.session.execute(
        select(*columns).where(
            TokenUsage.token_id == token.id,
            TokenUsage.business_id == token.business_id,
            TokenUsage.created_at > now - longest,
            TokenUsage.created_at <= now,
            TokenUsage.outcome.not_in(AUTH_FAILURES),
        )
    ).one()
    return [
        (key, label, int(value or 0))
        for (key, label, _span), value in zip(COUNT_WINDOWS, row, strict=True)
    ]


def recent_requests(token: ApiToken, number: int) -> Page:
    """The token's recorded requests (refused ones too), newest first, one page."""
    where = (TokenUsage.token_id == token.id, TokenUsage.business_id == token.business_id)
    return _paginate(
        select(TokenUsage)
        .where(*where)
        .order_by(TokenUsage.created_at.desc(), TokenUsage.id.desc()),
        select(func.count()).select_from(TokenUsage).where(*where),
        number,
        REQUESTS_PER_PAGE,
    )


def token_activity(token: ApiToken, number: int) -> dict[str, Any]:
    """Everything the token detail page shows, for the owner and the support console."""
    tz = token.business.timezone
    now = utcnow()
    return {
        "token": token,
        "tz": tz,
        "now": now,
        "counts": usage_counts(token, now),
        "failures": failed_attempts(token, tz, now),
        "requests": recent_requests(token, number),
    }


@dataclass
class AuditEntry:
    """An audit event in plain words, ready for the page and the CSV."""

    event: AuditEvent
    label: str
    actor: str
    description: str
    token_display: str = ""
    token_name: str = ""


def _token_label(name: str | None, public_id: str | None) -> str:
    ident = f"vbx_{public_id}…" if public_id else ""
    if name and ident:
        return f"“{name}” ({ident})"
    return f"“{name}”" if name else ident or "a token"


def _event_token(
    event: AuditEvent, by_public_id: dict[str, ApiToken]
) -> tuple[str | None, ApiToken | None]:
    """The public id an event is about and the token, if it still exists."""
    public_id = None
    if event.target_type == "token" and event.target_id:
        public_id = event.target_id
    elif isinstance(event.details, dict) and event.details.get("public_id"):
        public_id = str(event.details["public_id"])
    elif event.actor_token is not None:
        public_id = event.actor_token.public_id
    return public_id, by_public_id.get(public_id) if public_id else None


def _actor(event: AuditEvent) -> str:
    details = event.details if isinstance(event.details, dict) else {}
    if event.action == "token.revoked_used":
        return "Someone using the revoked token"
    if event.actor_token is not None:
        # A request made with a token: the token is the actor, whoever created it.
        return f"Token {_token_label(event.actor_token.name, event.actor_token.public_id)}"
    if event.actor_user is not None:
        if event.actor_user.role == Role.SUPPORT:
            return f"{event.actor_user.display_name} (VasBox support)"
        return event.actor_user.display_name
    if event.action == "auth.login_failed":
        return "Someone signing in"
    if event.action.startswith("user."):
        return "VasBox administrator"
    return details.get("agent") or "System"


def _short_time(value: Any, tz: str) -> str:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return exact_time(when, tz, seconds=False)


def _describe(event: AuditEvent, token_text: str, tz: str) -> str:
    d = event.details if isinstance(event.details, dict) else {}
    action = event.action
    if action == "token.created":
        return f"Created token {token_text}."
    if action == "token.renamed":
        ident = f"vbx_{event.target_id}…" if event.target_id else "a token"
        return f"Renamed token {ident} from “{d.get('from', '')}” to “{d.get('to', '')}”."
    if action == "token.revoked":
        return f"Revoked token {token_text}."
    if action == "token.revoked_used":
        where = f" ({d['method']} {d['route']})" if d.get("method") and d.get("route") else ""
        return f"Someone used the revoked token {token_text}{where}; it was refused."
    if action == "support.granted":
        until = f" until {_short_time(d['expires_at'], tz)}" if d.get("expires_at") else ""
        return f"Allowed VasBox support to view the API tokens, read-only{until}."
    if action == "support.code_accepted":
        return "Entered the support code and started a read-only view."
    if action == "support.code_failed":
        return "Entered a wrong support code; it was refused."
    if action == "support.viewed":
        if event.target_type == "token":
            return f"Viewed the activity of token {token_text}."
        return "Viewed the list of API tokens."
    if action == "support.ended":
        return "Ended VasBox support access."
    if action == "auth.login":
        return "Signed in."
    if action == "auth.logout":
        return "Signed out."
    if action == "auth.login_failed":
        return f"Failed sign-in as {d.get('email', 'an unknown user')}."
    if action == "receipt.created":
        facts = ", ".join(
            str(part)
            for part in (
                d.get("branch"),
                " ".join(filter(None, (d.get("currency"), d.get("total")))),
            )
            if part
        )
        facts = f" ({facts})" if facts else ""
        made_with = f" with token {token_text}" if token_text != "a token" else ""
        return f"Created receipt {event.target_id or ''}{facts}{made_with}.".replace("  ", " ")
    if action == "user.role_changed":
        return (
            f"Changed the role of {d.get('email', 'a user')} from {d.get('from')} to {d.get('to')}."
        )
    if action == "user.deactivated":
        return f"Deactivated {d.get('email', 'a user')}."
    if action == "user.password_changed":
        return "Changed a user’s password."
    return action


def describe_events(events: list[AuditEvent], business: Business) -> list[AuditEntry]:
    """Turn events into plain-words entries; token names come from the event when recorded."""
    public_ids = {pid for event in events if (pid := _event_token(event, {})[0]) is not None}
    by_public_id = (
        {
            token.public_id: token
            for token in db.session.scalars(
                select(ApiToken).where(
                    ApiToken.business_id == business.id, ApiToken.public_id.in_(public_ids)
                )
            )
        }
        if public_ids
        else {}
    )
    entries = []
    for event in events:
        public_id, token = _event_token(event, by_public_id)
        details = event.details if isinstance(event.details, dict) else {}
        name = details.get("name") or (token.name if token else None)
        if event.action == "token.renamed":
            name = details.get("to") or name
        token_text = _token_label(name, public_id) if public_id else "a token"
        entries.append(
            AuditEntry(
                event=event,
                label=ACTION_LABELS.get(event.action, event.action),
                actor=_actor(event),
                description=_describe(event, token_text, business.timezone),
                token_display=f"vbx_{public_id}…" if public_id else "",
                token_name=name or "",
            )
        )
    return entries


def audit_query(business_id: int, token: ApiToken | None, kind: str | None) -> Select:
    """The business's audit events, optionally about one token and of one kind, newest first."""
    query = select(AuditEvent).where(AuditEvent.business_id == business_id)
    if token is not None:
        query = query.where(
            or_(
                and_(AuditEvent.target_type == "token", AuditEvent.target_id == token.public_id),
                AuditEvent.actor_token_id == token.id,
            )
        )
    if kind in EVENT_KINDS:
        query = query.where(AuditEvent.action.in_(EVENT_KINDS[kind][1]))
    return query


def audit_page(business: Business, token: ApiToken | None, kind: str | None, number: int) -> Page:
    """One page of the audit log, as AuditEntry items."""
    query = audit_query(business.id, token, kind)
    page = _paginate(
        query.options(
            selectinload(AuditEvent.actor_user), selectinload(AuditEvent.actor_token)
        ).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()),
        select(func.count()).select_from(query.subquery()),
        number,
        EVENTS_PER_PAGE,
    )
    page.items = describe_events(page.items, business)
    return page


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(value: Any) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading '."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) or text.lstrip().startswith(FORMULA_STARTS[:4]):
        return "'" + text
    return text


def audit_csv_rows(business: Business, token: ApiToken | None, kind: str | None) -> Iterator[str]:
    """The CSV export, line by line: a header row, then every matching event, newest first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    tz = business.timezone
    writer.writerow(
        [
            "Time (UTC)",
            f"Time ({tz})",
            "Event",
            "Actor",
            "Details",
            "Token",
            "Token name",
            "IP address",
        ]
    )
    # A byte-order mark first, so spreadsheet apps read names with accents as UTF-8.
    yield "\ufeff" + flush()
    query = (
        audit_query(business.id, token, kind)
        .options(selectinload(AuditEvent.actor_user), selectinload(AuditEvent.actor_token))
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    )
    batch, written, last = 500, 0, None
    while written < CSV_MAX_ROWS:
        page_query = query
        if last is not None:
            # Keyset paging: events recorded while the file streams cannot shift or repeat rows.
            page_query = query.where(
                or_(
                    AuditEvent.created_at < last.created_at,
                    and_(AuditEvent.created_at == last.created_at, AuditEvent.id < last.id),
                )
            )
        events = list(db.session.scalars(page_query.limit(batch)))
        written += len(events)
        last = events[-1] if events else None
        for entry in describe_events(events, business):
            event = entry.event
            writer.writerow(
                [
                    csv_safe(cell)
                    for cell in (
                        iso_utc(event.created_at),
                        exact_time(event.created_at, tz),
                        entry.label,
                        entry.actor,
                        entry.description,
                        entry.token_display,
                        entry.token_name,
                        event.ip or "",
                    )
                ]
            )
        yield flush()
        if len(events) < batch:
            break


def _token_or_404(public_id: str) -> ApiToken:
    if not PUBLIC_ID_RE.match(public_id):
        abort(404)
    token = token_service.get_token(current_user.business_id, public_id)
    if token is None:
        abort(404)
    return token


def _detail_links(public_id: str) -> dict[str, Any]:
    return {"detail_endpoint": "activity.show_token", "detail_args": {}, "readonly": False}


@bp.get("/api-tokens/<public_id>")
@_owner_only
def show_token(public_id: str):
    """A token's detail page; htmx gets just the recent-requests section (paging)."""
    token = _token_or_404(public_id)
    context = {**token_activity(token, page_arg()), **_detail_links(public_id)}
    if is_htmx():
        return render_template("activity/_requests.html", **context)
    return render_template("activity/token.html", **context)


@bp.get("/api-tokens/<public_id>/name")
@_owner_only
def token_name(public_id: str):
    """The name heading in its view state (Cancel on the inline rename)."""
    token = _token_or_404(public_id)
    if not is_htmx():
        return redirect(url_for("activity.show_token", public_id=public_id))
    return render_template("activity/_token_name.html", token=token, state="view")


@bp.get("/api-tokens/<public_id>/rename")
@_owner_only
def rename_form(public_id: str):
    """The inline rename form (htmx) or, without JavaScript, a page with the same form."""
    token = _token_or_404(public_id)
    if token.is_revoked:
        if is_htmx():
            return render_template("activity/_token_name.html", token=token, state="view")
        flash("A revoked token cannot be renamed.", "info")
        return redirect(url_for("activity.show_token", public_id=public_id))
    context = {"token": token, "state": "editing", "value": token.name}
    if is_htmx():
        return render_template("activity/_token_name.html", **context)
    return render_template("activity/rename.html", **context)


@bp.post("/api-tokens/<public_id>/rename")
@_owner_only
def rename_token(public_id: str):
    """Rename the token (audited by the token service); errors keep the form open."""
    raw = request.form.get("name", "")
    try:
        token = token_service.rename_token(current_user, public_id, raw)
    except TokenError as error:
        token = _token_or_404(public_id)
        context = {"token": token, "state": "editing", "value": raw[:200], "error": str(error)}
        template = "activity/_token_name.html" if is_htmx() else "activity/rename.html"
        return make_response(render_template(template, **context), 422)
    if token is None:
        abort(404)
    message = f"Renamed to “{token.name}”."
    if is_htmx():
        return render_template(
            "activity/_token_name.html", token=token, state="view", alert_message=message
        )
    flash(message, "success")
    return redirect(url_for("activity.show_token", public_id=public_id), code=303)


def _audit_filters() -> tuple[ApiToken | None, str | None]:
    public_id = (request.args.get("token") or "").strip()
    token = _token_or_404(public_id) if public_id else None
    kind = request.args.get("kind") or None
    return token, kind if kind in EVENT_KINDS else None


@bp.get("/audit-log")
@_owner_only
def audit_log():
    """The audit log, newest first, filtered by token and kind; htmx gets the results only."""
    business = current_user.business
    token, kind = _audit_filters()
    page = audit_page(business, token, kind, page_arg())
    context = {
        "page": page,
        "token_filter": token,
        "kind": kind,
        "kinds": EVENT_KINDS,
        "tz": business.timezone,
        "filter_args": {
            k: v for k, v in (("token", token and token.public_id), ("kind", kind)) if v
        },
    }
    if is_htmx():
        return render_template("activity/_audit_results.html", **context)
    active, revoked = token_service.list_tokens(business.id)
    return render_template("activity/audit_log.html", tokens=active + revoked, **context)


@bp.get("/audit-log.csv")
@_owner_only
def audit_log_csv():
    """The audit log as CSV with the page's filters; formula-like cells are neutralised."""
    business = current_user.business
    token, kind = _audit_filters()
    stamp = utcnow().astimezone(zone(business.timezone)).strftime("%Y-%m-%d")
    response = Response(
        stream_with_context(audit_csv_rows(business, token, kind)),
        mimetype="text/csv",
    )
    response.headers["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
