"""Receipts made through the API: validation, idempotent creation, listing with cursors."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from . import audit
from .database import begin_write
from .extensions import db
from .filters import iso_utc
from .models import Receipt, ReceiptLine, utcnow
from .tokens import Principal, recheck_for_write, role_permissions

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1000000000000")  # Numeric(14, 2): below 10**12
MAX_LINES = 500
BRANCH_MAX = 80
DESCRIPTION_MAX = 200
MAX_RECEIPT_ID = 2**31 - 1  # an INTEGER column on PostgreSQL
MAX_PAGE = 100
DEFAULT_PAGE = 50
# A receipt may be sent a little ahead of the server's clock (a POS with a fast clock),
# but not from the future.
FUTURE_TOLERANCE = timedelta(hours=24)
EARLIEST_ISSUE = datetime(2000, 1, 1, tzinfo=UTC)
PAYMENT_METHODS = ("cash", "card", "mobile_money", "bank_transfer", "other")
RECEIPT_FIELDS = {"branch", "currency", "payment_method", "issued_at", "lines"}
LINE_FIELDS = {"description", "quantity", "unit_price"}
# The JSON Schema patterns in the OpenAPI document are these same strings, so what the
# document promises and what the server accepts cannot drift apart. Amounts are decimal
# strings, never JSON numbers: a float cannot hold 0.10 exactly.
QUANTITY_PATTERN = (
    r"^(?:[1-9][0-9]{0,8}(?:\.[0-9]{1,3})?|0\.(?:[1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9]))$"
)
PRICE_PATTERN = r"^(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,2})?$"
# Visible text: no control characters or lone surrogates, and not only spaces.
_TEXT_CHAR = r"[^\x00-\x1f\x7f-\x9f\ud800-\udfff]"
_VISIBLE_CHAR = r"[^\s\x00-\x1f\x7f-\x9f\ud800-\udfff]"
TEXT_PATTERN = rf"^{_TEXT_CHAR}*{_VISIBLE_CHAR}{_TEXT_CHAR}*$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
QUANTITY_RE = re.compile(QUANTITY_PATTERN)
PRICE_RE = re.compile(PRICE_PATTERN)
TEXT_RE = re.compile(TEXT_PATTERN)
IDEMPOTENCY_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)

# Circulating ISO 4217 currencies (funds, metals and testing codes left out).
CURRENCIES = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
    KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU
    MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON
    RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND
    TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW
    ZWG
    """.split()
)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad input: a JSON pointer into the request (RFC 6901) and what is wrong."""

    pointer: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "detail": self.detail}


class ValidationFailed(ValueError):
    """The input has one or more bad fields; every one is listed, not just the first."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used by this token with a different request body."""

    def __init__(self, receipt_id: int) -> None:
        super().__init__("idempotency key reused with a different body")
        self.receipt_id = receipt_id


class TokenNoLongerUsable(Exception):
    """The token was revoked (or its creator deactivated) before the write could commit."""


class PermissionLost(Exception):
    """The creator's role changed before the write and no longer allows it."""


@dataclass(frozen=True, slots=True)
class LineInput:
    description: str
    quantity: Decimal
    unit_price: Decimal

    @property
    def line_total(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class ReceiptInput:
    """A validated receipt request; totals are derived, never taken from the client."""

    branch: str
    currency: str
    payment_method: str
    issued_at: datetime
    lines: tuple[LineInput, ...]

    @property
    def total(self) -> Decimal:
        return sum((line.line_total for line in self.lines), Decimal("0.00"))

    def fingerprint(self) -> str:
        """SHA-256 of the normalised request, so "2" and "2.0" count as the same body."""
        canonical = {
            "branch": self.branch,
            "currency": self.currency,
            "payment_method": self.payment_method,
            "issued_at": iso_utc(self.issued_at),
            "lines": [
                [line.description, _plain(line.quantity), _plain(line.unit_price)]
                for line in self.lines
            ],
        }
        encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(encoded.encode()).hexdigest()


def _plain(value: Decimal) -> str:
    """A Decimal as plain text without exponent or trailing zeros: 2.500 -> "2.5"."""
    return format(value.normalize(), "f")


def format_quantity(value: Decimal) -> str:
    """A quantity as sent back to clients: "2", "1.5", "0.125"."""
    return _plain(value)


def format_money(value: Decimal) -> str:
    """An amount with exactly two decimals: "12.30"."""
    return str(Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP))


