"""The JSON API under /api/v1, authenticated by bearer tokens only.

Every API route (except the OpenAPI document) is authenticated in a before-request hook;
unknown paths and methods answer 404/405 without looking at the token, but are still
counted in the token's usage. The session cookie is never read here: the only credential
is `Authorization: Bearer vbx_…`, which is also why the blueprint is exempt from CSRF
protection.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from functools import lru_cache, wraps
from urllib.parse import unquote_to_bytes

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request, url_for
from limits import RateLimitItem, parse
from limits.strategies import SlidingWindowCounterRateLimiter

from . import reports, tokens, usage
from .audit import client_ip, client_user_agent
from .errors import problem
from .extensions import limiter
from .filters import iso_utc, zone
from .models import utcnow
from .openapi import openapi_document
from .receipts import (
    DEFAULT_PAGE,
    MAX_PAGE,
    MAX_RECEIPT_ID,
    FieldError,
    IdempotencyConflict,
    PermissionLost,
    TokenNoLongerUsable,
    ValidationFailed,
    create_receipt,
    decode_cursor,
    get_receipt,
    list_receipts,
    parse_datetime,
    parse_receipt,
    receipt_json,
    valid_idempotency_key,
)
from .security import PUBLIC_ID_ALPHABET, PUBLIC_ID_LENGTH
from .throttle import api_auth_failures
from .tokens import RECEIPTS_READ, RECEIPTS_WRITE, REPORTS_READ, Principal
from .usage import UsageEvent

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api/v1")

API_PREFIX = "/api/v1/"
CHALLENGE = 'Bearer realm="vasbox"'
INVALID_TOKEN_CHALLENGE = 'Bearer realm="vasbox", error="invalid_token"'
INVALID_TOKEN_DETAIL = (
    "The API token is not valid. It may be mistyped, revoked, or belong to a deactivated "
    "user. Check the token on the API Tokens page, or ask the Business Owner for a new one."
)
# A token's recognisable start: the prefix and a well-formed public id. Enough to file a
# failed attempt under the right token without ever keeping the secret part.
RECOGNISABLE = re.compile(rf"vbx_([{PUBLIC_ID_ALPHABET}]{{{PUBLIC_ID_LENGTH}}})")
# Anything shaped like a token, in a URL or a body, where a token must never be sent.
TOKEN_SHAPED = re.compile(rb"vbx_[0-9A-Za-z]{8}")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LIMITS_KEY = "vasbox_api_limits"
IP_THROTTLED_DETAIL = (
    "Too many requests with invalid API tokens came from this address. "
    "Wait, then try again with a valid token."
)
_warned_at = 0.0


class ApiProblem(Exception):
    """Raised inside a view to answer with a prepared problem+json response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@bp.errorhandler(ApiProblem)
def _api_problem(error: ApiProblem) -> Response:
    return error.response


def _challenge() -> Response:
    return problem(
        401,
        "Send an API token in the Authorization header: `Authorization: Bearer vbx_…`. "
        "Create tokens on the API Tokens page.",
        headers={"WWW-Authenticate": CHALLENGE},
    )


def _invalid_token() -> Response:
    # One body for every reason (mistyped, unknown, wrong secret, revoked, deactivated
    # creator), so a caller cannot probe which tokens exist; the reason is in usage.
    return problem(
        401,
        INVALID_TOKEN_DETAIL,
        type_="invalid-token",
        headers={"WWW-Authenticate": INVALID_TOKEN_CHALLENGE},
    )


def _insufficient_scope(permission: str) -> Response:
    return problem(
        403,
        f"This token's creator has the {g.api_principal.creator_role} role, which does not "
        f"allow {permission}. Tokens have the same permissions as the person who created them.",
        type_="insufficient-scope",
        headers={
            "WWW-Authenticate": (
                f'Bearer realm="vasbox", error="insufficient_scope", scope="{permission}"'
            )
        },
        required_permission=permission,
    )


def _too_many(detail: str, retry_after: int) -> Response:
    return problem(429, detail, headers={"Retry-After": str(retry_after)})


