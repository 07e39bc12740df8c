"""CSRF protection on every POST of the API Tokens page, in an app with CSRF switched on."""

from __future__ import annotations

import re
import uuid

import pytest
from conftest import find_tokens, make_config
from sqlalchemy import func, select

from vasbox_dash import tokens
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, AuditEvent, User

HX = {"HX-Request": "true"}
RELOAD_MESSAGE = (
    "This form has expired or was sent from another page. "
    "Reload the page and try again; nothing was changed."
)


@pytest.fixture
def app_config(database_url, clock) -> dict:
    return make_config(database_url, CLOCK=clock, WTF_CSRF_ENABLED=True)


def form_csrf(body: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', body) or re.search(
        r'name="csrf_token" value="([^"]+)"', body
    )
    assert match, "the form carries a CSRF token"
    return match.group(1)


def header_csrf(body: str) -> str:
    match = re.search(r"hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'", body)
    assert match, "<body> carries the CSRF token for htmx requests"
    return match.group(1)


def sign_in(client, persona) -> None:
    """Sign in through the real form, CSRF token included."""
    token = form_csrf(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login",
        data={"email": persona.email, "password": persona.password, "csrf_token": token},
    )
    assert response.status_code == 303


@pytest.fixture
def owner_client(client, people):
    sign_in(client, people["owner"])
    return client


@pytest.fixture
def acme_token(app, people) -> str:
    with app.app_context():
        owner = db.session.get(User, people["owner"].id)
        token, _ = tokens.issue_token(owner, "Accounting Software")
        return token.public_id


def state(app) -> tuple:
    """Token count, revocations and audit rows: everything a POST here could change."""
    with app.app_context():
        return (
            db.session.scalar(select(func.count()).select_from(ApiToken)),
            db.session.scalars(select(ApiToken.revoked_at).order_by(ApiToken.id)).all(),
            db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action.like("token.%"))
            ),
        )


POSTS = {
    "create": lambda public_id: "/admin/api-tokens",
    "revoke": lambda public_id: f"/admin/api-tokens/{public_id}/revoke",
}


def post_data() -> dict:
    return {"name": "Reporting Script", "creation_key": uuid.uuid4().hex}


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize(
    "bad_token",
    [None, "", "not-a-real-token", "IjAwMDAi.AAAAAA.forged-signature"],
    ids=["missing", "empty", "garbage", "forged"],
)
@pytest.mark.parametrize("action", POSTS)
def test_post_without_a_valid_csrf_token_is_refused_with_a_reload_message(
    app, owner_client, acme_token, action, bad_token, htmx
):
    before = state(app)
    data = post_data()
    headers = dict(HX if htmx else {})
    if bad_token is not None:
        data["csrf_token"] = bad_token
        headers["X-CSRFToken"] = bad_token
    response = owner_client.post(POSTS[action](acme_token), data=data, headers=headers)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert RELOAD_MESSAGE in body
    assert find_tokens(body) == []
    if htmx:
        assert response.headers["HX-Retarget"] == "#alerts"
    else:
        assert body.lstrip().lower().startswith("<!doctype html>")
    assert state(app) == before


@pytest.mark.parametrize("action", POSTS)
def test_csrf_token_from_another_session_is_refused(app, people, acme_token, action):
    mine, theirs = app.test_client(), app.test_client()
    sign_in(mine, people["owner"])
    sign_in(theirs, people["owner"])
    their_token = header_csrf(theirs.get("/admin/api-tokens").get_data(as_text=True))
    before = state(app)
    response = mine.post(
        POSTS[action](acme_token), data=post_data(), headers={**HX, "X-CSRFToken": their_token}
    )
    assert response.status_code == 400
    assert RELOAD_MESSAGE in response.get_data(as_text=True)
    assert state(app) == before


@pytest.mark.parametrize("action", POSTS)
def test_page_opened_before_signing_in_again_has_a_stale_token(
    app, people, owner_client, acme_token, action
):
    stale = header_csrf(owner_client.get("/admin/api-tokens").get_data(as_text=True))
    owner_client.post("/logout", data={"csrf_token": stale})
    sign_in(owner_client, people["owner"])
    before = state(app)
    response = owner_client.post(
        POSTS[action](acme_token), data=post_data(), headers={**HX, "X-CSRFToken": stale}
    )
    assert response.status_code == 400
    assert RELOAD_MESSAGE in response.get_data(as_text=True)
    assert state(app) == before


def test_create_works_with_the_csrf_header_htmx_sends(app, owner_client):
    token = header_csrf(owner_client.get("/admin/api-tokens").get_data(as_text=True))
    dialog = owner_client.get("/admin/api-tokens/new", headers=HX).get_data(as_text=True)
    key = re.search(r'name="creation_key" type="hidden" value="([^"]+)"', dialog).group(1)
    response = owner_client.post(
        "/admin/api-tokens",
        data={"name": "POS System - Branch 1", "creation_key": key},
        headers={**HX, "X-CSRFToken": token},
    )
    assert response.status_code == 200
    assert len(find_tokens(response.get_data(as_text=True))) == 1
    assert state(app)[0] == 1


def test_create_works_with_the_csrf_field_of_the_plain_form(app, owner_client):
    page = owner_client.get("/admin/api-tokens/new").get_data(as_text=True)
    key = re.search(r'name="creation_key" type="hidden" value="([^"]+)"', page).group(1)
    response = owner_client.post(
        "/admin/api-tokens",
        data={"name": "Reporting Script", "creation_key": key, "csrf_token": form_csrf(page)},
    )
    assert response.status_code == 201
    assert len(find_tokens(response.get_data(as_text=True))) == 1
    assert state(app)[0] == 1


def test_create_dialog_form_carries_its_own_csrf_field(owner_client):
    dialog = owner_client.get("/admin/api-tokens/new", headers=HX).get_data(as_text=True)
    assert form_csrf(dialog)


def test_revoke_works_with_the_csrf_header_htmx_sends(app, owner_client, acme_token):
    token = header_csrf(owner_client.get("/admin/api-tokens").get_data(as_text=True))
    response = owner_client.post(
        f"/admin/api-tokens/{acme_token}/revoke", headers={**HX, "X-CSRFToken": token}
    )
    assert response.status_code == 200
    assert state(app)[1][0] is not None


def test_revoke_works_with_the_csrf_field_of_the_confirmation_page(app, owner_client, acme_token):
    page = owner_client.get(f"/admin/api-tokens/{acme_token}/revoke").get_data(as_text=True)
    response = owner_client.post(
        f"/admin/api-tokens/{acme_token}/revoke", data={"csrf_token": form_csrf(page)}
    )
    assert response.status_code == 303
    assert state(app)[1][0] is not None


def test_inline_confirmation_form_carries_its_own_csrf_field(owner_client, acme_token):
    row = owner_client.get(f"/admin/api-tokens/{acme_token}/revoke", headers=HX)
    assert form_csrf(row.get_data(as_text=True))
