"""Issue 3 in a real browser: create with a one-time reveal, the token table, inline revoke."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import find_tokens
from playwright.sync_api import expect
from sqlalchemy import func, select

from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, User
from vasbox_dash.tokens import issue_token

from .conftest import horizontal_overflow, invisible_focus, small_targets

SIZES = ["desktop", "phone"]
TOKEN_VALUE = re.compile(r"^vbx_[a-z2-9]{8}[0-9A-Za-z]{43}[0-9A-Za-z]{6}$")


def confirmation(name: str) -> str:
    return (
        f"Revoke “{name}”? Apps using this token will stop working immediately. "
        "This cannot be undone."
    )


def count_tokens(app, *, revoked: bool | None = None) -> int:
    """Tokens in the database: all, only active (revoked=False) or only revoked."""
    query = select(func.count(ApiToken.id))
    if revoked is True:
        query = query.where(ApiToken.revoked_at.is_not(None))
    elif revoked is False:
        query = query.where(ApiToken.revoked_at.is_(None))
    with app.app_context():
        return db.session.scalar(query)


def seed_token(app, persona, name: str, last_used: datetime | None = None) -> str:
    """Create a token straight through the service; returns its public id."""
    with app.app_context():
        token, _ = issue_token(db.session.get(User, persona.id), name)
        if last_used is not None:
            token.last_used_at = last_used
            db.session.commit()
        return token.public_id


def open_tokens_page(new_page, sign_in, people, size="desktop", **page_options):
    page = new_page(size, **page_options)
    sign_in(page, people["owner"])
    expect(page.get_by_role("heading", name="API Tokens", exact=True)).to_be_visible()
    return page


def create_button(page):
    return page.get_by_role("link", name="Create Token", exact=True)


def open_create_dialog(page):
    create_button(page).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Name")).to_be_focused()
    return dialog


def create_token(page, name: str) -> str:
    """Create a token through the dialog; returns the revealed secret (dialog left open)."""
    dialog = open_create_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_role("button", name="Create token", exact=True).click()
    expect(dialog.get_by_role("heading", name="Token Created Successfully")).to_be_visible()
    secret = dialog.get_by_label("Token", exact=True).input_value()
    assert TOKEN_VALUE.match(secret)
    return secret


def active_row(page, name: str):
    return page.locator("#active-tokens tbody tr", has_text=name)


def revoked_row(page, name: str):
    return page.locator("#revoked-tokens tbody tr", has_text=name)


def tooltip_clipping(locator) -> list[str]:
    """Where the element's ::after tooltip is cut off by the viewport or a clipping ancestor."""
    return locator.evaluate(
        """el => {
          const s = getComputedStyle(el, '::after');
          const r = el.getBoundingClientRect();
          const box = {left: r.left + parseFloat(s.left), top: r.top + parseFloat(s.top)};
          box.right = box.left + parseFloat(s.width);
          box.bottom = box.top + parseFloat(s.height);
          const problems = [];
          if (box.left < 0 || box.right > window.innerWidth) problems.push('viewport');
          for (let a = el.parentElement; a; a = a.parentElement) {
            const st = getComputedStyle(a);
            if (st.overflowX === 'visible' && st.overflowY === 'visible') continue;
            const ar = a.getBoundingClientRect();
            if (box.left < ar.left - 0.5 || box.right > ar.right + 0.5 ||
                box.top < ar.top - 0.5 || box.bottom > ar.bottom + 0.5) {
              problems.push(`clipped by <${a.tagName.toLowerCase()} class="${a.className}">`);
            }
          }
          return problems;
        }"""
    )


def focus_by_tabbing(page, locator, max_tabs: int = 40) -> None:
    """Press Tab until locator has focus (if it has not already), as a keyboard user would."""
    for _ in range(max_tabs):
        if locator.evaluate("el => el === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {locator}")


