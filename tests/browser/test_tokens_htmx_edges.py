"""The htmx wiring around the edges: background time refreshes and an expired session."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from playwright.sync_api import expect

from vasbox_dash.accounts import end_sessions
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken
from vasbox_dash.tokens import get_token

from .test_tokens_page import active_row, open_create_dialog, open_tokens_page, seed_token

# The page polls this every 60 s; the tests fire the same request at once instead of waiting.
REFRESH_TIMES = """() => {
  const poller = document.querySelector('[hx-trigger="every 60s"]');
  return htmx.ajax('GET', poller.getAttribute('hx-get'), {source: poller, swap: 'none'});
}"""

COUNT_OOB_MISSES = """() => {
  window.oobMisses = 0;
  document.body.addEventListener('htmx:oobErrorNoTarget', () => { window.oobMisses += 1; });
}"""


def mark_used_now(app, business_id: int, public_id: str) -> None:
    with app.app_context():
        token = get_token(business_id, public_id)
        db.session.get(ApiToken, token.id).last_used_at = datetime.now(UTC)
        db.session.commit()


def test_refreshing_last_used_times_leaves_an_open_confirmation_alone(
    new_page, sign_in, people, app
):
    owner = people["owner"]
    seed_token(app, owner, "Accounting Software")
    used = seed_token(app, owner, "POS System - Branch 1")
    page = open_tokens_page(new_page, sign_in, people)
    active_row(page, "Accounting Software").get_by_role("link", name="Revoke").click()
    confirm = page.get_by_role("button", name="Revoke token")
    expect(confirm).to_be_focused()
    mark_used_now(app, owner.business_id, used)
    page.evaluate(COUNT_OOB_MISSES)

    page.evaluate(REFRESH_TIMES)

    expect(active_row(page, "POS System - Branch 1")).to_contain_text("Just now")
    expect(page.locator(".confirm-text")).to_contain_text("Revoke “Accounting Software”?")
    expect(confirm).to_be_focused()
    # The confirming row keeps a hidden target, so htmx finds every update a home.
    assert page.evaluate("() => window.oobMisses") == 0


def test_refreshing_last_used_times_leaves_an_open_create_dialog_alone(
    new_page, sign_in, people, app
):
    owner = people["owner"]
    used = seed_token(app, owner, "POS System - Branch 1")
    page = open_tokens_page(new_page, sign_in, people)
    name = open_create_dialog(page).get_by_label("Name")
    name.fill("Half-typed na")
    mark_used_now(app, owner.business_id, used)

    page.evaluate(REFRESH_TIMES)

    expect(active_row(page, "POS System - Branch 1")).to_contain_text("Just now")
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(name).to_have_value("Half-typed na")
    expect(name).to_be_focused()


def test_an_expired_session_sends_an_htmx_click_to_sign_in_instead_of_swapping_a_row(
    new_page, sign_in, people, app, live_server
):
    owner = people["owner"]
    seed_token(app, owner, "Accounting Software")
    page = open_tokens_page(new_page, sign_in, people)
    with app.app_context():
        end_sessions(owner.id, "test")
        db.session.commit()

    active_row(page, "Accounting Software").get_by_role("link", name="Revoke").click()

    expect(page).to_have_url(re.compile(r"/login\?next=%2Fadmin%2Fapi-tokens|/login\?next=/admin"))
    expect(page.get_by_role("heading", name="Sign in to VasBox Dash")).to_be_visible()
    expect(page.locator("#alerts")).to_contain_text(re.compile(r"sign in", re.IGNORECASE))
    expect(page.locator("table")).to_have_count(0)

    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(owner.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/admin/api-tokens")
    expect(active_row(page, "Accounting Software")).to_be_visible()
