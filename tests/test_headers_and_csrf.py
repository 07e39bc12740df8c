"""Security headers, cookie flags and CSRF (issue 2)."""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD, login, make_config, reset_database

from vasbox_dash import create_app
from vasbox_dash.extensions import db


def assert_security_headers(response):
    csp = response.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


@pytest.mark.parametrize(
    "path, status",
    [("/login", 200), ("/healthz", 200), ("/no-such-page", 404), ("/admin/api-tokens", 302)],
)
def test_security_headers_are_on_pages_redirects_and_errors(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert_security_headers(response)


def test_security_headers_are_on_403_and_405_and_api_errors(client, people):
    login(client, people["cashier"])
    forbidden = client.get("/admin/api-tokens")
    assert forbidden.status_code == 403
    assert_security_headers(forbidden)
    assert "Only the Business Owner can manage API tokens" in forbidden.get_data(as_text=True)
    assert_security_headers(client.get("/logout"))
    api_missing = client.get("/api/v1/no-such-thing")
    assert api_missing.status_code == 404
    assert api_missing.mimetype == "application/problem+json"
    assert_security_headers(api_missing)


def test_internal_errors_render_the_500_page_without_a_traceback(app, client):
    @app.get("/boom-for-test")
    def boom():
        raise RuntimeError("secret internals vbx_should_not_leak")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/boom-for-test")
    text = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong" in text
    assert "Traceback" not in text and "secret internals" not in text
    assert_security_headers(response)


def test_no_hsts_and_no_secure_cookie_outside_production(client, people):
    response = login(client, people["owner"])
    assert "Strict-Transport-Security" not in response.headers
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


@pytest.fixture
def production_app(database_url, monkeypatch):
    monkeypatch.setenv("VASBOX_SECRET_KEY", "s" * 48)
    monkeypatch.setenv("VASBOX_TOKEN_PEPPER", "p" * 48)
    config = make_config(database_url, VASBOX_ENV="production")
    del config["SECRET_KEY"], config["TOKEN_PEPPER"]
    app = create_app(config)
    with app.app_context():
        reset_database()
    yield app
    with app.app_context():
        db.engine.dispose()


def test_production_sets_secure_httponly_lax_cookies_and_hsts(production_app):
    from vasbox_dash.accounts import create_business, create_user

    with production_app.app_context():
        business = create_business("Prod Co")
        create_user(
            business=business, email="o@prod.example", name="O", role="owner", password=PASSWORD
        )
    client = production_app.test_client()
    response = client.post(
        "/login",
        data={"email": "o@prod.example", "password": PASSWORD},
        base_url="https://localhost",
    )
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    error = client.get("/missing", base_url="https://localhost")
    assert "Strict-Transport-Security" in error.headers


@pytest.fixture
def csrf_app(database_url, clock):
    app = create_app(make_config(database_url, CLOCK=clock, WTF_CSRF_ENABLED=True))
    with app.app_context():
        reset_database()
    yield app
    with app.app_context():
        db.engine.dispose()


def csrf_token_from(response) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', response.get_data(True))
    match = match or re.search(r'"X-CSRFToken": "([^"]+)"', response.get_data(True))
    assert match, "page has no CSRF token"
    return match.group(1)


def add_owner(app) -> None:
    """Create a business with the owner o@c.example."""
    from vasbox_dash.accounts import create_business, create_user

    with app.app_context():
        create_user(
            business=create_business("C"),
            email="o@c.example",
            name="O",
            role="owner",
            password=PASSWORD,
        )


def test_login_form_requires_a_csrf_token(csrf_app):
    add_owner(csrf_app)
    client = csrf_app.test_client()
    refused = client.post("/login", data={"email": "o@c.example", "password": PASSWORD})
    assert refused.status_code == 400
    assert "Reload the page and try again" in refused.get_data(as_text=True)
    token = csrf_token_from(client.get("/login"))
    accepted = client.post(
        "/login", data={"email": "o@c.example", "password": PASSWORD, "csrf_token": token}
    )
    assert accepted.status_code == 303


def test_logout_requires_a_csrf_token_and_a_stale_one_gets_a_clear_message(csrf_app):
    add_owner(csrf_app)
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/login"))
    client.post("/login", data={"email": "o@c.example", "password": PASSWORD, "csrf_token": token})
    page = client.get("/admin/api-tokens")
    assert page.status_code == 200
    refused = client.post("/logout", data={"csrf_token": "stale"})
    assert refused.status_code == 400
    assert "This form has expired" in refused.get_data(as_text=True)
    assert client.get("/admin/api-tokens").status_code == 200  # still signed in
    htmx_refused = client.post("/logout", headers={"HX-Request": "true"})
    assert htmx_refused.status_code == 400
    assert htmx_refused.headers["HX-Retarget"] == "#alerts"
    ok = client.post("/logout", data={"csrf_token": csrf_token_from(page)})
    assert ok.status_code == 303


def test_every_post_route_is_csrf_protected(csrf_app):
    """Walk the URL map: every POST outside the bearer-token API refuses a missing token."""
    client = csrf_app.test_client()
    checked = 0
    for rule in csrf_app.url_map.iter_rules():
        if "POST" not in rule.methods or rule.rule.startswith("/api/"):
            continue
        url = re.sub(r"<int:[^>]+>", "1", rule.rule)
        url = re.sub(r"<[^>]+>", "abcdefgh", url)
        response = client.post(url, data={})
        assert response.status_code == 400, rule.rule
        assert "expired" in response.get_data(as_text=True), rule.rule
        checked += 1
    assert checked >= 4