@pytest.mark.parametrize("size", SIZES)
def test_owner_creates_copies_and_closes_a_token_and_the_secret_leaves_the_page(
    new_page, sign_in, people, app, screenshot, size
):
    page = open_tokens_page(new_page, sign_in, people, size, clipboard=True)
    expect(page.get_by_text("No active API tokens yet.")).to_be_visible()
    screenshot(page, "tokens-empty")

    dialog = open_create_dialog(page)
    name_field = dialog.get_by_label("Name")
    expect(name_field).to_have_attribute("placeholder", "e.g., Accounting Integration")
    expect(dialog).to_contain_text(
        "Use descriptive names like “Accounting Software”, “POS System - Branch 1”, "
        "or “Reporting Script”."
    )
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    screenshot(page, "create-dialog", full_page=False)

    name_field.fill("Accounting Software")
    dialog.get_by_role("button", name="Create token", exact=True).click()

    expect(dialog.get_by_role("heading", name="Token Created Successfully")).to_be_visible()
    field = dialog.get_by_label("Token", exact=True)
    expect(field).to_have_attribute("readonly", "")
    secret = field.input_value()
    assert TOKEN_VALUE.match(secret)
    if size == "desktop":  # the whole token fits the field; phones scroll it
        assert field.evaluate("el => el.scrollWidth <= el.clientWidth")
    expect(dialog).to_contain_text("Copy this token now. You won't be able to see it again.")
    # Focus on Copy, not Done: a stray Enter must not throw away a secret shown only once.
    expect(dialog.get_by_role("button", name="Copy")).to_be_focused()
    expect(active_row(page, "Accounting Software")).to_be_visible()  # behind the dialog
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    screenshot(page, "reveal", full_page=False)

    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_role("status")).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == secret

    dialog.get_by_role("button", name="Done").click()

    expect(page.locator("dialog")).to_have_count(0)
    expect(create_button(page)).to_be_focused()
    expect(page.locator("#active-tokens tbody tr")).to_have_count(1)
    expect(active_row(page, "Accounting Software")).to_contain_text("Never used")
    expect(active_row(page, "Accounting Software")).to_contain_text("by Olivia Owner")
    content = page.content()
    assert secret not in content
    assert find_tokens(content) == []
    assert count_tokens(app) == 1
    screenshot(page, "tokens-one")


def test_escape_closes_the_create_dialog_and_returns_focus_to_create_token(
    new_page, sign_in, people, app
):
    page = open_tokens_page(new_page, sign_in, people)
    open_create_dialog(page).get_by_label("Name").fill("Never sent")

    page.keyboard.press("Escape")

    expect(page.locator("dialog")).to_have_count(0)
    expect(create_button(page)).to_be_focused()
    assert count_tokens(app) == 0


