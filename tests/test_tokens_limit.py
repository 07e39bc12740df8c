"""The active-token limit per business (MAX_ACTIVE_TOKENS, 3 in this module)."""

from __future__ import annotations

import re
import threading

import pytest
from conftest import create_token_via_ui, find_tokens, login, make_config
from sqlalchemy import func, select

from vasbox_dash import tokens
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, User
from vasbox_dash.security import parse_token

HX = {"HX-Request": "true"}
LIMIT = 3
LIMIT_MESSAGE = (
    "This business already has 3 active tokens, the most allowed. "
    "Revoke one you no longer use, then try again."
)


@pytest.fixture
def app_config(database_url, clock) -> dict:
    return make_config(database_url, CLOCK=clock, MAX_ACTIVE_TOKENS=LIMIT)


def active_count(app, business_id: int) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count())
            .select_from(ApiToken)
            .where(ApiToken.business_id == business_id, ApiToken.revoked_at.is_(None))
        )


def fill_to_the_limit(client) -> list[str]:
    public_ids = []
    for number in range(1, LIMIT + 1):
        response, plaintext = create_token_via_ui(client, f"Till {number}")
        assert response.status_code == 200
        public_ids.append(parse_token(plaintext).public_id)
    return public_ids


def test_page_counts_active_tokens_against_the_limit(as_owner):
    fill_to_the_limit(as_owner)
    assert "(3 of 3)" in as_owner.get("/admin/api-tokens").get_data(as_text=True)


def test_one_more_than_the_limit_gets_a_clear_message_and_nothing_is_created(app, as_owner, people):
    fill_to_the_limit(as_owner)
    response, plaintext = create_token_via_ui(as_owner, "One too many")
    assert response.status_code == 422
    assert plaintext is None
    body = response.get_data(as_text=True)
    assert re.match(r'\s*<dialog[^>]*id="token-dialog"', body)
    assert LIMIT_MESSAGE in body
    assert active_count(app, people["owner"].business_id) == LIMIT
    with app.app_context():
        assert "One too many" not in db.session.scalars(select(ApiToken.name)).all()


def test_limit_message_also_shows_without_javascript(app, as_owner, people):
    fill_to_the_limit(as_owner)
    response, plaintext = create_token_via_ui(as_owner, "One too many", htmx=False)
    assert response.status_code == 422
    assert plaintext is None
    assert LIMIT_MESSAGE in response.get_data(as_text=True)
    assert active_count(app, people["owner"].business_id) == LIMIT


def test_revoking_a_token_frees_a_slot(app, as_owner, people):
    public_ids = fill_to_the_limit(as_owner)
    assert as_owner.post(f"/admin/api-tokens/{public_ids[0]}/revoke", headers=HX).status_code == 200
    response, plaintext = create_token_via_ui(as_owner, "Replacement")
    assert response.status_code == 200
    assert plaintext
    assert active_count(app, people["owner"].business_id) == LIMIT
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ApiToken)) == LIMIT + 1


def test_two_creates_at_once_cannot_pass_the_limit(app, people, monkeypatch):
    """Both requests count the active tokens before either inserts. Each holds at the
    barrier until the other has counted too, or until the barrier gives up because the
    other is (correctly) waiting for the first to finish; either way at most one fits."""
    owner_id, business_id = people["owner"].id, people["owner"].business_id
    with app.app_context():
        owner = db.session.get(User, owner_id)
        for number in range(1, LIMIT):
            tokens.issue_token(owner, f"Till {number}")
    barrier = threading.Barrier(2, timeout=1)
    real_count = tokens.active_count

    def count_then_wait(business_id: int) -> int:
        count = real_count(business_id)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return count

    monkeypatch.setattr(tokens, "active_count", count_then_wait)
    outcomes: list[str] = []

    def create(name: str) -> None:
        with app.app_context():
            try:
                tokens.issue_token(db.session.get(User, owner_id), name)
                outcomes.append("created")
            except tokens.TokenError as error:
                outcomes.append(str(error))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=create, args=(f"Racer {n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == sorted(["created", LIMIT_MESSAGE])
    assert active_count(app, business_id) == LIMIT


def test_limit_counts_each_business_separately(app, client, people):
    login(client, people["owner"])
    fill_to_the_limit(client)
    client.post("/logout")
    login(client, people["other_owner"])
    response, plaintext = create_token_via_ui(client, "Till 1")
    assert response.status_code == 200
    assert find_tokens(response.get_data(as_text=True)) == [plaintext]
    assert active_count(app, people["other_owner"].business_id) == 1