def requires(permission: str):
    """Allow the view only if the token's creator's current role grants permission."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if permission not in g.api_principal.permissions:
                return _insufficient_scope(permission)
            return view(*args, **kwargs)

        wrapped.required_permission = permission
        return wrapped

    return decorator


def query_params(*allowed: str):
    """Refuse (400) query parameters the view does not take, so a typo is never ignored."""
    known = frozenset(allowed)

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            unknown = sorted(set(request.args) - known)
            if unknown:
                raise _query_errors(
                    [FieldError(name, f"Unknown query parameter {name!r}.") for name in unknown]
                )
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _storage_warning(error: Exception) -> None:
    global _warned_at
    now = time.monotonic()
    if now - _warned_at > 60:
        _warned_at = now
        log.warning("rate limit storage unavailable, not limiting: %s", type(error).__name__)


@lru_cache(maxsize=16)
def _limit_item(text: str) -> RateLimitItem:
    return parse(text)


@dataclass(slots=True)
class _TokenCount:
    pending: int = 0
    synced: float = -1e9
    blocked_until: float = 0.0


class ApiLimits:
    """The API's rate limits: requests per token, and failed authentications per IP.

    The counts live in the shared limiter storage (Redis in production), so all workers
    add up to one total. To keep that storage off the hot path, a worker hands its counts
    over in small batches (at most 1% of the limit, and at least every SYNC_SECONDS) and
    remembers a refusal until the window frees up. A busy token can exceed its limit by a
    batch per worker at most; at low rates every request is counted at once.
    """

    SYNC_SECONDS = 0.25
    MAX_BATCH = 50
    MAX_REMEMBERED_IPS = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _TokenCount] = {}
        self._blocked_ips: dict[str, float] = {}
        self._strategy: SlidingWindowCounterRateLimiter | None = None

    def _token_strategy(self) -> SlidingWindowCounterRateLimiter:
        # A sliding window counter is O(1) per hit in memory and one round trip in Redis,
        # unlike a moving window that stores every timestamp.
        storage = limiter.storage
        if self._strategy is None or self._strategy.storage is not storage:
            self._strategy = SlidingWindowCounterRateLimiter(storage)
        return self._strategy

    def token_retry_after(self, public_id: str) -> int | None:
        """Count one request for the token; seconds to wait if it is over its limit."""
        item = _limit_item(current_app.config["API_RATE_LIMIT"])
        batch = max(1, min(self.MAX_BATCH, item.amount // 100))
        now = time.monotonic()
        with self._lock:
            count = self._tokens.get(public_id)
            if count is None:
                count = self._tokens[public_id] = _TokenCount()
            if count.blocked_until > now:
                return math.ceil(count.blocked_until - now)
            count.pending += 1
            if count.pending < batch and now - count.synced < self.SYNC_SECONDS:
                return None
            cost, count.pending, count.synced = count.pending, 0, now
        keys = ("api-token", _key_prefix(), public_id)
        strategy = self._token_strategy()
        try:
            if strategy.hit(item, *keys, cost=cost):
                return None
            stats = strategy.get_window_stats(item, *keys)
        except Exception as error:  # fail open: a limiter outage must not stop integrations
            _storage_warning(error)
            return None
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        count.blocked_until = now + retry_after
        return retry_after

    def ip_retry_after(self, ip: str) -> int | None:
        """Seconds this address must wait because of its failed authentications, if any."""
        until = self._blocked_ips.get(ip)
        if until is None:
            return None
        remaining = until - time.monotonic()
        if remaining <= 0:
            self._blocked_ips.pop(ip, None)
            return None
        return math.ceil(remaining)

    def count_failure(self, ip: str) -> int | None:
        """Count a failed authentication; seconds to wait if the address is now over its limit.

        Failures are rare and counted one by one in the shared storage; a block is then
        remembered in this worker, so a blocked address costs no database lookups here.
        """
        try:
            if api_auth_failures.hit(_key_prefix(), ip):
                return None
            retry_after = api_auth_failures.retry_after(_key_prefix(), ip) or 1
        except Exception as error:
            _storage_warning(error)
            return None
        if len(self._blocked_ips) >= self.MAX_REMEMBERED_IPS:
            now = time.monotonic()
            for stale in [k for k, until in self._blocked_ips.items() if until <= now]:
                self._blocked_ips.pop(stale, None)
        self._blocked_ips[ip] = time.monotonic() + retry_after
        return retry_after


def _limits() -> ApiLimits:
    return current_app.extensions[LIMITS_KEY]


def _key_prefix() -> str:
    return current_app.config.get("RATELIMIT_KEY_PREFIX", "")


def _leaked_token() -> str | None:
    """Where a token was sent outside the Authorization header ("query" or "body"), if so."""
    query = request.query_string
    if query and (
        b"access_token" in query or TOKEN_SHAPED.search(unquote_to_bytes(query)) is not None
    ):
        return "query"
    if request.content_length or request.headers.get("Transfer-Encoding"):
        body = request.get_data(cache=True)
        if TOKEN_SHAPED.search(body) or (
            request.mimetype == "application/x-www-form-urlencoded"
            and (b"access_token" in body or TOKEN_SHAPED.search(unquote_to_bytes(body)))
        ):
            return "body"
    return None


def _recognisable(text: str) -> str | None:
    match = RECOGNISABLE.search(text)
    return match.group(1) if match else None


def _note_usage(
    public_id: str | None,
    outcome: str,
    token_id: int | None = None,
    business_id: int | None = None,
    touch: bool = False,
) -> None:
    if public_id is None:
        return
    g.api_usage = UsageEvent(
        created_at=g.api_started_at,
        public_id=public_id,
        token_id=token_id,
        business_id=business_id,
        method=request.method[:8],
        route="",
        status=0,
        outcome=outcome,
        ip=client_ip(),
        user_agent=client_user_agent(),
        duration_ms=0,
        request_id=None,
        touch_last_used=touch,
    )


def _leaked_public_id(where: str) -> str | None:
    raw = request.query_string if where == "query" else request.get_data(cache=True)
    return _recognisable(unquote_to_bytes(raw).decode("latin-1"))


@bp.before_app_request
def authenticate_api_request() -> Response | None:
    """Authenticate every /api/v1/ request before its view runs; the OpenAPI document is public."""
    if not request.path.startswith(API_PREFIX) or request.endpoint == "api.get_openapi":
        return None
    if "request_id" not in g:  # this hook can run before the app's own, which sets it
        g.request_id = str(uuid.uuid4())
    g.api_started = time.perf_counter()
    g.api_started_at = utcnow()

    leaked = _leaked_token()
    if leaked is not None:
        _note_usage(_leaked_public_id(leaked), f"token_in_{leaked}")
        return problem(
            400,
            "API tokens must be sent only in the Authorization header "
            "(`Authorization: Bearer vbx_…`), never in a URL or a request body. The request "
            "was not processed. If a token was put in a URL, it may be in logs: revoke it and "
            "create a new one.",
            type_="token-outside-header",
        )

    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    presented = credentials.strip()
    public_id = _recognisable(presented) if scheme.lower() == "bearer" else None
    if request.url_rule is None:
        # No such route: routing answers 404 or 405 next; no token is checked for that.
        _note_usage(public_id, "no_route")
        return None
    if scheme.lower() != "bearer":
        return _challenge()
    ip = client_ip() or "unknown"
    limits = _limits()
    retry_after = limits.ip_retry_after(ip)
    if retry_after:
        _note_usage(public_id, "ip_throttled")
        return _too_many(IP_THROTTLED_DETAIL, retry_after)

    result = tokens.authenticate(presented)
    if not result.ok:
        _note_usage(
            result.public_id or public_id, result.outcome, result.token_id, result.business_id
        )
        retry_after = limits.count_failure(ip)
        if retry_after:
            return _too_many(IP_THROTTLED_DETAIL, retry_after)
        return _invalid_token()

    principal: Principal = result.principal
    retry_after = limits.token_retry_after(principal.public_id)
    if retry_after:
        _note_usage(principal.public_id, "rate_limited", principal.token_id, principal.business_id)
        return _too_many(
            "This token sent more requests than its limit allows. Wait and try again.",
            retry_after,
        )
    g.api_principal = principal
    recorder = usage.recorder()
    _note_usage(
        principal.public_id,
        "ok",
        principal.token_id,
        principal.business_id,
        touch=recorder.wants_last_used(
            principal.token_id, principal.last_used_at, g.api_started_at
        ),
    )
    return None


@bp.after_app_request
def record_api_usage(response: Response) -> Response:
    """Hand the request's usage event to the buffer, with its final status and duration."""
    event: UsageEvent | None = g.pop("api_usage", None)
    if event is None:
        return response
    event.status = response.status_code
    event.duration_ms = int((time.perf_counter() - g.api_started) * 1000)
    event.route = request.url_rule.rule if request.url_rule is not None else "(no route)"
    event.request_id = g.get("request_id")
    usage.recorder().add(event)
    return response


