"""Jinja filters for times: relative wording and exact times in the business's timezone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask
from markupsafe import Markup, escape

from .models import utcnow

DEFAULT_TIMEZONE = "Africa/Harare"


def zone(name: str | None) -> ZoneInfo:
    """Return the ZoneInfo for name, falling back to the default timezone."""
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'} ago"


def relative_time(
    when: datetime | None, tz_name: str | None, now: datetime | None = None, never: str = "Never"
) -> str:
    """Word when relative to now: "Just now", "5 minutes ago", "Yesterday", "3 days ago".

    Calendar words ("Yesterday", days) count local midnights in the business's timezone,
    so a use at 23:50 seen at 00:10 the next day reads "20 minutes ago", but one at
    22:00 seen at 00:10 reads "Yesterday".
    """
    if when is None:
        return never
    now = now or utcnow()
    seconds = (now - when).total_seconds()
    if seconds < 60:
        return "Just now"
    if seconds < 3600:
        return _plural(int(seconds // 60), "minute")
    tz = zone(tz_name)
    days = (now.astimezone(tz).date() - when.astimezone(tz).date()).days
    if days == 0:
        return _plural(int(seconds // 3600), "hour")
    if days == 1:
        return "Yesterday"
    if days < 7:
        return f"{days} days ago"
    local = when.astimezone(tz)
    if local.year == now.astimezone(tz).year:
        return f"{local.day} {local:%b}"
    return f"{local.day} {local:%b %Y}"


def exact_time(when: datetime | None, tz_name: str | None, seconds: bool = True) -> str:
    """The exact time with its timezone, e.g. "Thu 3 Dec 2026, 14:02:05 CAT (UTC+02:00)"."""
    if when is None:
        return ""
    local = when.astimezone(zone(tz_name))
    offset = local.strftime("%z")
    clock = "%H:%M:%S" if seconds else "%H:%M"
    return f"{local:%a} {local.day} {local.strftime('%b %Y, ' + clock + ' %Z')} " + (
        f"(UTC{offset[:3]}:{offset[3:]})"
    )


def short_date(when: datetime | None, tz_name: str | None) -> str:
    """A date such as "3 Dec 2026" in the business's timezone."""
    if when is None:
        return ""
    local = when.astimezone(zone(tz_name))
    return f"{local.day} {local:%b %Y}"


def iso_utc(when: datetime | None) -> str:
    """An ISO 8601 UTC timestamp for machines (datetime attributes, JSON, CSV)."""
    if when is None:
        return ""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def time_tag(
    when: datetime | None,
    tz_name: str | None,
    never: str = "Never",
    element_id: str | None = None,
) -> Markup:
    """A focusable <time> whose text is relative and whose exact time shows on hover/focus."""
    id_attr = Markup(f' id="{escape(element_id)}"') if element_id else Markup("")
    if when is None:
        return Markup('<span class="muted"{}>{}</span>').format(id_attr, never)
    exact = exact_time(when, tz_name)
    return Markup('<time{} datetime="{}" title="{}" data-exact="{}" tabindex="0">{}</time>').format(
        id_attr, iso_utc(when), exact, exact, relative_time(when, tz_name, never=never)
    )


def register(app: Flask) -> None:
    """Register the filters with the app's Jinja environment."""
    app.jinja_env.filters.update(
        relative_time=relative_time,
        exact_time=exact_time,
        short_date=short_date,
        iso_utc=iso_utc,
        time_tag=time_tag,
    )