def _text(value: Any, pointer: str, label: str, limit: int, errors: list[FieldError]):
    if not isinstance(value, str):
        errors.append(FieldError(pointer, f"{label} must be a string."))
    elif not 1 <= len(value) <= limit:
        errors.append(FieldError(pointer, f"{label} must be 1 to {limit} characters."))
    elif not TEXT_RE.match(value):
        errors.append(
            FieldError(pointer, f"{label} must be visible text without control characters.")
        )
    else:
        return value
    return None


def _amount(value: Any, pattern: re.Pattern, pointer: str, rule: str, errors: list[FieldError]):
    if not isinstance(value, str) or not pattern.match(value):
        errors.append(FieldError(pointer, rule))
        return None
    return Decimal(value)


def parse_issued_at(value: Any, pointer: str, errors: list[FieldError], now: datetime):
    """Parse an RFC 3339 date-time with an offset; naive or out-of-range times are errors."""
    if not isinstance(value, str):
        errors.append(FieldError(pointer, "issued_at must be an RFC 3339 date-time string."))
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        errors.append(
            FieldError(
                pointer,
                "issued_at must be an RFC 3339 date-time with a timezone offset, "
                "e.g. 2026-12-03T14:05:00+02:00.",
            )
        )
        return None
    if parsed < EARLIEST_ISSUE:
        errors.append(FieldError(pointer, "issued_at must not be before the year 2000."))
        return None
    if parsed > now + FUTURE_TOLERANCE:
        errors.append(FieldError(pointer, "issued_at must not be more than a day in the future."))
        return None
    return parsed


DATETIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_datetime(value: str) -> datetime | None:
    """An aware UTC datetime from RFC 3339 text (offset required), or None.

    Fractions of a second beyond microseconds are cut off, as the database keeps no more.
    """
    match = DATETIME_RE.match(value) if len(value) <= 64 else None
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    text = f"{day}T{clock}" + (f".{fraction[:6].ljust(6, '0')}" if fraction else "") + offset
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def parse_receipt(data: Any, now: datetime | None = None) -> ReceiptInput:
    """Validate a receipt request body; raises ValidationFailed listing every bad field."""
    now = now or utcnow()
    if not isinstance(data, dict):
        raise ValidationFailed([FieldError("", "The request body must be a JSON object.")])
    errors: list[FieldError] = []
    for name in sorted(set(data) - RECEIPT_FIELDS):
        errors.append(FieldError(f"/{_escape(name)}", f"Unknown field {name!r}."))
    for name in sorted(RECEIPT_FIELDS - set(data)):
        errors.append(FieldError(f"/{name}", f"{name} is required."))

    branch = (
        _text(data["branch"], "/branch", "branch", BRANCH_MAX, errors) if "branch" in data else None
    )
    currency = None
    if "currency" in data:
        raw = data["currency"]
        if not isinstance(raw, str) or raw not in CURRENCIES:
            errors.append(
                FieldError(
                    "/currency", "currency must be an upper-case ISO 4217 code such as USD or ZWG."
                )
            )
        else:
            currency = raw
    payment_method = None
    if "payment_method" in data:
        raw = data["payment_method"]
        if not isinstance(raw, str) or raw not in PAYMENT_METHODS:
            errors.append(
                FieldError(
                    "/payment_method",
                    f"payment_method must be one of {', '.join(PAYMENT_METHODS)}.",
                )
            )
        else:
            payment_method = raw
    issued_at = (
        parse_issued_at(data["issued_at"], "/issued_at", errors, now)
        if "issued_at" in data
        else None
    )
    lines = _parse_lines(data["lines"], errors) if "lines" in data else ()

    if not errors:
        receipt = ReceiptInput(branch, currency, payment_method, issued_at, lines)
        if receipt.total >= MAX_AMOUNT:
            errors.append(FieldError("/lines", "The receipt total is too large."))
        else:
            return receipt
    raise ValidationFailed(errors)


