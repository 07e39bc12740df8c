"""A token's detail page: identity, creation, last use, request counts, failed attempts
and recent requests, all read against an injected clock."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import create_token_via_ui, login, make_config
from sqlalchemy import select

from vasbox_dash import usage
from vasbox_dash.activity import failed_attempt_sentence
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, TokenUsage
from vasbox_dash.security import generate_token, parse_token

HX = {"HX-Request": "true"}


@pytest.fixture
def app_config(database_url, clock) -> dict:
    # The session outlives the clock jumps below, which test the counts, not sign-in.
    return make_config(database_url, CLOCK=clock, SESSION_IDLE_SECONDS=6 * 3600)


@pytest.fixture
def token(as_owner) -> str:
    """A token made through the page; returns its public id."""
    _response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    return parse_token(plaintext).public_id


def add_usage(app, clock, public_id: str, ago: timedelta, **fields) -> None:
    """Record one API request with the token, `ago` before the clock's now."""
    with app.app_context():
        row = db.session.scalar(select(ApiToken).where(ApiToken.public_id == public_id))
        values = {
            "method": "GET",
            "route": "/api/v1/receipts",
            "status": 200,
            "outcome": "ok",
            "ip": "203.0.113.7",
            "user_agent": "AcmeBooks/2.1",
            "duration_ms": 12,
        }
        values.update(fields)
        db.session.add(
            TokenUsage(
                token_id=row.id,
                business_id=row.business_id,
                public_id=public_id,
                created_at=clock.now - ago,
                **values,
            )
        )
        db.session.commit()


def set_last_used(app, public_id: str, when, ip: str, agent: str) -> None:
    with app.app_context():
        row = db.session.scalar(select(ApiToken).where(ApiToken.public_id == public_id))
        row.last_used_at, row.last_used_ip, row.last_used_user_agent = when, ip, agent
        db.session.commit()


def counts(body: str) -> dict[str, int]:
    return {
        key: int(value)
        for key, value in re.findall(r'id="count-(\w+)"><strong>(\d+)</strong>', body)
    }


def request_rows(body: str) -> list[str]:
    table = body[body.index('id="requests-table"') :]
    table = table[table.index("<tbody>") : table.index("</tbody>")]
    return re.findall(r"<tr>\s*(.*?)</tr>", table, flags=re.S)


def test_owner_opens_a_token_from_its_name_on_the_api_tokens_page(as_owner, token):
    listing = as_owner.get("/admin/api-tokens").get_data(as_text=True)
    assert f'<a href="/admin/api-tokens/{token}">Accounting Software</a>' in listing
    page = as_owner.get(f"/admin/api-tokens/{token}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert "<h1" in body and "Accounting Software" in body


def test_detail_shows_identity_status_and_who_created_it_when(as_owner, token):
    body = as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True)
    assert f"vbx_{token}…" in body
    assert "Active" in body
    assert "Thu 3 Dec 2026, 12:00:00 CAT (UTC+02:00)" in body
    assert "by Olivia Owner" in body
    assert "Never used" in body
    assert "No requests recorded with this token yet." in body
    assert "No failed attempts with this token." in body


def test_last_used_shows_relative_and_exact_time_ip_and_user_agent(app, as_owner, token, clock):
    set_last_used(
        app, token, clock.now - timedelta(minutes=10), "198.51.100.23", "AcmeBooks/2.1 (Linux)"
    )
    body = as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True)
    last_used = body[body.index('id="token-last-used"') :]
    last_used = last_used[: last_used.index("</dd>")]
    assert "10 minutes ago" in last_used
    assert "Thu 3 Dec 2026, 11:50:00 CAT (UTC+02:00)" in last_used
    assert "198.51.100.23" in last_used
    assert "AcmeBooks/2.1 (Linux)" in last_used


def test_request_counts_cover_24_hours_7_days_and_30_days(app, as_owner, token, clock):
    for ago in (
        timedelta(minutes=5),
        timedelta(hours=23, minutes=59),
        timedelta(hours=25),
        timedelta(days=6),
        timedelta(days=8),
        timedelta(days=29),
        timedelta(days=31),
    ):
        add_usage(app, clock, token, ago)
    # Refused attempts are not requests made with the token.
    add_usage(app, clock, token, timedelta(minutes=1), outcome="wrong_secret", status=401)
    add_usage(app, clock, token, timedelta(minutes=1), outcome="revoked", status=401)
    # A request the token made but the API refused (a bad body) still counts.
    add_usage(app, clock, token, timedelta(minutes=2), status=422, method="POST")
    body = as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True)
    assert counts(body) == {"24h": 3, "7d": 5, "30d": 7}
    clock.advance(hours=2)
    body = as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True)
    assert counts(body) == {"24h": 2, "7d": 5, "30d": 7}