def test_escape_on_the_reveal_removes_the_secret_from_the_page(new_page, sign_in, people):
    page = open_tokens_page(new_page, sign_in, people)
    secret = create_token(page, "POS System - Branch 1")

    page.keyboard.press("Escape")

    expect(page.locator("dialog")).to_have_count(0)
    expect(active_row(page, "POS System - Branch 1")).to_be_visible()
    assert secret not in page.content()


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "Enter a name"),
        ("   ", "Enter a name"),
        ("Reporting Script", "already"),
        ("x" * 81, "80"),
    ],
    ids=["empty", "spaces", "duplicate", "too-long"],
)
def test_invalid_name_shows_the_error_inside_the_dialog_and_creates_nothing(
    new_page, sign_in, people, app, name, error
):
    seed_token(app, people["owner"], "Reporting Script")
    page = open_tokens_page(new_page, sign_in, people)
    dialog = open_create_dialog(page)

    dialog.get_by_label("Name").fill(name)
    dialog.get_by_role("button", name="Create token", exact=True).click()

    alert = dialog.locator(".field-errors")
    expect(alert).to_contain_text(re.compile(re.escape(error), re.IGNORECASE))
    expect(dialog.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    expect(dialog.get_by_label("Name")).to_be_focused()
    expect(page.get_by_role("dialog")).to_have_count(1)
    assert count_tokens(app) == 1
    expect(page.locator("#active-tokens tbody tr")).to_have_count(1)


@pytest.mark.parametrize("size", SIZES)
def test_fixing_an_invalid_name_in_the_dialog_then_creates_the_token(
    new_page, sign_in, people, app, screenshot, size
):
    page = open_tokens_page(new_page, sign_in, people, size)
    dialog = open_create_dialog(page)
    dialog.get_by_role("button", name="Create token", exact=True).click()
    expect(dialog.locator(".field-errors")).to_be_visible()
    assert small_targets(page) == []
    screenshot(page, "create-dialog-error", full_page=False)

    dialog.get_by_label("Name").fill("Reporting Script")
    dialog.get_by_role("button", name="Create token", exact=True).click()

    expect(dialog.get_by_role("heading", name="Token Created Successfully")).to_be_visible()
    assert count_tokens(app) == 1


def test_reload_after_the_reveal_shows_no_secret(new_page, sign_in, people):
    page = open_tokens_page(new_page, sign_in, people)
    secret = create_token(page, "Accounting Software")

    page.reload()

    expect(active_row(page, "Accounting Software")).to_be_visible()
    expect(page.locator("dialog")).to_have_count(0)
    assert secret not in page.content()
    assert find_tokens(page.content()) == []


def test_back_and_forward_after_the_reveal_show_no_secret(new_page, sign_in, people, live_server):
    page = open_tokens_page(new_page, sign_in, people)
    secret = create_token(page, "Accounting Software")

    page.goto(f"{live_server}/login")  # somewhere else, with the reveal still open
    page.go_back()
    expect(active_row(page, "Accounting Software")).to_be_visible()
    assert secret not in page.content()

    page.go_forward()
    page.go_back()
    expect(active_row(page, "Accounting Software")).to_be_visible()
    assert secret not in page.content()
    assert find_tokens(page.content()) == []


@pytest.mark.parametrize("size", SIZES)
def test_revoke_then_cancel_keeps_the_token(new_page, sign_in, people, app, screenshot, size):
    seed_token(app, people["owner"], "Accounting Software")
    page = open_tokens_page(new_page, sign_in, people, size)
    row = active_row(page, "Accounting Software")

    row.get_by_role("link", name="Revoke").click()

    expect(page.locator(".confirm-text")).to_have_text(confirmation("Accounting Software"))
    expect(page.get_by_role("button", name="Revoke token")).to_be_focused()
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    screenshot(page, "revoke-confirm")

    page.get_by_role("link", name="Cancel").click()

    expect(page.locator(".confirm-text")).to_have_count(0)
    expect(row.get_by_role("link", name="Revoke")).to_be_visible()
    expect(row.get_by_role("link", name="Revoke")).to_be_focused()
    assert count_tokens(app, revoked=False) == 1


@pytest.mark.parametrize("size", SIZES)
def test_revoke_confirmed_moves_the_token_to_the_revoked_section(
    new_page, sign_in, people, app, screenshot, size
):
    seed_token(app, people["owner"], "Accounting Software")
    seed_token(app, people["owner"], "Reporting Script")
    page = open_tokens_page(new_page, sign_in, people, size)

    active_row(page, "Accounting Software").get_by_role("link", name="Revoke").click()
    page.get_by_role("button", name="Revoke token").click()

    expect(revoked_row(page, "Accounting Software")).to_be_visible()
    expect(revoked_row(page, "Accounting Software")).to_contain_text("Olivia Owner")
    expect(active_row(page, "Accounting Software")).to_have_count(0)
    expect(active_row(page, "Reporting Script")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="was revoked")).to_be_visible()
    assert count_tokens(app, revoked=True) == 1
    assert count_tokens(app, revoked=False) == 1
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    screenshot(page, "revoked-section")


