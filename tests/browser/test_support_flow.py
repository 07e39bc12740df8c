"""Issue 5 in a real browser, desktop and phone: owner-granted support access from grant to
cut-off, and the owner's token activity and audit log pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, TokenUsage, User
from vasbox_dash.tokens import issue_token

from .conftest import horizontal_overflow, small_targets

SIZES = ["desktop", "phone"]
TOKEN_NAMES = ["Accounting Software", "POS System - Branch 1"]


def seed_tokens(app, persona) -> dict[str, str]:
    """Create the Acme tokens through the service; returns {name: display id}."""
    made = {}
    with app.app_context():
        owner = db.session.get(User, persona.id)
        for name in TOKEN_NAMES:
            token, _plaintext = issue_token(owner, name)
            made[name] = token.display_id
    return made


def seed_usage(app, public_id: str) -> None:
    """Some API traffic for one token: 25 requests and two refused attempts, just now."""
    now = datetime.now(UTC)
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.public_id == public_id))
        for minute in range(25):
            db.session.add(
                TokenUsage(
                    token_id=token.id,
                    business_id=token.business_id,
                    public_id=public_id,
                    created_at=now - timedelta(minutes=minute, seconds=30),
                    method="POST" if minute % 3 == 0 else "GET",
                    route="/api/v1/receipts" if minute % 3 == 0 else "/api/v1/reports/daily-sales",
                    status=201 if minute % 3 == 0 else 200,
                    outcome="ok",
                    ip="203.0.113.7",
                    user_agent="AcmeBooks/2.1 (Windows NT 10.0; Win64; x64) sync-agent/5.12.0",
                    duration_ms=20,
                )
            )
        for minutes in (5, 12):
            db.session.add(
                TokenUsage(
                    token_id=token.id,
                    business_id=token.business_id,
                    public_id=public_id,
                    created_at=now - timedelta(minutes=minutes),
                    method="GET",
                    route="/api/v1/receipts",
                    status=401,
                    outcome="wrong_secret",
                    ip="198.51.100.66",
                    user_agent="curl/8.5.0",
                    duration_ms=3,
                )
            )
        token.last_used_at = now - timedelta(seconds=30)
        token.last_used_ip = "203.0.113.7"
        token.last_used_user_agent = "AcmeBooks/2.1 (Windows NT 10.0; Win64; x64) sync-agent/5.12.0"
        db.session.commit()


def assert_fits(page) -> None:
    """No sideways scrolling and 44px targets, measured once the stylesheet has loaded."""
    page.wait_for_load_state("load")
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []


def token_rows(page) -> list[tuple[str, str]]:
    """(name, identifier) for every active token row on the page."""
    rows = page.locator("#active-tokens tbody tr")
    return [
        (
            rows.nth(i).locator("td.col-name").inner_text().strip(),
            rows.nth(i).locator("code.token-id").inner_text().strip(),
        )
        for i in range(rows.count())
    ]


@pytest.mark.parametrize("size", SIZES)
def test_owner_grants_access_agent_sees_the_same_tokens_and_ending_it_cuts_the_agent_off(
    app, new_page, sign_in, people, live_server, screenshot, size
):
    made = seed_tokens(app, people["owner"])

    # 1. The owner allows support access and gets a code to read aloud.
    owner = new_page(size)
    sign_in(owner, people["owner"])
    expect(owner.get_by_role("heading", name="API Tokens", exact=True)).to_be_visible()
    owner_rows = token_rows(owner)
    assert sorted(owner_rows) == sorted(made.items())
    owner.get_by_role("button", name="Allow support access").click()
    code_box = owner.locator("#support-code")
    expect(code_box).to_have_text(re.compile(r"^[A-Z2-9]{4}-[A-Z2-9]{4}$"))
    code = code_box.inner_text()
    expect(owner.get_by_role("button", name="End access")).to_be_visible()
    screenshot(owner, "support-owner-code")
    assert_fits(owner)

    # 2. The agent finds the business, enters the code and sees the same tokens, read-only.
    agent = new_page(size)
    sign_in(agent, people["support"])
    expect(agent).to_have_url(f"{live_server}/support/")
    agent.get_by_label("Business name or id").fill("acme")
    agent.get_by_role("button", name="Find").click()
    expect(agent.get_by_text("Acme Stores", exact=True)).to_be_visible()
    screenshot(agent, "support-console-search")
    assert_fits(agent)
    agent.get_by_label("Code from the owner").fill(code.lower().replace("-", " "))
    agent.get_by_role("button", name="Open read-only view").click()
    expect(agent.get_by_role("heading", name="API Tokens · Acme Stores")).to_be_visible()
    expect(agent.locator(".banner-support")).to_contain_text("Read-only view of Acme Stores")
    assert token_rows(agent) == owner_rows
    expect(agent.get_by_role("link", name="Revoke")).to_have_count(0)
    expect(agent.get_by_role("button", name="Revoke token")).to_have_count(0)
    expect(agent.get_by_role("link", name="Create Token")).to_have_count(0)
    assert "vbx_" not in re.sub(r"vbx_[a-z2-9]{8}…", "", agent.content())
    screenshot(agent, "support-agent-tokens")
    assert_fits(agent)

    # The agent opens one token's activity: the same identifier and exact times, no rename.
    agent.get_by_role("link", name="Accounting Software", exact=True).click()
    expect(agent.get_by_role("heading", name="Accounting Software", level=1)).to_be_visible()
    expect(agent.locator("#token-facts")).to_contain_text(made["Accounting Software"])
    expect(agent.locator("#token-created")).to_contain_text(re.compile(r"\d\d:\d\d:\d\d CAT"))
    expect(agent.get_by_role("link", name=re.compile("Rename"))).to_have_count(0)
    screenshot(agent, "support-agent-token")
    assert_fits(agent)
    detail_url = agent.url

    # The owner sees who is looking, then ends access.
    owner.reload()
    expect(owner.locator("#support-access")).to_contain_text("Viewing now: Sam Support.")
    owner.get_by_role("button", name="End access").click()
    expect(owner.locator("#alerts")).to_contain_text("Support access ended.")
    expect(owner.get_by_role("button", name="Allow support access")).to_be_visible()
    expect(owner.locator("#support-code")).to_have_count(0)
    screenshot(owner, "support-owner-ended")

    # 3. The agent's very next request is refused.
    response = agent.goto(detail_url)
    assert response.status == 403
    expect(agent.get_by_role("heading", name="You don’t have access to this page")).to_be_visible()
    expect(agent.locator("main")).not_to_contain_text("Accounting Software")
    screenshot(agent, "support-agent-refused")
    assert_fits(agent)

    # The owner's audit log names the agent for each view.
    owner.get_by_role("link", name="Audit log").click()
    expect(owner.get_by_role("heading", name="Audit log", level=1)).to_be_visible()
    # The filter submits itself through htmx, so wait until the new page's scripts ran.
    owner.wait_for_load_state("load")
    owner.get_by_label("Kind of event").select_option("support")
    expect(owner.locator("#results-heading")).to_contain_text("matching the filters")
    expect(owner.locator("#audit-table")).to_contain_text("Sam Support (VasBox support)")
    expect(owner.locator("#audit-table")).to_contain_text("Viewed the list of API tokens.")
    expect(owner).to_have_url(re.compile(r"kind=support"))


@pytest.mark.parametrize("size", SIZES)
def test_owner_reads_a_tokens_activity_renames_it_inline_and_browses_the_audit_log(
    app, new_page, sign_in, people, live_server, screenshot, size
):
    made = seed_tokens(app, people["owner"])
    public_id = made["Accounting Software"][4:12]
    seed_usage(app, public_id)

    page = new_page(size)
    sign_in(page, people["owner"])
    page.get_by_role("link", name="Accounting Software", exact=True).click()
    expect(page).to_have_url(f"{live_server}/admin/api-tokens/{public_id}")
    expect(page.locator("#token-last-used")).to_contain_text("Just now")
    expect(page.locator("#token-last-used")).to_contain_text("203.0.113.7")
    expect(page.locator("#count-24h strong")).to_have_text("25")
    expect(page.locator("#failed-attempts")).to_contain_text(
        "Someone tried to use this token’s identifier with a wrong secret twice, "
        "most recently 5 minutes ago."
    )
    expect(page.locator("#requests-table tbody tr")).to_have_count(20)
    screenshot(page, "activity-token")
    assert_fits(page)

    # Paging swaps only the requests section and keeps the address in step.
    page.get_by_role("link", name="Older →").click()
    expect(page.locator("#requests-table tbody tr")).to_have_count(7)  # 25 requests + 2 refused
    expect(page).to_have_url(re.compile(r"\?page=2$"))
    expect(page.locator("#count-24h strong")).to_have_text("25")

    # Inline rename: the heading turns into a form and back.
    page.get_by_role("link", name="Rename Accounting Software").click()
    field = page.get_by_label("Token name")
    expect(field).to_be_focused()
    field.fill("POS System - Branch 1")
    page.get_by_role("button", name="Save name").click()
    expect(page.locator("#token-name-errors")).to_contain_text("already named")
    screenshot(page, "activity-rename-error")
    assert_fits(page)
    page.get_by_label("Token name").fill("Xero Books")
    page.get_by_role("button", name="Save name").click()
    expect(page.get_by_role("heading", name="Xero Books", level=1)).to_be_visible()
    expect(page.locator("#alerts")).to_contain_text("Renamed to “Xero Books”.")

    # The audit log, filtered to this token, tells the story; the CSV link keeps the filter.
    page.get_by_role("link", name="Audit log", exact=True).click()
    expect(page.get_by_role("heading", name="Audit log", level=1)).to_be_visible()
    page.wait_for_load_state("load")
    screenshot(page, "audit-log")
    assert_fits(page)
    page.get_by_label("Token", exact=True).select_option(public_id)
    expect(page.locator("#audit-table tbody tr")).to_have_count(2)
    expect(page.locator("#audit-table")).to_contain_text(
        "from “Accounting Software” to “Xero Books”."
    )
    expect(page.get_by_role("link", name="Download CSV")).to_have_attribute(
        "href", f"/admin/audit-log.csv?token={public_id}"
    )
    screenshot(page, "audit-log-filtered")
    assert_fits(page)