def test_counts_include_only_this_tokens_requests(app, as_owner, token, clock):
    _response, other = create_token_via_ui(as_owner, "Reporting Script")
    add_usage(app, clock, parse_token(other).public_id, timedelta(minutes=5))
    add_usage(app, clock, token, timedelta(minutes=5))
    body = as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True)
    assert counts(body) == {"24h": 1, "7d": 1, "30d": 1}
    assert len(request_rows(body)) == 1


@pytest.mark.parametrize(
    ("outcome", "count", "ago", "sentence"),
    [
        (
            "revoked",
            3,
            timedelta(minutes=10),
            "Someone tried to use this revoked token 3 times, most recently 10 minutes ago.",
        ),
        (
            "revoked",
            1,
            timedelta(seconds=20),
            "Someone tried to use this revoked token once, just now.",
        ),
        (
            "wrong_secret",
            2,
            timedelta(hours=3),
            "Someone tried to use this token’s identifier with a wrong secret twice, "
            "most recently 3 hours ago.",
        ),
        (
            "wrong_secret",
            12,
            timedelta(days=1),
            "Someone tried to use this token’s identifier with a wrong secret 12 times, "
            "most recently yesterday.",
        ),
        (
            "revoked",
            4,
            timedelta(days=20),
            "Someone tried to use this revoked token 4 times, most recently on 13 Nov.",
        ),
    ],
)
def test_failed_attempts_are_described_in_plain_words(app, clock, outcome, count, ago, sentence):
    with app.app_context():
        assert (
            failed_attempt_sentence(outcome, count, clock.now - ago, "Africa/Harare", clock.now)
            == sentence
        )


def test_failed_attempts_with_a_revoked_token_show_on_its_page(app, as_owner, token, clock):
    as_owner.post(f"/admin/api-tokens/{token}/revoke")
    for minutes in (40, 25, 10):
        add_usage(app, clock, token, timedelta(minutes=minutes), outcome="revoked", status=401)
    add_usage(app, clock, token, timedelta(hours=2), outcome="wrong_secret", status=401)
    body = as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True)
    assert "Someone tried to use this revoked token 3 times, most recently 10 minutes ago." in body
    assert (
        "Someone tried to use this token’s identifier with a wrong secret once, 2 hours ago."
        in body
    )
    assert "Most recent: Thu 3 Dec 2026, 11:50:00 CAT (UTC+02:00)." in body
    assert counts(body) == {"24h": 0, "7d": 0, "30d": 0}
    clock.advance(minutes=50)
    later = as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True)
    assert "3 times, most recently 1 hour ago." in later


def test_revoked_token_page_says_when_and_by_whom_and_offers_no_rename(as_owner, token, clock):
    clock.advance(minutes=5)
    as_owner.post(f"/admin/api-tokens/{token}/revoke")
    body = as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True)
    status = body[body.index('id="token-status"') :]
    status = status[: status.index("</dd>")]
    assert "Revoked" in status
    assert "Thu 3 Dec 2026, 12:05:00 CAT (UTC+02:00) by Olivia Owner" in status
    assert "Rename" not in body
    listing = as_owner.get("/admin/api-tokens").get_data(as_text=True)
    assert f'<a href="/admin/api-tokens/{token}">Accounting Software</a>' in listing


def test_recent_requests_show_time_method_route_status_and_ip(app, as_owner, token, clock):
    add_usage(
        app,
        clock,
        token,
        timedelta(minutes=3),
        method="POST",
        route="/api/v1/receipts",
        status=201,
        ip="192.0.2.44",
    )
    add_usage(app, clock, token, timedelta(minutes=1), outcome="wrong_secret", status=401)
    rows = request_rows(as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True))
    assert len(rows) == 2
    newest, older = rows
    assert "Thu 3 Dec 2026, 11:59:00 CAT (UTC+02:00)" in newest
    assert "401" in newest and "Wrong secret" in newest
    for text in ("11:57:00 CAT", "POST", "/api/v1/receipts", "201", "192.0.2.44"):
        assert text in older


