"""Relative "last used" wording from an injected clock, calendar words in the business's
timezone, and the <time> element that carries the exact time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from conftest import create_token_via_ui, login
from markupsafe import Markup
from sqlalchemy import select

from vasbox_dash import tokens
from vasbox_dash.extensions import db
from vasbox_dash.filters import exact_time, iso_utc, relative_time, short_date, time_tag
from vasbox_dash.models import ApiToken, User
from vasbox_dash.security import parse_token

HARARE = "Africa/Harare"  # CAT, UTC+2 all year
HX = {"HX-Request": "true"}
# Thursday 3 December 2026, 10:00 UTC = 12:00 CAT.
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "expected"),
    [
        (timedelta(0), "Just now"),
        (timedelta(seconds=59), "Just now"),
        (timedelta(seconds=60), "1 minute ago"),
        (timedelta(seconds=119), "1 minute ago"),
        (timedelta(minutes=2), "2 minutes ago"),
        (timedelta(minutes=5), "5 minutes ago"),
        (timedelta(minutes=59, seconds=59), "59 minutes ago"),
        (timedelta(hours=1), "1 hour ago"),
        (timedelta(hours=1, minutes=59), "1 hour ago"),
        (timedelta(hours=2), "2 hours ago"),
        (timedelta(hours=11, minutes=59), "11 hours ago"),  # 00:01 CAT today
        (timedelta(hours=12, minutes=1), "Yesterday"),  # 23:59 CAT yesterday
        (timedelta(days=1), "Yesterday"),
        (timedelta(days=1, hours=12), "Yesterday"),  # 00:00 CAT yesterday
        (timedelta(days=1, hours=12, seconds=1), "2 days ago"),
        (timedelta(days=2), "2 days ago"),
        (timedelta(days=3), "3 days ago"),
        (timedelta(days=6), "6 days ago"),
        (timedelta(days=7), "26 Nov"),
        (timedelta(days=400), "29 Oct 2025"),
    ],
    ids=lambda value: str(value) if isinstance(value, timedelta) else value,
)
def test_relative_time_wording(ago, expected):
    assert relative_time(NOW - ago, HARARE, now=NOW) == expected


def test_a_time_slightly_in_the_future_reads_just_now():
    # Clocks of app servers drift a little; a use "from the future" is not an error.
    assert relative_time(NOW + timedelta(seconds=5), HARARE, now=NOW) == "Just now"


@pytest.mark.parametrize(
    ("never", "expected"), [(None, "Never"), ("Never used", "Never used"), ("never", "never")]
)
def test_no_time_reads_as_never(never, expected):
    kwargs = {"never": never} if never else {}
    assert relative_time(None, HARARE, now=NOW, **kwargs) == expected


@pytest.mark.parametrize(
    ("used", "viewed", "expected"),
    [
        # 23:30 CAT seen at 00:30 CAT: the same UTC date, but yesterday in Harare.
        pytest.param(
            utc(2026, 12, 2, 21, 30),
            utc(2026, 12, 2, 22, 30),
            "Yesterday",
            id="same-utc-date-yesterday-in-harare",
        ),
        # 23:50 CAT seen at 00:10 CAT: under an hour reads as minutes, not "Yesterday".
        pytest.param(
            utc(2026, 12, 2, 21, 50),
            utc(2026, 12, 2, 22, 10),
            "20 minutes ago",
            id="minutes-win-under-an-hour",
        ),
        # 23:00 CAT seen at exactly midnight CAT.
        pytest.param(
            utc(2026, 12, 2, 21, 0),
            utc(2026, 12, 2, 22, 0),
            "Yesterday",
            id="seen-at-midnight-exactly",
        ),
        # 00:00 CAT seen at 23:59 CAT: the UTC dates differ, the Harare date does not.
        pytest.param(
            utc(2026, 12, 2, 22, 0),
            utc(2026, 12, 3, 21, 59),
            "23 hours ago",
            id="utc-yesterday-but-today-in-harare",
        ),
        # 23:59 CAT on the 1st seen at 00:01 CAT on the 4th: two UTC days, three in Harare.
        pytest.param(
            utc(2026, 12, 1, 21, 59),
            utc(2026, 12, 3, 22, 1),
            "3 days ago",
            id="days-count-harare-midnights",
        ),
        # New Year's Eve 23:30 CAT seen at 00:30 CAT on 1 January.
        pytest.param(
            utc(2026, 12, 31, 21, 30),
            utc(2026, 12, 31, 22, 30),
            "Yesterday",
            id="across-the-new-year",
        ),
    ],
)
def test_yesterday_follows_midnight_in_harare_not_utc(used, viewed, expected):
    assert relative_time(used, HARARE, now=viewed) == expected


def test_the_same_instants_read_differently_in_utc_and_harare():
    used, viewed = utc(2026, 12, 2, 21, 30), utc(2026, 12, 2, 22, 30)
    assert relative_time(used, HARARE, now=viewed) == "Yesterday"
    assert relative_time(used, "UTC", now=viewed) == "1 hour ago"
    used, viewed = utc(2026, 12, 2, 22, 0), utc(2026, 12, 3, 21, 59)
    assert relative_time(used, HARARE, now=viewed) == "23 hours ago"
    assert relative_time(used, "UTC", now=viewed) == "Yesterday"


@pytest.mark.parametrize("tz_name", [None, "", "Not/AZone"])
def test_missing_or_unknown_timezone_falls_back_to_harare(tz_name):
    used, viewed = utc(2026, 12, 2, 21, 30), utc(2026, 12, 2, 22, 30)
    assert relative_time(used, tz_name, now=viewed) == "Yesterday"


def test_relative_time_uses_the_injected_clock_by_default(app, clock):
    with app.app_context():
        used = clock.now - timedelta(minutes=5)
        assert relative_time(used, HARARE) == "5 minutes ago"
        clock.advance(hours=2)
        assert relative_time(used, HARARE) == "2 hours ago"
        clock.advance(days=1)
        assert relative_time(used, HARARE) == "Yesterday"


def test_exact_time_shows_the_local_time_with_cat_and_offset():
    assert exact_time(utc(2026, 12, 3, 9, 55, 7), HARARE) == (
        "Thu 3 Dec 2026, 11:55:07 CAT (UTC+02:00)"
    )
    assert exact_time(utc(2026, 12, 2, 22, 30), HARARE, seconds=False) == (
        "Thu 3 Dec 2026, 00:30 CAT (UTC+02:00)"
    )
    assert exact_time(utc(2026, 12, 3, 9, 55), "Africa/Johannesburg").endswith(
        "11:55:00 SAST (UTC+02:00)"
    )
    assert exact_time(None, HARARE) == ""


def test_iso_utc_is_utc_with_a_z_whatever_the_input_offset():
    cat = timezone(timedelta(hours=2))
    assert iso_utc(datetime(2026, 12, 3, 11, 55, tzinfo=cat)) == "2026-12-03T09:55:00Z"
    assert iso_utc(utc(2026, 12, 3, 9, 55)) == "2026-12-03T09:55:00Z"
    assert iso_utc(None) == ""


def test_short_date_uses_the_business_date():
    assert short_date(utc(2026, 12, 3, 21, 59), HARARE) == "3 Dec 2026"
    assert short_date(utc(2026, 12, 3, 22, 0), HARARE) == "4 Dec 2026"


def test_time_tag_carries_utc_datetime_and_the_exact_local_time(app, clock):
    with app.app_context():
        tag = time_tag(clock.now - timedelta(minutes=5), HARARE, never="Never used")
    assert isinstance(tag, Markup)
    assert tag == (
        '<time datetime="2026-12-03T09:55:00Z" '
        'title="Thu 3 Dec 2026, 11:55:00 CAT (UTC+02:00)" '
        'data-exact="Thu 3 Dec 2026, 11:55:00 CAT (UTC+02:00)" '
        'tabindex="0">5 minutes ago</time>'
    )


def test_time_tag_without_a_time_says_never_used(app):
    with app.app_context():
        tag = time_tag(None, HARARE, never="Never used")
    assert "<time" not in tag
    assert ">Never used</span>" in tag


def test_time_tag_escapes_the_never_text_and_element_id(app):
    with app.app_context():
        tag = time_tag(None, HARARE, never="<b>x</b>", element_id='"><script>')
    assert "<b>" not in tag
    assert "<script>" not in tag


def set_last_used(app, public_id: str, when: datetime) -> None:
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.public_id == public_id))
        token.last_used_at = when
        db.session.commit()


def last_used_cell(body: str, public_id: str) -> str:
    match = re.search(rf'<span id="last-used-{public_id}"[^>]*>(.*?)</span>\s*</td>', body, re.S)
    if match is None:
        match = re.search(rf'<span id="last-used-{public_id}"[^>]*>(.*?)</span>\n', body, re.S)
    assert match, "the row has a last-used cell"
    return match.group(1)


def test_page_renders_last_used_as_a_time_element_in_business_time(app, as_owner, clock):
    _response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    public_id = parse_token(plaintext).public_id
    set_last_used(app, public_id, clock.now - timedelta(minutes=5))
    cell = last_used_cell(as_owner.get("/admin/api-tokens").get_data(as_text=True), public_id)
    assert re.fullmatch(
        r'<time datetime="2026-12-03T09:55:00Z" '
        r'title="Thu 3 Dec 2026, 11:55:00 CAT \(UTC\+02:00\)" '
        r'data-exact="Thu 3 Dec 2026, 11:55:00 CAT \(UTC\+02:00\)" '
        r'tabindex="0">5 minutes ago</time>',
        cell,
    )


def test_page_says_never_used_for_a_new_token(as_owner):
    _response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    public_id = parse_token(plaintext).public_id
    cell = last_used_cell(as_owner.get("/admin/api-tokens").get_data(as_text=True), public_id)
    assert "Never used" in cell
    assert "<time" not in cell


def test_page_says_yesterday_just_after_midnight_in_harare(app, client, people, clock):
    # 21:30 UTC on the 2nd is 23:30 CAT; the owner looks at 22:30 UTC, 00:30 CAT on the 3rd.
    clock.now = utc(2026, 12, 2, 21, 0)
    with app.app_context():
        owner = db.session.get(User, people["owner"].id)
        public_id = tokens.issue_token(owner, "Night Shift Till")[0].public_id
    set_last_used(app, public_id, utc(2026, 12, 2, 21, 30))
    clock.now = utc(2026, 12, 2, 22, 30)
    login(client, people["owner"])
    body = client.get("/admin/api-tokens").get_data(as_text=True)
    cell = last_used_cell(body, public_id)
    assert cell.endswith(">Yesterday</time>")
    assert 'datetime="2026-12-02T21:30:00Z"' in cell
    assert 'title="Wed 2 Dec 2026, 23:30:00 CAT (UTC+02:00)"' in cell


def test_times_endpoint_refreshes_the_wording_as_the_clock_moves(app, as_owner, clock):
    _response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    public_id = parse_token(plaintext).public_id
    set_last_used(app, public_id, clock.now)
    first = as_owner.get("/admin/api-tokens/times", headers=HX).get_data(as_text=True)
    assert ">Just now</time>" in first
    clock.advance(minutes=5)
    later = as_owner.get("/admin/api-tokens/times", headers=HX).get_data(as_text=True)
    assert ">5 minutes ago</time>" in later
    assert f'<span id="last-used-{public_id}" hx-swap-oob="innerHTML">' in later