def _json_body() -> object:
    if not request.is_json:
        raise ApiProblem(
            problem(415, "Send the request body as JSON with `Content-Type: application/json`.")
        )
    raw = request.get_data(cache=True)
    try:
        # No JSON number ever becomes a float (amounts must be decimal strings anyway).
        return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiProblem(problem(400, "The request body is not valid JSON.")) from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _query_errors(errors: list[FieldError]) -> ApiProblem:
    return ApiProblem(
        problem(
            400,
            "Some query parameters are not valid; see `errors`.",
            type_="invalid-parameters",
            errors=[{"parameter": e.pointer, "detail": e.detail} for e in errors],
        )
    )


def _local_midnight(day: date, tz) -> datetime:
    try:
        return datetime.combine(day, dtime(), tzinfo=tz).astimezone(UTC)
    except OverflowError:
        return (
            datetime.min.replace(tzinfo=UTC) if day.year < 2 else datetime.max.replace(tzinfo=UTC)
        )


def _time_param(name: str, tz, errors: list[FieldError], end: bool) -> datetime | None:
    """A from/to filter: a date is a whole day in the business's timezone, a date-time is
    an instant; to is exclusive for a date-time and includes the whole day for a date."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if DATE_RE.match(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            errors.append(FieldError(name, f"{name} is not a real date."))
            return None
        if end:
            if day == date.max:
                return datetime.max.replace(tzinfo=UTC)
            day += timedelta(days=1)
        return _local_midnight(day, tz)
    parsed = parse_datetime(raw)
    if parsed is None:
        errors.append(
            FieldError(
                name,
                f"{name} must be a date (2026-12-03) or a date-time with an offset "
                "(2026-12-03T14:05:00+02:00).",
            )
        )
    return parsed


def _date_param(name: str, errors: list[FieldError]) -> date | None:
    raw = request.args.get(name)
    if raw is None:
        errors.append(FieldError(name, f"{name} is required, as a date such as 2026-12-03."))
        return None
    if DATE_RE.match(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    errors.append(FieldError(name, f"{name} must be a date such as 2026-12-03."))
    return None


@bp.get("/me")
@query_params()
def get_me():
    """The token, its business and its creator: what integrators call to check their setup."""
    principal: Principal = g.api_principal
    return jsonify(
        business={
            "id": principal.business_id,
            "name": principal.business_name,
            "timezone": principal.business_timezone,
        },
        creator={
            "id": principal.creator_id,
            "name": principal.creator_name,
            "role": principal.creator_role,
        },
        token={
            "id": f"vbx_{principal.public_id}",
            "name": principal.token_name,
            "created_at": iso_utc(principal.token_created_at),
        },
        permissions=sorted(principal.permissions),
    )


@bp.post("/receipts")
@requires(RECEIPTS_WRITE)
@query_params()
def create_receipt_view():
    """Create a receipt; an Idempotency-Key makes retries return the first result."""
    principal: Principal = g.api_principal
    key = request.headers.get("Idempotency-Key")
    if key is not None and not valid_idempotency_key(key):
        return problem(
            400,
            "Idempotency-Key must be 1 to 255 visible ASCII characters; a UUID is a good choice.",
            type_="invalid-idempotency-key",
        )
    data = _json_body()
    try:
        receipt_input = parse_receipt(data)
        body, created = create_receipt(principal, receipt_input, key, RECEIPTS_WRITE)
    except ValidationFailed as failure:
        return problem(
            422,
            "The receipt has invalid fields; see `errors`.",
            errors=[error.as_dict() for error in failure.errors],
        )
    except IdempotencyConflict as conflict:
        return problem(
            409,
            "This Idempotency-Key was already used for a different receipt. Use a new key "
            "for a new receipt, or resend exactly the same body to get the first result.",
            type_="idempotency-key-reused",
            receipt_id=conflict.receipt_id,
        )
    except TokenNoLongerUsable:
        g.api_usage.outcome = "refused_at_write"
        return _invalid_token()
    except PermissionLost:
        return _insufficient_scope(RECEIPTS_WRITE)
    response = jsonify(body)
    # A replay answers exactly like the first response, so a retrying client sees no
    # difference; the header tells a curious one that nothing new was stored.
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_receipt_view", receipt_id=body["id"])
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/receipts")
@requires(RECEIPTS_READ)
@query_params("from", "to", "branch", "limit", "cursor")
def list_receipts_view():
    """Receipts newest first, filtered by issue time and branch, a page at a time."""
    principal: Principal = g.api_principal
    errors: list[FieldError] = []
    tz = zone(principal.business_timezone)
    start = _time_param("from", tz, errors, end=False)
    end = _time_param("to", tz, errors, end=True)
    branch = request.args.get("branch")
    if branch is not None and not 1 <= len(branch) <= 80:
        errors.append(FieldError("branch", "branch must be 1 to 80 characters."))
    limit = DEFAULT_PAGE
    raw_limit = request.args.get("limit")
    if raw_limit is not None:
        if raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_PAGE:
            limit = int(raw_limit)
        else:
            errors.append(
                FieldError("limit", f"limit must be a whole number from 1 to {MAX_PAGE}.")
            )
    after = None
    raw_cursor = request.args.get("cursor")
    if raw_cursor is not None:
        after = decode_cursor(raw_cursor)
        if after is None:
            errors.append(
                FieldError("cursor", "cursor is not valid; use next_cursor from a previous page.")
            )
    if errors:
        raise _query_errors(errors)
    page, next_cursor = list_receipts(
        principal.business_id, start=start, end=end, branch=branch, after=after, limit=limit
    )
    return jsonify(data=[receipt_json(r) for r in page], next_cursor=next_cursor)


@bp.get("/receipts/<int:receipt_id>")
@requires(RECEIPTS_READ)
@query_params()
def get_receipt_view(receipt_id: int):
    """One receipt of the token's business; any other id is 404."""
    principal: Principal = g.api_principal
    receipt = (
        get_receipt(principal.business_id, receipt_id) if receipt_id <= MAX_RECEIPT_ID else None
    )
    if receipt is None:
        return problem(404, f"This business has no receipt {receipt_id}.")
    return jsonify(receipt_json(receipt))