def _escape(name: str) -> str:
    return str(name).replace("~", "~0").replace("/", "~1")


def _parse_lines(raw: Any, errors: list[FieldError]) -> tuple[LineInput, ...]:
    if not isinstance(raw, list):
        errors.append(FieldError("/lines", "lines must be an array of line items."))
        return ()
    if not raw:
        errors.append(FieldError("/lines", "A receipt needs at least one line."))
        return ()
    if len(raw) > MAX_LINES:
        errors.append(FieldError("/lines", f"A receipt may have at most {MAX_LINES} lines."))
        return ()
    lines = []
    for index, item in enumerate(raw):
        base = f"/lines/{index}"
        if not isinstance(item, dict):
            errors.append(FieldError(base, "Each line must be an object."))
            continue
        before = len(errors)
        for name in sorted(set(item) - LINE_FIELDS):
            errors.append(FieldError(f"{base}/{_escape(name)}", f"Unknown field {name!r}."))
        for name in sorted(LINE_FIELDS - set(item)):
            errors.append(FieldError(f"{base}/{name}", f"{name} is required."))
        description = quantity = unit_price = None
        if "description" in item:
            description = _text(
                item["description"], f"{base}/description", "description", DESCRIPTION_MAX, errors
            )
        if "quantity" in item:
            quantity = _amount(
                item["quantity"],
                QUANTITY_RE,
                f"{base}/quantity",
                "quantity must be a decimal string above 0 and below 10^9 with at most 3 "
                'decimals, such as "2" or "0.75".',
                errors,
            )
        if "unit_price" in item:
            unit_price = _amount(
                item["unit_price"],
                PRICE_RE,
                f"{base}/unit_price",
                "unit_price must be a decimal string from 0 to below 10^12 with at most 2 "
                'decimals, such as "12.50".',
                errors,
            )
        if len(errors) == before:
            line = LineInput(description, quantity, unit_price)
            if line.line_total >= MAX_AMOUNT:
                errors.append(FieldError(base, "This line's total is too large."))
            else:
                lines.append(line)
    return tuple(lines)


def valid_idempotency_key(value: str) -> bool:
    """True for 1 to 255 visible ASCII characters (a UUID is the usual choice)."""
    return bool(IDEMPOTENCY_KEY_RE.match(value))


def _find_by_key(token_id: int, key: str) -> Receipt | None:
    return db.session.scalar(
        select(Receipt)
        .options(selectinload(Receipt.lines))
        .where(Receipt.token_id == token_id, Receipt.idempotency_key == key)
    )


def _replay(existing: Receipt, fingerprint: str) -> dict[str, Any]:
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict(existing.id)
    return receipt_json(existing)


