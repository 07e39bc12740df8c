"""The API Tokens page: header, empty state, the active table, the revoked section and the
"last used" refresh endpoint."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import create_token_via_ui, find_tokens, login
from sqlalchemy import select

from vasbox_dash import tokens
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, User
from vasbox_dash.security import parse_token

HX = {"HX-Request": "true"}
PAGE = "/admin/api-tokens"
NAMING_HINT = (
    "Use descriptive names like “Accounting Software”, “POS System - Branch 1”, "
    "or “Reporting Script”."
)


def page(client) -> str:
    response = client.get(PAGE)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def create(client, name: str) -> str:
    response, plaintext = create_token_via_ui(client, name)
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse_token(plaintext).public_id


def section(body: str, heading_id: str) -> str:
    """The HTML of one <section> of the token lists, found by its heading id."""
    start = body.rindex("<section", 0, body.index(f'id="{heading_id}"'))
    return body[start : body.index("</section>", start)]


def cells(html: str, label: str) -> list[str]:
    """The inner HTML of every <td> with this data-label."""
    return re.findall(rf'<td[^>]*data-label="{label}"[^>]*>(.*?)</td>', html, re.S)


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def row_names(table_html: str) -> list[str]:
    return [text_of(cell) for cell in cells(table_html, "Name")]


def test_page_has_the_header_purpose_and_create_button(as_owner):
    body = page(as_owner)
    assert "<title>API Tokens · VasBox</title>" in body
    assert "<h1>API Tokens</h1>" in body
    assert (
        "Tokens let other software, such as accounting apps, POS devices and report scripts, "
        "reach VasBox on your behalf." in body
    )
    button = re.search(r'<a class="btn btn-primary"[^>]*id="create-token-button">([^<]*)</a>', body)
    assert button and button.group(1) == "Create Token"
    assert 'href="/admin/api-tokens/new"' in button.group(0)
    assert 'hx-get="/admin/api-tokens/new"' in button.group(0)
    assert 'hx-target="#dialog-host"' in button.group(0)
    assert '<div id="dialog-host"></div>' in body


def test_empty_state_explains_tokens_and_gives_the_naming_hint(as_owner):
    body = page(as_owner)
    active = section(body, "active-heading")
    assert "No active API tokens yet." in active
    assert "Create a token for each app that connects to VasBox" in active
    assert "so you can revoke one without stopping the others" in active
    assert NAMING_HINT in active
    assert "(0 of 50)" in active
    assert "<table" not in active
    assert 'id="revoked-heading"' not in body


def test_active_tokens_are_listed_newest_first(as_owner, clock):
    for name in ("Accounting Software", "POS System - Branch 1", "Reporting Script"):
        create(as_owner, name)
        clock.advance(minutes=3)
    active = section(page(as_owner), "active-heading")
    assert row_names(active) == ["Reporting Script", "POS System - Branch 1", "Accounting Software"]
    assert "No active API tokens yet." not in active
    assert "(3 of 50)" in active


def test_tokens_created_in_the_same_instant_list_the_later_one_first(as_owner):
    create(as_owner, "First")
    create(as_owner, "Second")
    assert row_names(section(page(as_owner), "active-heading")) == ["Second", "First"]


def test_table_has_the_expected_columns(as_owner):
    create(as_owner, "Accounting Software")
    active = section(page(as_owner), "active-heading")
    headers = re.findall(r'<th scope="col"[^>]*>(.*?)</th>', active)
    assert headers[:4] == ["Name", "Token", "Created", "Last used"]
    assert "Actions" in headers[4]


def test_row_shows_the_display_id_but_never_the_token(as_owner):
    public_id = create(as_owner, "Accounting Software")
    body = page(as_owner)
    assert f'<code class="token-id">vbx_{public_id}…</code>' in body
    assert re.findall(r"vbx_[a-z2-9]{8}…", body) == [f"vbx_{public_id}…"]
    assert find_tokens(body) == []


def test_row_shows_the_created_date_and_the_creator(as_owner):
    public_id = create(as_owner, "Accounting Software")
    row = re.search(rf'<tr id="token-{public_id}">.*?</tr>', page(as_owner), re.S).group(0)
    assert [text_of(cell) for cell in cells(row, "Created")] == ["3 Dec 2026 by Olivia Owner"]
    assert "Never used" in row
    assert f'href="/admin/api-tokens/{public_id}/revoke"' in row
    assert 'aria-label="Revoke Accounting Software"' in row


def test_created_date_is_the_date_in_the_business_timezone(client, people, clock):
    # 22:30 UTC on 3 December is 00:30 CAT on 4 December in Harare.
    clock.now = datetime(2026, 12, 3, 22, 30, tzinfo=UTC)
    login(client, people["owner"])
    create(client, "Late Night Import")
    assert [text_of(cell) for cell in cells(page(client), "Created")] == [
        "4 Dec 2026 by Olivia Owner"
    ]


def test_revoked_tokens_have_their_own_section_with_when_and_by_whom(as_owner, clock):
    kept = create(as_owner, "Accounting Software")
    gone = create(as_owner, "Old POS")
    clock.advance(minutes=10)
    assert as_owner.post(f"/admin/api-tokens/{gone}/revoke", headers=HX).status_code == 200
    clock.advance(minutes=5)
    body = page(as_owner)
    active = section(body, "active-heading")
    revoked = section(body, "revoked-heading")
    assert row_names(active) == ["Accounting Software"]
    assert f"vbx_{kept}…" in active and f"vbx_{gone}…" not in active
    assert '<h2 id="revoked-heading">Revoked tokens</h2>' in revoked
    assert "These no longer work." in revoked
    assert row_names(revoked) == ["Old POS"]
    assert f"vbx_{gone}…" in revoked
    [when] = cells(revoked, "Revoked")
    assert re.search(
        r'<time datetime="2026-12-03T10:10:00Z" '
        r'title="Thu 3 Dec 2026, 12:10:00 CAT \(UTC\+02:00\)"[^>]*>5 minutes ago</time>',
        when,
    )
    assert [text_of(cell) for cell in cells(revoked, "Revoked by")] == ["Olivia Owner"]
    assert ">Revoke</a>" not in revoked
    assert "(1 of 50)" in active


def test_revoked_tokens_list_the_most_recently_revoked_first(as_owner, clock):
    first = create(as_owner, "Revoked first")
    second = create(as_owner, "Revoked second")
    as_owner.post(f"/admin/api-tokens/{first}/revoke", headers=HX)
    clock.advance(minutes=1)
    as_owner.post(f"/admin/api-tokens/{second}/revoke", headers=HX)
    revoked = section(page(as_owner), "revoked-heading")
    assert row_names(revoked) == ["Revoked second", "Revoked first"]


def test_page_shows_only_the_signed_in_owners_business(app, client, people):
    login(client, people["other_owner"])
    create(client, "Other Business Till")
    client.post("/logout")
    login(client, people["owner"])
    body = page(client)
    assert "Other Business Till" not in body
    assert "No active API tokens yet." in body


def test_page_polls_the_times_endpoint_about_once_a_minute(as_owner):
    body = page(as_owner)
    poller = re.search(r'<div hx-get="/admin/api-tokens/times"[^>]*>', body).group(0)
    assert 'hx-trigger="every 60s"' in poller
    assert 'hx-swap="none"' in poller


def set_last_used(app, public_id: str, when: datetime) -> None:
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.public_id == public_id))
        token.last_used_at = when
        db.session.commit()


def test_times_endpoint_returns_out_of_band_time_updates_for_active_rows(app, as_owner, clock):
    used = create(as_owner, "Used yesterday")
    never = create(as_owner, "Never used yet")
    gone = create(as_owner, "Revoked")
    as_owner.post(f"/admin/api-tokens/{gone}/revoke", headers=HX)
    set_last_used(app, used, clock.now - timedelta(days=1))
    response = as_owner.get("/admin/api-tokens/times", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    oob_span = r'<span id="last-used-([a-z2-9]{8})" hx-swap-oob="innerHTML">(.*?)</span>\n'
    spans = dict(re.findall(oob_span, body))
    assert set(spans) == {used, never}
    assert re.fullmatch(
        r'<time datetime="2026-12-02T10:00:00Z" title="Wed 2 Dec 2026, 12:00:00 CAT '
        r'\(UTC\+02:00\)" data-exact="[^"]+" tabindex="0">Yesterday</time>',
        spans[used],
    )
    assert "Never used" in spans[never]
    # Only the <time> cells: no row, dialog or confirmation is touched.
    assert "<tr" not in body and "<dialog" not in body and "<html" not in body


def test_times_endpoint_without_htmx_sends_the_browser_to_the_page(as_owner):
    response = as_owner.get("/admin/api-tokens/times")
    assert response.status_code == 302
    assert response.headers["Location"] == PAGE


def test_times_endpoint_leaves_an_open_confirmation_alone(as_owner):
    public_id = create(as_owner, "Accounting Software")
    confirm = as_owner.get(f"/admin/api-tokens/{public_id}/revoke", headers=HX)
    assert "confirm-row" in confirm.get_data(as_text=True)
    times = as_owner.get("/admin/api-tokens/times", headers=HX).get_data(as_text=True)
    assert f'id="token-{public_id}"' not in times
    assert f'id="last-used-{public_id}"' in times


def test_row_fragment_without_htmx_sends_the_browser_to_the_page(as_owner):
    public_id = create(as_owner, "Accounting Software")
    response = as_owner.get(f"/admin/api-tokens/{public_id}/row")
    assert response.status_code == 302
    assert response.headers["Location"] == PAGE


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_page_is_never_shared_between_htmx_and_full_loads_in_a_cache(as_owner, htmx):
    response = as_owner.get(PAGE, headers=HX if htmx else {})
    assert "HX-Request" in response.headers["Vary"]
    assert (
        "no-store" in response.headers["Cache-Control"]
        or "private" in (response.headers["Cache-Control"])
    )


def test_service_lists_active_newest_first_and_revoked_apart(app, people, clock):
    with app.app_context():
        owner = db.session.get(User, people["owner"].id)
        a, _ = tokens.issue_token(owner, "A")
        clock.advance(minutes=1)
        b, _ = tokens.issue_token(owner, "B")
        clock.advance(minutes=1)
        tokens.revoke_token(owner, a.public_id)
        active, revoked = tokens.list_tokens(owner.business_id)
        assert [t.name for t in active] == ["B"]
        assert [t.name for t in revoked] == ["A"]
        assert revoked[0].revoked_by_id == owner.id
