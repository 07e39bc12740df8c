"""Browser fixtures: a live server in a thread, one Chromium per session, a page per test.

The live app is the suite's ordinary `app` (fresh database, personas from `people`) with
CSRF switched on, because the real flows in a real browser must pass it. It runs on the
real clock, so the page reads like it would for a person.

Fixtures other browser modules can use:
- live_server: the base URL, e.g. "http://127.0.0.1:53211" (no trailing slash);
- browser: the session's Chromium;
- new_page(size="desktop" | "phone", javascript=True, clipboard=False): a page in a fresh
  context, 1280x800 or 390x844 (the phone one with touch and mobile emulation);
- sign_in(page, persona, password=None): signs in through the real form;
- screenshot(page, name, full_page=True): a PNG under the screenshots folder, suffixed by size.
Every page fails its test on an uncaught JavaScript error or a CSP violation.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from conftest import make_config
from werkzeug.serving import make_server

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_executable() -> str | None:
    """Debian's Chromium (or VASBOX_TEST_CHROMIUM); Playwright never downloads a browser."""
    configured = os.environ.get("VASBOX_TEST_CHROMIUM")
    if configured:
        return configured
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot_dir() -> Path:
    """$VASBOX_TEST_ARTIFACTS/screenshots, else artifacts/screenshots (gitignored)."""
    base = os.environ.get("VASBOX_TEST_ARTIFACTS")
    root = Path(base) if base else REPO_ROOT / "artifacts"
    path = root / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session."""
    executable = chromium_executable()
    if not executable:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def app_config(database_url) -> dict:
    """The live app: CSRF on, the real clock, quiet request logs."""
    return make_config(database_url, WTF_CSRF_ENABLED=True)


@pytest.fixture
def live_server(app, people):
    """Serve the test app on 127.0.0.1 at a random port; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class PageProblems:
    """Uncaught errors and CSP violations seen by a page; any one fails the test."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def on_page_error(self, error) -> None:
        self.messages.append(f"uncaught error: {error}")

    def on_console(self, message) -> None:
        text = message.text
        if message.type == "error" and "Content Security Policy" in text:
            self.messages.append(f"CSP violation: {text}")


@pytest.fixture
def new_page(browser, live_server):
    """Factory: new_page(size, javascript=True, clipboard=False) -> a page in a new context."""
    contexts = []
    problems = PageProblems()

    def make(size: str = "desktop", *, javascript: bool = True, clipboard: bool = False):
        context = browser.new_context(
            base_url=live_server,
            java_script_enabled=javascript,
            locale="en-GB",
            timezone_id="Africa/Harare",
            **SIZES[size],
        )
        if clipboard:
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", problems.on_page_error)
        page.on("console", problems.on_console)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not problems.messages, "\n".join(problems.messages)


@pytest.fixture
def sign_in(live_server):
    """sign_in(page, persona, password=None): sign in through the form; returns the page."""
    from playwright.sync_api import expect

    def do(page, persona, password: str | None = None, expect_success: bool = True):
        page.goto(f"{live_server}/login")
        page.get_by_label("Email").fill(persona.email)
        page.get_by_label("Password").fill(password or persona.password)
        page.get_by_role("button", name="Sign in").click()
        if expect_success:
            expect(page).not_to_have_url(re.compile(r"/login"))
        # Wait for the deferred scripts: a click before htmx has wired the page would
        # (correctly, but not what the test means) follow the plain link instead.
        page.wait_for_load_state("load")
        return page

    return do


def page_size(page) -> str:
    """Return "phone" or "desktop", from the page's viewport."""
    return "phone" if page.viewport_size["width"] < 600 else "desktop"


@pytest.fixture
def screenshot():
    """screenshot(page, name, full_page=True): save NAME-desktop.png or NAME-phone.png.

    Pass full_page=False for an open modal: its backdrop covers only the viewport, so a
    full-page picture would show the page below the fold as if no dialog were open.
    """
    folder = screenshot_dir()

    def take(page, name: str, full_page: bool = True) -> Path:
        path = folder / f"{name}-{page_size(page)}.png"
        page.screenshot(path=str(path), full_page=full_page, animations="disabled", caret="initial")
        return path

    return take


INTERACTIVE = (
    'a[href], button, input:not([type="hidden"]), select, textarea, summary, '
    '[tabindex]:not([tabindex="-1"])'
)
# Link-like and button-like targets must also be 44px wide; fields and text only tall.
WIDE_TARGETS = 'a[href], button, summary, input[type="submit"], input[type="button"]'

# Pasted into page scripts (the page's CSP forbids eval, so no passing functions as text).
_DESCRIBE_JS = """
const describe = el => {
  const text = (el.getAttribute('aria-label') || el.textContent || el.value || '').trim();
  const id = el.id ? '#' + el.id : '';
  return `<${el.tagName.toLowerCase()}${id}> "${text.replace(/\\s+/g, ' ').slice(0, 40)}"`;
};
"""


def horizontal_overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 means no sideways scroll)."""
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"
    )


def small_targets(page, minimum: float = 44) -> list[str]:
    """Visible interactive elements smaller than minimum px (height; width too for targets)."""
    return page.evaluate(
        "([selector, wide, minimum]) => {"
        + _DESCRIBE_JS
        + """
          const problems = [];
          for (const el of document.querySelectorAll(selector)) {
            if (!el.checkVisibility({visibilityProperty: true})) continue;
            const r = el.getBoundingClientRect();
            if (r.width === 0 || r.height === 0) continue;
            if (r.right <= 0 || r.bottom + window.scrollY <= 0) continue;  // parked off-screen
            const short = r.height < minimum - 0.5;
            const narrow = el.matches(wide) && r.width < minimum - 0.5;
            if (short || narrow) {
              problems.push(`${describe(el)} is ${Math.round(r.width)}x${Math.round(r.height)}`);
            }
          }
          return problems;
        }""",
        [INTERACTIVE, WIDE_TARGETS, minimum],
    )


def invisible_focus(page, max_tabs: int = 40) -> list[str]:
    """Tab round the page once; list focused elements that show no outline or box-shadow."""
    problems, seen = [], []
    for _ in range(max_tabs):
        page.keyboard.press("Tab")
        info = page.evaluate(
            "() => {"
            + _DESCRIBE_JS
            + """
              const el = document.activeElement;
              if (!el || el === document.body) return null;
              const s = getComputedStyle(el);
              const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
              const shadow = s.boxShadow && s.boxShadow !== 'none';
              return {name: describe(el), visible: outline || shadow,
                      key: el.outerHTML.slice(0, 200)};
            }"""
        )
        if info is None:
            continue  # focus left the document (past the last element); Tab brings it back
        if seen and info["key"] == seen[0]:
            break
        seen.append(info["key"])
        if not info["visible"]:
            problems.append(info["name"])
    assert seen, "Tab never reached an element"
    return problems