def create_receipt(
    principal: Principal, data: ReceiptInput, idempotency_key: str | None, permission: str
) -> tuple[dict[str, Any], bool]:
    """Store a receipt made with a token and its audit row in one transaction.

    Returns (receipt as JSON, created). A repeated Idempotency-Key with the same body
    returns the original receipt and created=False; with another body it raises
    IdempotencyConflict. The token is re-checked inside the write transaction, so nothing
    made with it commits after its revocation (TokenNoLongerUsable) or after a role change
    that removed the permission (PermissionLost).
    """
    fingerprint = data.fingerprint()
    begin_write()
    try:
        current = recheck_for_write(principal.token_id)
        if current is None:
            raise TokenNoLongerUsable()
        if permission not in role_permissions(current.creator_role):
            raise PermissionLost()
        if idempotency_key is not None:
            existing = _find_by_key(current.token_id, idempotency_key)
            if existing is not None:
                body = _replay(existing, fingerprint)
                db.session.rollback()
                return body, False
        receipt = Receipt(
            business_id=current.business_id,
            branch=data.branch,
            currency=data.currency,
            payment_method=data.payment_method,
            issued_at=data.issued_at,
            total=data.total,
            created_at=utcnow(),
            created_by_id=current.creator_id,
            token_id=current.token_id,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
            lines=[
                ReceiptLine(
                    position=index,
                    description=line.description,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    line_total=line.line_total,
                )
                for index, line in enumerate(data.lines)
            ],
        )
        db.session.add(receipt)
        db.session.flush()
        audit.record(
            "receipt.created",
            business_id=current.business_id,
            actor_user_id=current.creator_id,
            actor_token_id=current.token_id,
            target_type="receipt",
            target_id=receipt.id,
            details={
                "public_id": current.public_id,
                "branch": data.branch,
                "currency": data.currency,
                "total": format_money(data.total),
                "lines": len(data.lines),
            },
        )
        # Serialised before the commit, which would expire the objects and cost a re-read.
        body = receipt_json(receipt)
        db.session.commit()
        return body, True
    except IntegrityError:
        # Two requests with the same key raced past the lookup (on PostgreSQL; SQLite's
        # BEGIN IMMEDIATE serialises them). The unique constraint let exactly one commit:
        # answer with that one.
        db.session.rollback()
        existing = _find_by_key(principal.token_id, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        try:
            return _replay(existing, fingerprint), False
        finally:
            db.session.rollback()
    except Exception:
        db.session.rollback()
        raise


def get_receipt(business_id: int, receipt_id: int) -> Receipt | None:
    """The business's receipt with this id, or None (another business's is None too)."""
    return db.session.scalar(
        select(Receipt)
        .options(selectinload(Receipt.lines))
        .where(Receipt.business_id == business_id, Receipt.id == receipt_id)
    )


@dataclass(frozen=True, slots=True)
class Cursor:
    issued_at: datetime
    receipt_id: int


def encode_cursor(receipt: Receipt) -> str:
    """An opaque cursor pointing just after receipt in the newest-first order."""
    raw = json.dumps({"t": iso_utc(receipt.issued_at), "i": receipt.id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor | None:
    """The cursor's position, or None if it was not made by encode_cursor."""
    if not text or len(text) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
        when = parse_datetime(data["t"])
        receipt_id = data["i"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None
    if when is None or type(receipt_id) is not int or not 0 < receipt_id < 2**31:
        return None
    return Cursor(when, receipt_id)


def list_receipts(
    business_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    branch: str | None = None,
    after: Cursor | None = None,
    limit: int = 50,
) -> tuple[list[Receipt], str | None]:
    """A page of the business's receipts, newest issue time first; returns (page, next cursor).

    start is inclusive and end exclusive. Keyset pagination on (issued_at, id) keeps pages
    stable while new receipts arrive.
    """
    query = (
        select(Receipt)
        .options(selectinload(Receipt.lines))
        .where(Receipt.business_id == business_id)
    )
    if start is not None:
        query = query.where(Receipt.issued_at >= start)
    if end is not None:
        query = query.where(Receipt.issued_at < end)
    if branch is not None:
        query = query.where(Receipt.branch == branch)
    if after is not None:
        query = query.where(
            or_(
                Receipt.issued_at < after.issued_at,
                and_(Receipt.issued_at == after.issued_at, Receipt.id < after.receipt_id),
            )
        )
    rows = list(
        db.session.scalars(
            query.order_by(Receipt.issued_at.desc(), Receipt.id.desc()).limit(limit + 1)
        )
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return page, next_cursor


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    """The API representation of a receipt; amounts are decimal strings, never floats."""
    return {
        "id": receipt.id,
        "branch": receipt.branch,
        "currency": receipt.currency,
        "payment_method": receipt.payment_method,
        "issued_at": iso_utc(receipt.issued_at),
        "total": format_money(receipt.total),
        "lines": [
            {
                "description": line.description,
                "quantity": format_quantity(line.quantity),
                "unit_price": format_money(line.unit_price),
                "line_total": format_money(line.line_total),
            }
            for line in receipt.lines
        ],
        "created_at": iso_utc(receipt.created_at),
    }