def test_recent_requests_are_newest_first_and_paginated(app, as_owner, token, clock):
    for minute in range(25):
        add_usage(app, clock, token, timedelta(minutes=minute), route=f"/api/v1/r{minute:02d}")
    first = as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True)
    rows = request_rows(first)
    assert len(rows) == 20
    assert "/api/v1/r00" in rows[0] and "/api/v1/r19" in rows[-1]
    assert "1–20 of 25" in first
    assert f'href="/admin/api-tokens/{token}?page=2"' in first
    second = as_owner.get(f"/admin/api-tokens/{token}?page=2").get_data(as_text=True)
    rows = request_rows(second)
    assert len(rows) == 5
    assert "/api/v1/r20" in rows[0] and "/api/v1/r24" in rows[-1]
    assert f'href="/admin/api-tokens/{token}?page=1"' in second
    # Past the end shows the last page rather than nothing.
    beyond = as_owner.get(f"/admin/api-tokens/{token}?page=99").get_data(as_text=True)
    assert "21–25 of 25" in beyond


def test_htmx_paging_returns_only_the_recent_requests_section(app, as_owner, token, clock):
    for minute in range(21):
        add_usage(app, clock, token, timedelta(minutes=minute))
    response = as_owner.get(f"/admin/api-tokens/{token}?page=2", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="recent-requests"')
    assert "<html" not in body
    assert len(request_rows(body)) == 1
    assert 'hx-target="#recent-requests"' in body
    assert "HX-Request" in response.headers["Vary"]


def test_names_are_shown_as_text_not_html(as_owner):
    _response, plaintext = create_token_via_ui(as_owner, "<img src=x onerror=alert(1)>")
    body = as_owner.get(f"/admin/api-tokens/{parse_token(plaintext).public_id}").get_data(
        as_text=True
    )
    assert "<img src=x" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_the_page_never_shows_the_secret(as_owner):
    _response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    body = as_owner.get(f"/admin/api-tokens/{parse_token(plaintext).public_id}").get_data(
        as_text=True
    )
    assert plaintext not in body
    assert parse_token(plaintext).secret not in body


@pytest.mark.parametrize("path", ["zzzzzzzz", "ABCDEFGH", "short", "toolong99"])
def test_unknown_or_malformed_public_id_is_404(as_owner, path):
    assert as_owner.get(f"/admin/api-tokens/{path}").status_code == 404


def test_another_owners_token_is_404_and_not_named(client, people, app):
    other = app.test_client()
    login(other, people["other_owner"])
    _response, plaintext = create_token_via_ui(other, "Other Books")
    login(client, people["owner"])
    response = client.get(f"/admin/api-tokens/{parse_token(plaintext).public_id}")
    assert response.status_code == 404
    assert "Other Books" not in response.get_data(as_text=True)


def test_after_real_api_use_the_page_matches_what_was_sent(app, as_owner, clock):
    """Drive the JSON API with the token, then read its page: counts, requests, last use."""
    _response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    public_id = parse_token(plaintext).public_id
    api = app.test_client()
    sent = {"REMOTE_ADDR": "198.51.100.23"}
    agent = "AcmeBooks/2.1 (Linux)"
    for path in ("/api/v1/me", "/api/v1/receipts"):
        clock.advance(minutes=2)
        response = api.get(
            path,
            headers={"Authorization": f"Bearer {plaintext}", "User-Agent": agent},
            environ_base=sent,
        )
        assert response.status_code == 200
    # The same identifier with another secret: a well-formed token that is not this one.
    wrong, _secret = generate_token(public_id)
    clock.advance(minutes=1)
    refused = api.get(
        "/api/v1/me",
        headers={"Authorization": f"Bearer {wrong}", "User-Agent": "curl/8.5.0"},
        environ_base={"REMOTE_ADDR": "192.0.2.66"},
    )
    assert refused.status_code == 401
    usage.flush(app)
    clock.advance(minutes=1)

    body = as_owner.get(f"/admin/api-tokens/{public_id}").get_data(as_text=True)
    assert counts(body) == {"24h": 2, "7d": 2, "30d": 2}
    rows = request_rows(body)
    assert len(rows) == 3
    assert "/api/v1/me" in rows[0] and "401" in rows[0] and "192.0.2.66" in rows[0]
    assert "/api/v1/receipts" in rows[1] and "200" in rows[1] and "198.51.100.23" in rows[1]
    assert "Thu 3 Dec 2026, 12:04:00 CAT (UTC+02:00)" in rows[1]
    assert "/api/v1/me" in rows[2] and "GET" in rows[2]
    last_used = body[body.index('id="token-last-used"') :]
    last_used = last_used[: last_used.index("</dd>")]
    # The last accepted request (the refused one does not count as a use).
    assert "2 minutes ago" in last_used
    assert "Thu 3 Dec 2026, 12:04:00 CAT (UTC+02:00)" in last_used
    assert "198.51.100.23" in last_used and agent in last_used
    assert (
        "Someone tried to use this token’s identifier with a wrong secret once, "
        "1 minute ago." in body
    )
