"""The role × business matrix for every route of token activity, the audit log and support
access: who gets in, who gets 403 or 404, and that refused requests change nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from conftest import create_token_via_ui, login, make_config
from sqlalchemy import func, select

from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, AuditEvent, SupportAccess, SupportGrant
from vasbox_dash.security import parse_token

HX = {"HX-Request": "true"}
TOKEN_NAME = "Acme Accounting"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    # The Acme owner's status: (plain request, htmx request); None for agent-only routes.
    owner: tuple[int, int] | None = None

    @property
    def rule(self) -> str:
        return self.path.replace("{public_id}", "<public_id>").replace(
            "{business_id}", "<int:business_id>"
        )

    @property
    def for_agents(self) -> bool:
        return self.path.startswith("/support/")

    @property
    def token_specific(self) -> bool:
        return "{public_id}" in self.path

    def url(self, public_id: str, business_id: int) -> str:
        return self.path.format(public_id=public_id, business_id=business_id)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


OWNER_ROUTES = [
    Route("GET", "/admin/api-tokens/{public_id}", (200, 200)),
    Route("GET", "/admin/api-tokens/{public_id}/name", (302, 200)),
    Route("GET", "/admin/api-tokens/{public_id}/rename", (200, 200)),
    Route("POST", "/admin/api-tokens/{public_id}/rename", (303, 200)),
    Route("GET", "/admin/audit-log", (200, 200)),
    Route("GET", "/admin/audit-log.csv", (200, 200)),
    Route("GET", "/admin/support-access", (302, 200)),
    Route("POST", "/admin/support-access", (200, 200)),
    Route("POST", "/admin/support-access/end", (303, 200)),
]
AGENT_ROUTES = [
    Route("GET", "/support/"),
    Route("GET", "/support/businesses/{business_id}/access"),
    Route("POST", "/support/businesses/{business_id}/access"),
    Route("GET", "/support/businesses/{business_id}/tokens"),
    Route("GET", "/support/businesses/{business_id}/tokens/{public_id}"),
]
ROUTES = OWNER_ROUTES + AGENT_ROUTES
# The pages that show a business's tokens to an agent: only with a live grant.
GATED = [r for r in AGENT_ROUTES if "/tokens" in r.path]
# Everything an agent must never do, even with a grant: the owner's mutations and pages.
OWNER_MUTATIONS = [
    Route("POST", "/admin/api-tokens"),
    Route("POST", "/admin/api-tokens/{public_id}/revoke"),
    Route("POST", "/admin/api-tokens/{public_id}/rename"),
    Route("POST", "/admin/support-access"),
    Route("POST", "/admin/support-access/end"),
]


@pytest.fixture
def app_config(database_url, clock) -> dict:
    return make_config(database_url, CLOCK=clock, SESSION_IDLE_SECONDS=6 * 3600)


@pytest.fixture
def acme(app, people):
    """An Acme token made through the page: (public_id, plaintext, business id)."""
    owner = app.test_client()
    login(owner, people["owner"])
    _response, plaintext = create_token_via_ui(owner, TOKEN_NAME)
    return parse_token(plaintext).public_id, plaintext, people["owner"].business_id


def send(client, route: Route, acme, htmx: bool = False):
    public_id, _plaintext, business_id = acme
    data = None
    if route.method == "POST":
        data = {"name": "Matrix rename", "code": "wrongcod", "creation_key": "matrix"}
    return client.open(
        route.url(public_id, business_id),
        method=route.method,
        headers=HX if htmx else {},
        data=data,
    )


def snapshot(app) -> dict:
    """What a refused request must not change."""
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.public_id.is_not(None)))
        grants = db.session.execute(
            select(SupportGrant.business_id, SupportGrant.ended_at).order_by(SupportGrant.id)
        ).all()
        return {
            "tokens": db.session.scalar(select(func.count()).select_from(ApiToken)),
            "token": (token.name, token.revoked_at),
            "grants": grants,
            "access": db.session.scalar(select(func.count()).select_from(SupportAccess)),
        }


def grant_and_redeem(app, people, acme) -> tuple:
    """The owner grants access and the support persona enters the code; returns clients."""
    owner = app.test_client()
    login(owner, people["owner"])
    body = owner.post("/admin/support-access", headers=HX).get_data(as_text=True)
    code = re.search(r'id="support-code">([A-Z0-9-]+)<', body).group(1)
    agent = app.test_client()
    login(agent, people["support"])
    assert agent.post(f"/support/businesses/{acme[2]}/access", data={"code": code}).status_code
    return owner, agent


def test_matrix_covers_every_new_route(app):
    served = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in {"activity", "support", "support_access"}
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served == {(route.method, route.rule) for route in ROUTES}


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_anonymous_visitor_is_sent_to_sign_in(app, client, acme, route):
    before = snapshot(app)
    response = send(client, route, acme)
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"
    htmx = send(client, route, acme, htmx=True)
    assert htmx.status_code == 401
    assert htmx.headers["HX-Redirect"].startswith("/login")
    assert snapshot(app) == before


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("route", OWNER_ROUTES, ids=str)
def test_owner_can_use_every_owner_route(app, client, people, acme, route, htmx):
    login(client, people["owner"])
    response = send(client, route, acme, htmx)
    assert response.status_code == route.owner[htmx]


@pytest.mark.parametrize("route", AGENT_ROUTES, ids=str)
def test_owner_cannot_use_the_support_console(app, client, people, acme, route):
    login(client, people["owner"])
    before = snapshot(app)
    response = send(client, route, acme)
    assert response.status_code == 403
    assert snapshot(app) == before


@pytest.mark.parametrize(
    ("persona", "htmx"),
    [("manager", False), ("manager", True), ("cashier", False)],
    ids=["manager-plain", "manager-htmx", "cashier-plain"],
)
@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_staff_get_403_for_every_route_and_nothing_changes(
    app, client, people, acme, route, persona, htmx
):
    login(client, people[persona])
    before = snapshot(app)
    response = send(client, route, acme, htmx)
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert TOKEN_NAME not in body and acme[0] not in body
    if htmx:
        assert response.headers["HX-Retarget"] == "#alerts"
    assert snapshot(app) == before


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("route", [r for r in OWNER_ROUTES if r.token_specific], ids=str)
def test_another_business_owner_gets_404_for_acmes_token(app, client, people, acme, route, htmx):
    login(client, people["other_owner"])
    before = snapshot(app)
    response = send(client, route, acme, htmx)
    assert response.status_code == 404
    assert TOKEN_NAME not in response.get_data(as_text=True)
    assert snapshot(app) == before


@pytest.mark.parametrize("route", [r for r in OWNER_ROUTES if not r.token_specific], ids=str)
def test_another_business_owner_only_ever_touches_their_own_business(
    app, client, people, acme, route
):
    login(client, people["other_owner"])
    response = send(client, route, acme)
    assert response.status_code == route.owner[0]
    assert TOKEN_NAME not in response.get_data(as_text=True)
    with app.app_context():
        businesses = set(db.session.scalars(select(SupportGrant.business_id)))
        assert people["owner"].business_id not in businesses


@pytest.mark.parametrize("route", [r for r in AGENT_ROUTES if r not in GATED], ids=str)
def test_support_without_a_grant_may_search_and_try_a_code(app, client, people, acme, route):
    login(client, people["support"])
    response = send(client, route, acme)
    assert response.status_code == (422 if route.method == "POST" else 200)
    assert TOKEN_NAME not in response.get_data(as_text=True)


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("route", GATED, ids=str)
def test_support_without_a_grant_sees_nothing_about_tokens(app, client, people, acme, route, htmx):
    login(client, people["support"])
    response = send(client, route, acme, htmx)
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert TOKEN_NAME not in body and acme[0] not in body


@pytest.mark.parametrize("route", OWNER_ROUTES, ids=str)
def test_support_without_a_grant_gets_403_on_every_owner_route(app, client, people, acme, route):
    login(client, people["support"])
    before = snapshot(app)
    assert send(client, route, acme).status_code == 403
    assert snapshot(app) == before


@pytest.mark.parametrize("route", GATED, ids=str)
def test_support_with_a_grant_reads_without_secrets_or_actions(app, people, acme, route):
    _owner, agent = grant_and_redeem(app, people, acme)
    response = send(agent, route, acme)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert TOKEN_NAME in body and f"vbx_{acme[0]}…" in body
    assert acme[1] not in body
    assert parse_token(acme[1]).secret not in body
    for action in ("/revoke", "/rename", "/admin/api-tokens/new", 'action="/admin'):
        assert action not in body


@pytest.mark.parametrize("route", OWNER_MUTATIONS + OWNER_ROUTES, ids=str)
def test_support_with_a_grant_is_refused_every_owner_route(app, people, acme, route):
    _owner, agent = grant_and_redeem(app, people, acme)
    before = snapshot(app)
    response = send(agent, route, acme, htmx=route.method == "POST")
    assert response.status_code == 403
    assert snapshot(app) == before
    with app.app_context():
        renamed = db.session.scalar(
            select(func.count()).where(AuditEvent.action.in_(("token.renamed", "token.revoked")))
        )
        assert renamed == 0


@pytest.mark.parametrize("route", GATED, ids=str)
def test_support_with_a_grant_for_acme_sees_nothing_of_another_business(app, people, acme, route):
    _owner, agent = grant_and_redeem(app, people, acme)
    other_id = people["other_owner"].business_id
    response = agent.get(route.url(acme[0], other_id))
    assert response.status_code == 403


@pytest.mark.parametrize("route", GATED, ids=str)
def test_support_after_the_owner_ends_access_gets_nothing(app, people, acme, route):
    owner, agent = grant_and_redeem(app, people, acme)
    assert send(agent, route, acme).status_code == 200
    owner.post("/admin/support-access/end")
    response = send(agent, route, acme)
    assert response.status_code == 403
    assert TOKEN_NAME not in response.get_data(as_text=True)


@pytest.mark.parametrize("route", GATED, ids=str)
def test_support_after_the_grant_expires_gets_nothing(app, people, acme, clock, route):
    _owner, agent = grant_and_redeem(app, people, acme)
    assert send(agent, route, acme).status_code == 200
    clock.advance(minutes=30)
    response = send(agent, route, acme)
    assert response.status_code == 403
    assert TOKEN_NAME not in response.get_data(as_text=True)
