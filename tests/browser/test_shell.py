"""Issue 2 in a real browser: the sign-in page and the signed-in shell, desktop and phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import horizontal_overflow, invisible_focus, small_targets

SIZES = ["desktop", "phone"]


@pytest.mark.parametrize("size", SIZES)
def test_sign_in_page_fits_the_screen_with_large_targets_and_visible_focus(
    new_page, live_server, screenshot, size
):
    page = new_page(size)
    page.goto(f"{live_server}/login")
    expect(page.get_by_role("heading", name="Sign in to VasBox Dash")).to_be_visible()
    expect(page.get_by_label("Email")).to_be_focused()
    screenshot(page, "sign-in")

    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    assert invisible_focus(page) == []


@pytest.mark.parametrize("size", SIZES)
def test_owner_signs_in_and_lands_on_api_tokens_in_a_shell_that_fits(
    new_page, sign_in, people, live_server, screenshot, size
):
    page = new_page(size)
    sign_in(page, people["owner"])

    expect(page).to_have_url(f"{live_server}/admin/api-tokens")
    expect(page.get_by_role("heading", name="API Tokens", exact=True)).to_be_visible()
    header = page.locator(".site-header")
    expect(header).to_contain_text("Olivia Owner")
    expect(header).to_contain_text("Acme Stores")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_contain_text("Admin")
    expect(nav.get_by_role("link", name="API Tokens")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    screenshot(page, "shell-owner")

    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    assert invisible_focus(page) == []


@pytest.mark.parametrize("role", ["manager", "cashier", "support"])
def test_admin_api_tokens_link_is_shown_only_to_owners(new_page, sign_in, people, screenshot, role):
    page = new_page("desktop")
    sign_in(page, people[role])

    nav = page.locator(".site-header")
    expect(nav.get_by_role("link", name="API Tokens")).to_have_count(0)
    expect(nav).not_to_contain_text("Admin")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    if role == "manager":
        screenshot(page, "shell-manager")


@pytest.mark.parametrize("size", SIZES)
def test_shell_for_a_signed_in_manager_fits_the_phone_and_desktop(new_page, sign_in, people, size):
    page = new_page(size)
    sign_in(page, people["manager"])

    expect(page.get_by_role("heading", name=re.compile("Welcome"))).to_be_visible()
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
    assert invisible_focus(page) == []


def test_sign_out_ends_the_session_and_protected_pages_ask_to_sign_in_again(
    new_page, sign_in, people, live_server
):
    page = new_page("desktop")
    sign_in(page, people["owner"])

    with page.expect_request(re.compile(r"/logout$")) as sign_out:
        page.get_by_role("button", name="Sign out").click()

    assert sign_out.value.method == "POST"

    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.goto(f"{live_server}/admin/api-tokens")
    expect(page).to_have_url(re.compile(r"/login\?next=/admin/api-tokens"))
    expect(page.get_by_role("heading", name="Sign in to VasBox Dash")).to_be_visible()


@pytest.mark.parametrize("size", SIZES)
def test_wrong_password_shows_the_generic_error_and_keeps_the_email(
    new_page, sign_in, people, screenshot, size
):
    page = new_page(size)
    sign_in(page, people["owner"], password="not the password at all", expect_success=False)

    expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")
    expect(page.get_by_label("Email")).to_have_value(people["owner"].email)
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.get_by_label("Password")).to_be_focused()
    screenshot(page, "sign-in-error")
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []


def test_unknown_email_gets_the_same_generic_error(new_page, sign_in, people):
    page = new_page("desktop")
    ghost = people["owner"].__class__(0, "nobody@acme.example", "Nobody", "owner", None)
    sign_in(page, ghost, expect_success=False)

    expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")


def test_owner_can_sign_in_with_the_keyboard_only(new_page, people, live_server):
    page = new_page("desktop")
    page.goto(f"{live_server}/login")
    expect(page.get_by_label("Email")).to_be_focused()

    page.keyboard.type(people["owner"].email)
    page.keyboard.press("Tab")
    page.keyboard.type(people["owner"].password)
    page.keyboard.press("Enter")

    expect(page).to_have_url(f"{live_server}/admin/api-tokens")


@pytest.mark.parametrize("size", SIZES)
def test_demo_owner_printed_by_the_demo_command_signs_in_and_sees_the_sample_tokens(
    new_page, app, live_server, screenshot, size
):
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    email, password = re.search(r"owner\s+(\S+@\S+)\s+(\S+)", result.output).groups()
    page = new_page(size)
    page.goto(f"{live_server}/login")

    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{live_server}/admin/api-tokens")
    rows = page.locator("#active-tokens tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#active-tokens")).to_contain_text("Accounting Software")
    expect(page.locator("#active-tokens time")).to_have_count(1)
    screenshot(page, "demo-tokens")
    assert horizontal_overflow(page) <= 0
    assert small_targets(page) == []
