"""Sales reports: receipt totals per day (in the business's timezone) and per branch."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, cast, func, literal, select

from .extensions import db
from .filters import zone
from .models import Receipt
from .receipts import format_money

MAX_REPORT_DAYS = 366
# Spreadsheets run a cell starting with one of these as a formula; a branch name from an
# integration must never become one ("CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class SalesRow:
    """Sales of one branch on one local day in one currency."""

    day: date
    branch: str
    currency: str
    receipts: int
    total: Decimal


def day_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC instants of local midnight starting first and local midnight after last."""
    start = datetime.combine(first, time(), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=tz).astimezone(UTC)
    return start, end


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return zone(name)


def _sqlite_local_date(stored: str | None, tz_name: str) -> str | None:
    # SQLite has no time zone support; receipts are stored as naive UTC text.
    if stored is None:
        return None
    moment = datetime.fromisoformat(stored).replace(tzinfo=UTC)
    return moment.astimezone(_zone(tz_name)).date().isoformat()


def _inline(value: str):
    # Rendered into the SQL text, so the SELECT and GROUP BY expressions are identical:
    # PostgreSQL cannot tell that two separate bound parameters hold the same value.
    return literal(value, literal_execute=True)


def _local_date_and_cents(tz_name: str):
    """SQL expressions for (local date as YYYY-MM-DD, total) on the session's database."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        raw = connection.connection.driver_connection
        raw.create_function("vasbox_local_date", 2, _sqlite_local_date, deterministic=True)
        local_date = func.vasbox_local_date(Receipt.issued_at, _inline(tz_name))
        # SQLite keeps NUMERIC as floating point; summing whole cents stays exact.
        total = func.sum(cast(func.round(Receipt.total * 100), Integer))
        return local_date, total, True
    local_date = func.to_char(func.timezone(_inline(tz_name), Receipt.issued_at), "YYYY-MM-DD")
    return local_date, func.sum(Receipt.total), False


def sales_rows(business_id: int, tz_name: str, first: date, last: date) -> list[SalesRow]:
    """Receipts issued from first to last (inclusive local days) grouped by day, branch and
    currency, summed in the database."""
    tz = _zone(tz_name)
    start, end = day_bounds(first, last, tz)
    local_date, total, in_cents = _local_date_and_cents(tz.key)
    query = (
        select(local_date.label("day"), Receipt.branch, Receipt.currency, func.count(), total)
        .where(
            Receipt.business_id == business_id,
            Receipt.issued_at >= start,
            Receipt.issued_at < end,
        )
        .group_by(local_date, Receipt.branch, Receipt.currency)
    )
    rows = []
    for day, branch, currency, count, amount in db.session.execute(query):
        amount = Decimal(amount or 0)
        if in_cents:
            amount = amount / 100
        rows.append(
            SalesRow(
                date.fromisoformat(day), branch, currency, count, amount.quantize(Decimal("0.01"))
            )
        )
    rows.sort(key=lambda r: (r.day, r.branch, r.currency))
    return rows


def _totals(rows: list[SalesRow], key) -> list[tuple[Any, str, int, Decimal]]:
    grouped: dict[tuple, list] = defaultdict(lambda: [0, Decimal("0.00")])
    for row in rows:
        bucket = grouped[(key(row), row.currency)]
        bucket[0] += row.receipts
        bucket[1] += row.total
    return [(k, currency, n, t) for (k, currency), (n, t) in sorted(grouped.items())]


def sales_report(business_id: int, tz_name: str, first: date, last: date) -> dict[str, Any]:
    """The sales report as JSON: per day, per branch and overall, each split by currency
    (amounts in different currencies are never added together)."""
    rows = sales_rows(business_id, tz_name, first, last)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "timezone": tz_name,
        "days": [
            {"date": d.isoformat(), "currency": c, "receipts": n, "total": format_money(t)}
            for d, c, n, t in _totals(rows, lambda r: r.day)
        ],
        "branches": [
            {"branch": b, "currency": c, "receipts": n, "total": format_money(t)}
            for b, c, n, t in _totals(rows, lambda r: r.branch)
        ],
        "totals": [
            {"currency": c, "receipts": n, "total": format_money(t)}
            for _, c, n, t in _totals(rows, lambda r: "")
        ],
    }


def _cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def sales_csv(business_id: int, tz_name: str, first: date, last: date) -> str:
    """The sales report as CSV, one row per day, branch and currency, ready for a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["date", "branch", "currency", "receipts", "total"])
    for row in sales_rows(business_id, tz_name, first, last):
        writer.writerow(
            [
                row.day.isoformat(),
                _cell(row.branch),
                row.currency,
                row.receipts,
                format_money(row.total),
            ]
        )
    return buffer.getvalue()