@bp.get("/reports/sales")
@requires(REPORTS_READ)
@query_params("from", "to")
def sales_report_view():
    """Sales per day and per branch for a range of days in the business's timezone;
    CSV when the client asks for text/csv."""
    principal: Principal = g.api_principal
    errors: list[FieldError] = []
    first = _date_param("from", errors)
    last = _date_param("to", errors)
    if first and last:
        if first > last:
            errors.append(FieldError("to", "to must be the same day as from or later."))
        elif (last - first).days >= reports.MAX_REPORT_DAYS:
            errors.append(
                FieldError("to", f"A report covers at most {reports.MAX_REPORT_DAYS} days.")
            )
    if errors:
        raise _query_errors(errors)
    tz_name = zone(principal.business_timezone).key
    wants_csv = request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"
    if wants_csv:
        text = reports.sales_csv(principal.business_id, tz_name, first, last)
        response = Response(text, mimetype="text/csv")
        response.headers["Content-Disposition"] = (
            f'attachment; filename="sales-{first.isoformat()}-to-{last.isoformat()}.csv"'
        )
    else:
        response = jsonify(reports.sales_report(principal.business_id, tz_name, first, last))
    response.vary.add("Accept")
    return response


@bp.get("/openapi.json")
@query_params()
def get_openapi():
    """The OpenAPI 3.1 description of this API (public, no token needed)."""
    return jsonify(openapi_document())


def init_app(app: Flask) -> None:
    """Hook the API's per-app machinery (usage recording, rate limits) into the app."""
    usage.init_app(app)
    app.extensions[LIMITS_KEY] = ApiLimits()
