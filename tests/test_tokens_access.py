"""Who may use each route of the API Tokens page: the role × business matrix."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import login
from sqlalchemy import func, select

from vasbox_dash import tokens
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, User

HX = {"HX-Request": "true"}
FORBIDDEN_TEXT = "Only the Business Owner can manage API tokens"
ACME_TOKEN_NAME = "Acme Accounting"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    # Expected status for the owner of the token's business: (plain request, htmx request).
    owner: tuple[int, int]

    @property
    def token_specific(self) -> bool:
        return "{public_id}" in self.path

    @property
    def rule(self) -> str:
        return self.path.replace("{public_id}", "<public_id>")

    def url(self, public_id: str) -> str:
        return self.path.format(public_id=public_id)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("GET", "/admin/api-tokens", (200, 200)),
    Route("GET", "/admin/api-tokens/new", (200, 200)),
    Route("POST", "/admin/api-tokens", (201, 200)),
    Route("GET", "/admin/api-tokens/{public_id}/revoke", (200, 200)),
    Route("GET", "/admin/api-tokens/{public_id}/row", (302, 200)),
    Route("POST", "/admin/api-tokens/{public_id}/revoke", (303, 200)),
    Route("GET", "/admin/api-tokens/times", (302, 200)),
]
ROUTE_IDS = [str(route) for route in ROUTES]


@pytest.fixture
def acme_token(app, people) -> str:
    """A token of the owner's business (Acme); returns its public id."""
    with app.app_context():
        owner = db.session.get(User, people["owner"].id)
        token, _plaintext = tokens.issue_token(owner, ACME_TOKEN_NAME)
        return token.public_id


def snapshot(app, people) -> dict:
    """What a request might change: each business's token count and the Acme token's state."""
    with app.app_context():
        counts = dict(
            db.session.execute(
                select(ApiToken.business_id, func.count()).group_by(ApiToken.business_id)
            ).all()
        )
        acme = db.session.scalar(select(ApiToken).where(ApiToken.name == ACME_TOKEN_NAME))
        return {
            "acme": counts.get(people["owner"].business_id, 0),
            "other": counts.get(people["other_owner"].business_id, 0),
            "acme_token": (acme.name, acme.revoked_at, acme.revoked_by_id),
        }


def send(client, route: Route, public_id: str, htmx: bool, extra_headers=None):
    headers = dict(HX if htmx else {})
    headers.update(extra_headers or {})
    data = {"name": "Matrix token", "creation_key": uuid.uuid4().hex}
    return client.open(
        route.url(public_id),
        method=route.method,
        headers=headers,
        data=data if route.method == "POST" else None,
    )


def test_matrix_covers_every_route_of_the_page(app):
    served = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("dashboard.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served == {(route.method, route.rule) for route in ROUTES}


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_anonymous_visitor_is_sent_to_sign_in_and_nothing_changes(
    app, client, people, acme_token, route
):
    before = snapshot(app, people)
    response = send(client, route, acme_token, htmx=False)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [route.url(acme_token)]
    assert snapshot(app, people) == before


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_anonymous_htmx_request_gets_401_with_hx_redirect_to_sign_in(
    app, client, people, acme_token, route
):
    before = snapshot(app, people)
    response = send(
        client,
        route,
        acme_token,
        htmx=True,
        extra_headers={"HX-Current-URL": "http://localhost/admin/api-tokens"},
    )
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/admin/api-tokens"
    # An empty body: the sign-in page is never swapped into a table cell.
    assert response.get_data(as_text=True) == ""
    assert snapshot(app, people) == before


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_owner_can_use_every_route(app, client, people, acme_token, route, htmx):
    login(client, people["owner"])
    before = snapshot(app, people)
    response = send(client, route, acme_token, htmx)
    assert response.status_code == route.owner[htmx]
    after = snapshot(app, people)
    if route.method == "POST" and not route.token_specific:
        assert after["acme"] == before["acme"] + 1
    elif route.method == "POST":
        assert after["acme_token"][1] is not None
        assert after["acme_token"][2] == people["owner"].id
    else:
        assert after == before


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("persona", ["manager", "cashier", "support"])
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_staff_and_support_get_403_explaining_only_the_owner_manages_tokens(
    app, client, people, acme_token, route, persona, htmx
):
    login(client, people[persona])
    before = snapshot(app, people)
    response = send(client, route, acme_token, htmx)
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert FORBIDDEN_TEXT in body
    assert ACME_TOKEN_NAME not in body
    assert acme_token not in body
    if htmx:
        # The explanation lands in the alert area, not inside the target element.
        assert response.headers["HX-Retarget"] == "#alerts"
        assert "<html" not in body
    else:
        assert body.lstrip().lower().startswith("<!doctype html>")
        assert "You don’t have access to this page" in body
    assert snapshot(app, people) == before


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("route", [r for r in ROUTES if r.token_specific], ids=str)
def test_another_business_owner_gets_404_for_a_token_that_is_not_theirs(
    app, client, people, acme_token, route, htmx
):
    login(client, people["other_owner"])
    before = snapshot(app, people)
    response = send(client, route, acme_token, htmx)
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert ACME_TOKEN_NAME not in body
    assert snapshot(app, people) == before


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("route", [r for r in ROUTES if not r.token_specific], ids=str)
def test_another_business_owner_sees_only_their_own_business(
    app, client, people, acme_token, route, htmx
):
    login(client, people["other_owner"])
    before = snapshot(app, people)
    response = send(client, route, acme_token, htmx)
    assert response.status_code == route.owner[htmx]
    body = response.get_data(as_text=True)
    assert ACME_TOKEN_NAME not in body
    assert acme_token not in body
    after = snapshot(app, people)
    assert after["acme"] == before["acme"]
    assert after["acme_token"] == before["acme_token"]
    if route.method == "POST":
        assert after["other"] == before["other"] + 1


def test_unknown_public_id_is_404_for_the_owner(client, people, acme_token):
    login(client, people["owner"])
    for path in ("/admin/api-tokens/zzzzzzzz/revoke", "/admin/api-tokens/zzzzzzzz/row"):
        assert client.get(path, headers=HX).status_code == 404
    assert client.post("/admin/api-tokens/zzzzzzzz/revoke").status_code == 404


def test_anonymous_visitor_is_returned_to_the_page_after_signing_in(client, people, acme_token):
    target = f"/admin/api-tokens/{acme_token}/revoke"
    response = client.get(target)
    assert response.status_code == 302
    signed_in = client.post(
        response.headers["Location"],
        data={"email": people["owner"].email, "password": people["owner"].password},
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["Location"] == target
    page = client.get(target)
    assert page.status_code == 200
    assert f"Revoke “{ACME_TOKEN_NAME}”?" in page.get_data(as_text=True)


def test_htmx_request_without_current_url_is_sent_to_plain_sign_in(client, acme_token):
    response = client.get("/admin/api-tokens/times", headers=HX)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login"


def test_owner_sees_the_api_tokens_link_and_staff_do_not(client, people):
    login(client, people["owner"])
    assert 'href="/admin/api-tokens"' in client.get("/admin/api-tokens").get_data(as_text=True)
    client.post("/logout")
    login(client, people["manager"])
    home = client.get("/", follow_redirects=True)
    assert home.status_code == 200
    assert 'href="/admin/api-tokens"' not in home.get_data(as_text=True)