def test_owner_creates_and_revokes_a_token_with_the_keyboard_only(new_page, sign_in, people, app):
    page = open_tokens_page(new_page, sign_in, people, clipboard=True)

    focus_by_tabbing(page, create_button(page))
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Name")).to_be_focused()
    page.keyboard.type("Keyboard Integration")
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("heading", name="Token Created Successfully")).to_be_visible()
    secret = dialog.get_by_label("Token", exact=True).input_value()

    focus_by_tabbing(page, dialog.get_by_role("button", name="Copy"))
    page.keyboard.press("Space")
    expect(dialog.get_by_role("status")).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    focus_by_tabbing(page, dialog.get_by_role("button", name="Done"))
    page.keyboard.press("Enter")
    expect(page.locator("dialog")).to_have_count(0)
    expect(create_button(page)).to_be_focused()

    row = active_row(page, "Keyboard Integration")
    focus_by_tabbing(page, row.get_by_role("link", name="Revoke"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Revoke token")).to_be_focused()
    page.keyboard.press("Space")

    expect(revoked_row(page, "Keyboard Integration")).to_be_visible()
    assert count_tokens(app, revoked=True) == 1
    # The focused button went away with the row; focus lands on the list, not the page top.
    expect(page.get_by_role("heading", name=re.compile("^Active tokens"))).to_be_focused()
    assert secret not in page.content()


def test_double_clicking_create_token_on_a_slow_network_creates_exactly_one_token(
    new_page, sign_in, people, app
):
    page = open_tokens_page(new_page, sign_in, people)
    dialog = open_create_dialog(page)
    dialog.get_by_label("Name").fill("Accounting Software")
    cdp = page.context.new_cdp_session(page)
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 600, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    dialog.get_by_role("button", name="Create token", exact=True).dblclick()

    expect(dialog.get_by_role("heading", name="Token Created Successfully")).to_be_visible()
    expect(page.locator("#active-tokens tbody tr")).to_have_count(1)
    assert count_tokens(app) == 1


@pytest.mark.parametrize("size", SIZES)
def test_token_table_shows_every_column_and_fits_the_screen(
    new_page, sign_in, people, app, screenshot, size
):
    now = datetime.now(UTC)
    seed_token(app, people["owner"], "Accounting Software", last_used=now - timedelta(days=2))
    seed_token(app, people["owner"], "POS System - Branch 1", last_used=now)
    seed_token(app, people["owner"], "A very long integration name " * 2 + "for the head office")
    revoked = seed_token(app, people["owner"], "Old Reporting Script")
    with app.app_context():
        from vasbox_dash.tokens import revoke_token

        revoke_token(db.session.get(User, people["owner"].id), revoked)
    page = open_tokens_page(new_page, sign_in, people, size)

    rows = page.locator("#active-tokens tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("A very long integration name")  # newest first
    expect(active_row(page, "Accounting Software")).to_contain_text("2 days ago")
    expect(active_row(page, "POS System - Branch 1")).to_contain_text("Just now")
    expect(active_row(page, "Accounting Software").locator("code")).to_have_text(
        re.compile(r"^vbx_[a-z2-9]{8}…$")
    )
    expect(revoked_row(page, "Old Reporting Script")).to_be_visible()
    expect(page.locator("h2", has_text="Active tokens")).to_contain_text("3 of 50")
    screenshot(page, "tokens-many")

    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    if size == "phone":
        assert rows.first.evaluate("el => getComputedStyle(el).display") == "block"
        assert (
            page.locator("#active-tokens thead").evaluate("el => el.getBoundingClientRect().height")
            <= 1
        )


def test_keyboard_focus_is_visible_on_every_control_of_the_tokens_page(
    new_page, sign_in, people, app
):
    seed_token(app, people["owner"], "Accounting Software", datetime.now(UTC))
    page = open_tokens_page(new_page, sign_in, people)

    assert invisible_focus(page) == []
    create_button(page).click()
    expect(page.get_by_role("dialog")).to_be_visible()
    assert invisible_focus(page) == []


@pytest.mark.parametrize("size", SIZES)
def test_last_used_time_shows_the_exact_time_with_timezone_on_hover_focus_or_tap(
    new_page, sign_in, people, app, screenshot, size
):
    used = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    seed_token(app, people["owner"], "Accounting Software", last_used=used)
    page = open_tokens_page(new_page, sign_in, people, size)
    when = active_row(page, "Accounting Software").locator("time")
    local = used.astimezone(ZoneInfo("Africa/Harare"))
    exact = re.compile(
        rf"{local.day} {local:%b %Y}, {local:%H:%M:%S} CAT \(UTC\+02:00\)",
    )

    expect(when).to_have_text("2 days ago")
    expect(when).to_have_attribute("datetime", used.isoformat().replace("+00:00", "Z"))
    expect(when).to_have_attribute("title", exact)

    def tooltip() -> str:
        return when.evaluate("el => getComputedStyle(el, '::after').content")

    assert tooltip() in ("none", "normal", "")
    if size == "phone":
        when.tap()
    else:
        when.hover()
        assert exact.search(tooltip())
        page.mouse.move(0, 0)
        when.focus()
    assert exact.search(tooltip())
    assert horizontal_overflow(page) <= 0
    assert tooltip_clipping(when) == []  # fully on screen, not cut off by the table
    screenshot(page, "last-used-tooltip")


@pytest.mark.parametrize("size", SIZES)
def test_manager_sees_a_403_page_explaining_only_the_owner_manages_tokens(
    new_page, sign_in, people, live_server, screenshot, size
):
    page = new_page(size)
    sign_in(page, people["manager"])

    response = page.goto(f"{live_server}/admin/api-tokens")

    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You don’t have access to this page")
    expect(page.locator("main")).to_contain_text("Only the Business Owner can manage API tokens.")
    expect(page.get_by_role("link", name="Create Token")).to_have_count(0)
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    screenshot(page, "forbidden")


@pytest.mark.parametrize("size", SIZES)
def test_without_javascript_create_reveals_on_a_page_and_revoke_uses_a_confirmation_page(
    new_page, sign_in, people, app, screenshot, size
):
    page = open_tokens_page(new_page, sign_in, people, size, javascript=False)

    create_button(page).click()
    expect(page.get_by_role("heading", name="Create API token")).to_be_visible()
    page.get_by_label("Name").fill("Accounting Software")
    page.get_by_role("button", name="Create token", exact=True).click()

    expect(page.get_by_role("heading", name="Token Created Successfully")).to_be_visible()
    secret = page.get_by_label("Token", exact=True).input_value()
    assert TOKEN_VALUE.match(secret)
    expect(
        page.get_by_text("Copy this token now. You won't be able to see it again.")
    ).to_be_visible()
    expect(page.get_by_role("button", name="Copy")).to_be_hidden()  # it needs JavaScript
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    screenshot(page, "reveal-no-js")

    page.get_by_role("link", name="Done").click()
    expect(active_row(page, "Accounting Software")).to_be_visible()
    assert secret not in page.content()
    assert count_tokens(app) == 1

    active_row(page, "Accounting Software").get_by_role("link", name="Revoke").click()
    expect(page.get_by_role("heading", name="Revoke token")).to_be_visible()
    expect(page.locator(".confirm-text")).to_have_text(confirmation("Accounting Software"))
    screenshot(page, "revoke-page-no-js")
    page.get_by_role("button", name="Revoke token").click()

    expect(revoked_row(page, "Accounting Software")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="was revoked")).to_be_visible()
    assert count_tokens(app, revoked=True) == 1
    assert secret not in page.content()


def test_without_javascript_reloading_the_reveal_page_shows_no_secret_and_creates_nothing(
    new_page, sign_in, people, app
):
    page = open_tokens_page(new_page, sign_in, people, javascript=False)
    create_button(page).click()
    page.get_by_label("Name").fill("Accounting Software")
    page.get_by_role("button", name="Create token", exact=True).click()
    secret = page.get_by_label("Token", exact=True).input_value()

    page.reload()  # Chromium re-sends the POST; the form's one-time key is already used

    expect(page.get_by_role("heading", name="API Tokens", exact=True)).to_be_visible()
    expect(page.locator("#alerts")).to_contain_text("secret is shown only once")
    assert secret not in page.content()
    assert find_tokens(page.content()) == []
    assert count_tokens(app) == 1
