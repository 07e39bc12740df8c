"""Owner-granted support access: the code, the read-only console, ending and expiry,
throttling of wrong codes, and the audit trail the owner sees."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import PASSWORD, Persona, create_token_via_ui, login, make_config
from sqlalchemy import func, select

from vasbox_dash.accounts import create_user
from vasbox_dash.extensions import db
from vasbox_dash.models import AuditEvent, SupportAccess, SupportGrant
from vasbox_dash.security import PUBLIC_ID_ALPHABET, keyed_hash, parse_token

HX = {"HX-Request": "true"}
CODE_RE = re.compile(r'id="support-code">([A-Z0-9-]+)<')


@pytest.fixture
def app_config(database_url, clock) -> dict:
    # Sessions outlive the half-hour grant here, so expiry tests measure the grant alone.
    return make_config(
        database_url,
        CLOCK=clock,
        SESSION_IDLE_SECONDS=6 * 3600,
        SUPPORT_CODE_AGENT_LIMIT="3 per 15 minutes",
        SUPPORT_CODE_BUSINESS_LIMIT="5 per 15 minutes",
    )


@pytest.fixture
def owner(app, people):
    client = app.test_client()
    login(client, people["owner"])
    return client


@pytest.fixture
def agent(app, people):
    client = app.test_client()
    login(client, people["support"])
    return client


@pytest.fixture
def second_agent(app):
    with app.app_context():
        user = create_user(
            business=None,
            email="agent2@vasbox.example",
            name="Tariro Tech",
            role="support",
            password=PASSWORD,
        )
        persona = Persona(user.id, user.email, user.display_name, "support", None)
    client = app.test_client()
    login(client, persona)
    return client


@pytest.fixture
def acme_tokens(owner):
    """Two Acme tokens made through the page: {name: plaintext}."""
    made = {}
    for name in ("Accounting Software", "POS System - Branch 1"):
        _response, plaintext = create_token_via_ui(owner, name)
        made[name] = plaintext
    return made


def acme_id(people) -> int:
    return people["owner"].business_id


def grant(owner_client) -> str:
    """The owner clicks Allow support access (htmx); returns the code as shown."""
    response = owner_client.post("/admin/support-access", headers=HX)
    assert response.status_code == 200
    return CODE_RE.search(response.get_data(as_text=True)).group(1)


def redeem(agent_client, business_id: int, code: str):
    return agent_client.post(f"/support/businesses/{business_id}/access", data={"code": code})


def tokens_page(agent_client, business_id: int):
    return agent_client.get(f"/support/businesses/{business_id}/tokens")


def audit_count(app, action: str) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )


def test_owner_allows_support_access_and_sees_a_readable_code_once(app, owner, people, clock):
    response = owner.post("/admin/support-access", headers=HX)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    assert 'hx-history="false"' in body
    shown = CODE_RE.search(body).group(1)
    code = shown.replace("-", "").lower()
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", shown)
    assert len(code) == 8 and set(code) <= set(PUBLIC_ID_ALPHABET)
    assert "Thu 3 Dec 2026, 12:30 CAT (UTC+02:00)" in body  # 30 minutes from 12:00 local
    assert "End access" in body
    with app.app_context():
        row = db.session.scalar(select(SupportGrant))
        assert row.code_hash == keyed_hash(code)
        assert row.expires_at == clock.now + timedelta(minutes=30)
        assert row.created_by_id == people["owner"].id
        events = db.session.scalars(select(AuditEvent)).all()
        assert all(code not in repr(e.details) and shown not in repr(e.details) for e in events)
    later = owner.get("/admin/api-tokens").get_data(as_text=True)
    assert shown not in later and code not in later
    assert "VasBox support can view your tokens" in later
    assert "No agent has entered the code yet." in later


def test_allowing_access_without_javascript_shows_the_code_on_its_own_page(owner):
    response = owner.post("/admin/support-access")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert CODE_RE.search(body)
    assert "Support access is on" in body


def test_agent_with_the_code_sees_the_same_tokens_read_only(owner, agent, people, acme_tokens):
    code = grant(owner)
    response = redeem(agent, acme_id(people), code)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/support/businesses/{acme_id(people)}/tokens"
    page = tokens_page(agent, acme_id(people))
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    owner_body = owner.get("/admin/api-tokens").get_data(as_text=True)
    for name, plaintext in acme_tokens.items():
        display_id = f"vbx_{parse_token(plaintext).public_id}…"
        assert name in body and display_id in body
        assert name in owner_body and display_id in owner_body
        assert plaintext not in body
    assert "Read-only view of Acme Stores" in body
    assert "Revoke" not in body
    assert "/revoke" not in body and "Create Token" not in body and "/rename" not in body


def test_code_is_accepted_in_lower_case_and_with_spaces(owner, agent, people):
    code = grant(owner).replace("-", " ").lower()
    assert redeem(agent, acme_id(people), f"  {code} ").status_code == 303
    assert tokens_page(agent, acme_id(people)).status_code == 200


def test_agent_without_a_grant_sees_nothing_about_the_businesss_tokens(agent, people, acme_tokens):
    for path in (
        f"/support/businesses/{acme_id(people)}/tokens",
        f"/support/businesses/{acme_id(people)}/tokens/"
        f"{parse_token(acme_tokens['Accounting Software']).public_id}",
    ):
        response = agent.get(path)
        assert response.status_code == 403
        body = response.get_data(as_text=True)
        assert "Allow support access" in body
        assert "Accounting Software" not in body


def test_agent_can_view_a_tokens_activity_with_the_owners_exact_times(
    app, owner, agent, people, acme_tokens, clock
):
    public_id = parse_token(acme_tokens["Accounting Software"]).public_id
    redeem(agent, acme_id(people), grant(owner))
    response = agent.get(f"/support/businesses/{acme_id(people)}/tokens/{public_id}")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    owner_body = owner.get(f"/admin/api-tokens/{public_id}").get_data(as_text=True)
    created = "Thu 3 Dec 2026, 12:00:00 CAT (UTC+02:00)"
    assert created in body and created in owner_body
    assert f"vbx_{public_id}…" in body
    assert "Rename" not in body
    assert acme_tokens["Accounting Software"] not in body
    # The names in the read-only list link to the read-only detail page, never the owner's.
    listing = tokens_page(agent, acme_id(people)).get_data(as_text=True)
    assert f'href="/support/businesses/{acme_id(people)}/tokens/{public_id}"' in listing
    assert f'href="/admin/api-tokens/{public_id}"' not in listing


def test_owner_ending_access_cuts_the_agent_off_at_the_next_request(
    app, owner, agent, people, acme_tokens
):
    redeem(agent, acme_id(people), grant(owner))
    assert tokens_page(agent, acme_id(people)).status_code == 200
    ended = owner.post("/admin/support-access/end")
    assert ended.status_code == 303
    assert ended.headers["Location"] == "/admin/api-tokens"
    assert "Support access ended" in owner.get("/admin/api-tokens").get_data(as_text=True)
    refused = tokens_page(agent, acme_id(people))
    assert refused.status_code == 403
    assert "Accounting Software" not in refused.get_data(as_text=True)
    htmx_refused = agent.get(f"/support/businesses/{acme_id(people)}/tokens", headers=HX)
    assert htmx_refused.status_code == 403
    assert htmx_refused.headers["HX-Retarget"] == "#alerts"
    assert audit_count(app, "support.ended") == 1
    with app.app_context():
        row = db.session.scalar(select(SupportGrant))
        assert row.ended_at is not None and row.ended_by_id == people["owner"].id


def test_ending_access_with_htmx_swaps_the_banner_back_to_the_allow_button(owner, agent):
    grant(owner)
    response = owner.post("/admin/support-access/end", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert 'id="support-access"' in body
    assert "Allow support access" in body
    assert "Support access ended. VasBox support can no longer see your tokens." in body
    assert "<html" not in body


def test_ending_access_twice_says_it_had_already_ended(app, owner):
    grant(owner)
    owner.post("/admin/support-access/end")
    again = owner.post("/admin/support-access/end", follow_redirects=True)
    assert "Support access had already ended." in again.get_data(as_text=True)
    assert audit_count(app, "support.ended") == 1


def test_expiry_after_thirty_minutes_cuts_the_agent_off(owner, agent, people, clock):
    redeem(agent, acme_id(people), grant(owner))
    clock.advance(minutes=29, seconds=59)
    assert tokens_page(agent, acme_id(people)).status_code == 200
    clock.advance(seconds=1)
    assert tokens_page(agent, acme_id(people)).status_code == 403
    banner = owner.get("/admin/api-tokens").get_data(as_text=True)
    assert "VasBox support can view your tokens" not in banner
    assert "Allow support access" in banner


def test_an_expired_code_is_refused(owner, agent, people, clock):
    code = grant(owner)
    clock.advance(minutes=30)
    response = redeem(agent, acme_id(people), code)
    assert response.status_code == 422
    assert "That code does not open this business" in response.get_data(as_text=True)
    assert tokens_page(agent, acme_id(people)).status_code == 403


def test_a_new_grant_replaces_the_old_one_and_its_code(app, owner, agent, second_agent, people):
    old = grant(owner)
    redeem(agent, acme_id(people), old)
    new = grant(owner)
    assert old != new
    assert tokens_page(agent, acme_id(people)).status_code == 403
    assert redeem(second_agent, acme_id(people), old).status_code == 422
    assert redeem(second_agent, acme_id(people), new).status_code == 303
    with app.app_context():
        ended = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "support.ended"))
        assert ended.details == {"reason": "replaced"}


def test_a_code_opens_only_the_business_that_granted_it(app, owner, agent, people):
    code = grant(owner)
    other_id = people["other_owner"].business_id
    assert redeem(agent, other_id, code).status_code == 422
    assert tokens_page(agent, other_id).status_code == 403
    assert redeem(agent, acme_id(people), code).status_code == 303
    assert tokens_page(agent, other_id).status_code == 403


def test_a_token_of_another_business_is_404_even_with_a_grant(app, owner, agent, people):
    other = app.test_client()
    login(other, people["other_owner"])
    _response, plaintext = create_token_via_ui(other, "Other Books")
    redeem(agent, acme_id(people), grant(owner))
    path = f"/support/businesses/{acme_id(people)}/tokens/{parse_token(plaintext).public_id}"
    response = agent.get(path)
    assert response.status_code == 404
    assert "Other Books" not in response.get_data(as_text=True)


def test_each_agent_needs_the_code_themselves(owner, agent, second_agent, people):
    redeem(agent, acme_id(people), grant(owner))
    assert tokens_page(agent, acme_id(people)).status_code == 200
    assert tokens_page(second_agent, acme_id(people)).status_code == 403


def test_owner_banner_names_the_agents_who_entered_the_code(owner, agent, people):
    redeem(agent, acme_id(people), grant(owner))
    body = owner.get("/admin/api-tokens").get_data(as_text=True)
    assert "Viewing now: Sam Support." in body
    assert "End access" in body


def test_every_support_view_is_audited_with_the_agents_name(app, owner, agent, people, acme_tokens):
    public_id = parse_token(acme_tokens["Accounting Software"]).public_id
    redeem(agent, acme_id(people), grant(owner))
    tokens_page(agent, acme_id(people))
    tokens_page(agent, acme_id(people))
    agent.get(f"/support/businesses/{acme_id(people)}/tokens/{public_id}")
    agent.get(f"/support/businesses/{acme_id(people)}/tokens/{public_id}?page=1", headers=HX)
    with app.app_context():
        views = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "support.viewed").order_by(AuditEvent.id)
        ).all()
        assert len(views) == 4
        assert {v.actor_user_id for v in views} == {people["support"].id}
        assert {v.business_id for v in views} == {acme_id(people)}
        assert all(v.details["agent"] == "Sam Support" for v in views)
        assert [v.target_type for v in views] == ["business", "business", "token", "token"]
        assert views[2].target_id == public_id
    log = owner.get("/admin/audit-log?kind=support").get_data(as_text=True)
    assert log.count("Sam Support (VasBox support)") == 5  # four views and the accepted code
    assert "Viewed the list of API tokens." in log
    assert f"Viewed the activity of token “Accounting Software” (vbx_{public_id}…)." in log


def test_a_refused_view_is_not_audited_as_a_view(app, agent, people):
    tokens_page(agent, acme_id(people))
    assert audit_count(app, "support.viewed") == 0


def test_wrong_codes_are_throttled_per_agent(app, owner, agent, people):
    code = grant(owner)
    for _ in range(3):
        assert redeem(agent, acme_id(people), "abcd-efgh").status_code == 422
    throttled = redeem(agent, acme_id(people), code)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert "Too many wrong codes" in throttled.get_data(as_text=True)
    assert tokens_page(agent, acme_id(people)).status_code == 403
    assert audit_count(app, "support.code_failed") == 3
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SupportAccess)) == 0


def test_wrong_codes_are_throttled_per_business_across_agents(
    app, owner, agent, second_agent, people
):
    code = grant(owner)
    for _ in range(3):
        redeem(agent, acme_id(people), "wrong")
    for _ in range(2):
        assert redeem(second_agent, acme_id(people), "22222222").status_code == 422
    # Five wrong codes for Acme in all: even a fresh agent with the right code must wait.
    assert redeem(second_agent, acme_id(people), code).status_code == 429
    # Another business is not affected by Acme's limit.
    other = people["other_owner"].business_id
    assert redeem(second_agent, other, "33333333").status_code == 422


def test_a_right_code_clears_the_agents_own_wrong_attempts(owner, agent, people):
    code = grant(owner)
    for _ in range(2):
        redeem(agent, acme_id(people), "wrong")
    assert redeem(agent, acme_id(people), code).status_code == 303
    for _ in range(2):
        assert redeem(agent, acme_id(people), "wrong").status_code == 422
    assert redeem(agent, acme_id(people), code).status_code == 303


def test_console_finds_a_business_by_name_or_id(agent, people):
    by_name = agent.get("/support/?q=acme").get_data(as_text=True)
    assert "Acme Stores" in by_name and "Other Traders" not in by_name
    assert f'action="/support/businesses/{acme_id(people)}/access"' in by_name
    by_id = agent.get(f"/support/?q={people['other_owner'].business_id}").get_data(as_text=True)
    assert "Other Traders" in by_id
    nothing = agent.get("/support/?q=%25").get_data(as_text=True)
    assert "No business matches “%”" in nothing
    assert "Acme Stores" not in nothing


def test_console_lists_the_agents_open_access(owner, agent, people):
    assert "Open access" not in agent.get("/support/").get_data(as_text=True)
    redeem(agent, acme_id(people), grant(owner))
    body = agent.get("/support/").get_data(as_text=True)
    assert "Open access" in body
    assert f'href="/support/businesses/{acme_id(people)}/tokens"' in body


def test_code_page_sends_an_agent_with_access_straight_to_the_tokens(owner, agent, people):
    path = f"/support/businesses/{acme_id(people)}/access"
    assert agent.get(path).status_code == 200
    redeem(agent, acme_id(people), grant(owner))
    response = agent.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/support/businesses/{acme_id(people)}/tokens"


def test_unknown_business_is_404_in_the_console(agent):
    assert agent.get("/support/businesses/999/access").status_code == 404
    assert agent.post("/support/businesses/999/access", data={"code": "x"}).status_code == 404


def test_support_code_is_never_logged(owner, agent, people, caplog):
    caplog.set_level("DEBUG")
    code = grant(owner)
    redeem(agent, acme_id(people), code)
    assert code not in caplog.text
    assert code.replace("-", "").lower() not in caplog.text


def test_the_banner_refreshes_to_show_agents_and_expiry_but_never_the_code(
    owner, agent, people, clock
):
    code = grant(owner)
    page = owner.get("/admin/api-tokens").get_data(as_text=True)
    assert 'hx-get="/admin/support-access" hx-trigger="every 30s"' in page
    redeem(agent, acme_id(people), code)
    polled = owner.get("/admin/support-access", headers=HX)
    assert polled.status_code == 200
    body = polled.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="support-access"')
    assert "Viewing now: Sam Support." in body
    assert code not in body and code.replace("-", "").lower() not in body
    clock.advance(minutes=30)
    expired = owner.get("/admin/support-access", headers=HX).get_data(as_text=True)
    assert "Allow support access" in expired
    assert "hx-trigger" not in expired
    plain = owner.get("/admin/support-access")
    assert plain.status_code == 302
    assert plain.headers["Location"] == "/admin/api-tokens"
