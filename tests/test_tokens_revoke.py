"""Revoking a token: inline confirmation, idempotence, no way back, and the audit rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import create_token_via_ui, find_tokens, login
from sqlalchemy import func, select

import vasbox_dash
from vasbox_dash import audit, tokens
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, AuditEvent, User
from vasbox_dash.security import parse_token

HX = {"HX-Request": "true"}
CONFIRM_TEXT = (
    "Revoke “Accounting Software”? Apps using this token will stop working immediately. "
    "This cannot be undone."
)


@pytest.fixture
def created(as_owner):
    """A token created through the page: (plaintext, public_id)."""
    _response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    return plaintext, parse_token(plaintext).public_id


def load(app, public_id: str) -> ApiToken:
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.public_id == public_id))
        db.session.expunge(token)
        return token


def audit_rows(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        ).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def revoked_section(body: str) -> str:
    assert "Revoked tokens" in body
    return body[body.index('id="revoked-heading"') :]


def active_section(body: str) -> str:
    start = body.index('id="active-heading"')
    end = body.find('id="revoked-heading"')
    return body[start : end if end != -1 else None]


def test_revoke_turns_the_row_into_an_inline_confirmation(app, as_owner, created):
    _plaintext, public_id = created
    response = as_owner.get(f"/admin/api-tokens/{public_id}/revoke", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert re.match(rf'\s*<tr id="token-{public_id}"[^>]*class="confirm-row"', body)
    assert CONFIRM_TEXT in body
    assert re.search(rf'hx-get="/admin/api-tokens/{public_id}/row"[^>]*>Cancel</a>', body)
    assert re.search(r'<button [^>]*type="submit"[^>]*>Revoke token</button>', body)
    assert f'hx-post="/admin/api-tokens/{public_id}/revoke"' in body
    assert load(app, public_id).revoked_at is None


def test_cancel_restores_the_row_and_keeps_the_token(app, as_owner, created):
    _plaintext, public_id = created
    as_owner.get(f"/admin/api-tokens/{public_id}/revoke", headers=HX)
    response = as_owner.get(f"/admin/api-tokens/{public_id}/row", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert re.match(rf'\s*<tr id="token-{public_id}"', body)
    assert re.search(r'data-label="Name">(<a [^>]*>)?Accounting Software(</a>)?</td>', body)
    assert ">Revoke</a>" in body
    assert "confirm-row" not in body
    assert load(app, public_id).revoked_at is None
    assert audit_rows(app, "token.revoked") == []


def test_confirming_revokes_now_and_moves_the_row_to_the_revoked_section(
    app, as_owner, created, clock, people
):
    plaintext, public_id = created
    clock.advance(minutes=20)  # less than the session idle timeout
    response = as_owner.post(f"/admin/api-tokens/{public_id}/revoke", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="token-sections">')
    assert "“Accounting Software” was revoked. Apps using it can no longer connect." in body
    assert 'id="alerts" hx-swap-oob="true"' in body
    revoked = revoked_section(body)
    assert f"vbx_{public_id}…" in revoked
    assert "Olivia Owner" in revoked
    assert f"vbx_{public_id}…" not in active_section(body)
    assert "No active API tokens yet." in body
    token = load(app, public_id)
    assert token.revoked_at == clock.now
    assert token.revoked_by_id == people["owner"].id
    # Committed before the response: the very next authentication sees it.
    with app.app_context():
        assert tokens.authenticate(plaintext).outcome == "revoked"


def test_revoke_without_javascript_uses_a_confirmation_page_then_a_post(app, as_owner, created):
    _plaintext, public_id = created
    page = as_owner.get(f"/admin/api-tokens/{public_id}/revoke")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert text.lstrip().lower().startswith("<!doctype html>")
    assert CONFIRM_TEXT in text
    assert re.search(rf'<form method="post" action="/admin/api-tokens/{public_id}/revoke"', text)
    assert load(app, public_id).revoked_at is None
    response = as_owner.post(f"/admin/api-tokens/{public_id}/revoke")
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/api-tokens"
    listing = as_owner.get("/admin/api-tokens").get_data(as_text=True)
    assert "“Accounting Software” was revoked. Apps using it can no longer connect." in listing
    assert f"vbx_{public_id}…" in revoked_section(listing)
    assert load(app, public_id).revoked_at is not None


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_revoking_twice_is_harmless_with_one_audit_event(app, as_owner, created, clock, htmx):
    _plaintext, public_id = created
    headers = HX if htmx else {}
    as_owner.post(f"/admin/api-tokens/{public_id}/revoke", headers=headers)
    first = load(app, public_id)
    clock.advance(minutes=10)
    again = as_owner.post(f"/admin/api-tokens/{public_id}/revoke", headers=headers)
    assert again.status_code == (200 if htmx else 303)
    text = (
        again.get_data(as_text=True)
        if htmx
        else as_owner.get("/admin/api-tokens").get_data(as_text=True)
    )
    assert "“Accounting Software” was already revoked." in text
    second = load(app, public_id)
    assert second.revoked_at == first.revoked_at
    assert second.revoked_by_id == first.revoked_by_id
    assert len(audit_rows(app, "token.revoked")) == 1


def test_service_revoke_twice_reports_no_change(app, people, created):
    _plaintext, public_id = created
    with app.app_context():
        owner = db.session.get(User, people["owner"].id)
        assert tokens.revoke_token(owner, public_id)[1] is True
        token, changed = tokens.revoke_token(owner, public_id)
        assert token is not None and changed is False
    assert len(audit_rows(app, "token.revoked")) == 1


def test_confirmation_page_for_an_already_revoked_token_goes_back_to_the_list(as_owner, created):
    _plaintext, public_id = created
    as_owner.post(f"/admin/api-tokens/{public_id}/revoke")
    response = as_owner.get(f"/admin/api-tokens/{public_id}/revoke")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/api-tokens"


@pytest.mark.parametrize("step", ["revoke", "row"], ids=["revoke-button", "cancel-button"])
def test_stale_row_of_a_token_revoked_in_another_tab_refreshes_both_lists(
    app, client, people, created, step
):
    """A redirect here would make htmx swap the whole page into one table row; instead the
    lists are re-rendered, with the token in the Revoked section."""
    _plaintext, public_id = created
    other_tab = app.test_client()
    login(other_tab, people["owner"])
    assert other_tab.post(f"/admin/api-tokens/{public_id}/revoke").status_code == 303
    response = client.get(f"/admin/api-tokens/{public_id}/{step}", headers=HX)
    assert response.status_code == 200
    assert response.headers["HX-Retarget"] == "#token-sections"
    assert response.headers["HX-Reswap"] == "outerHTML"
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="token-sections">')
    assert "<html" not in body
    assert "“Accounting Software” was already revoked." in body
    assert f"vbx_{public_id}…" in revoked_section(body)
    assert f"vbx_{public_id}…" not in active_section(body)
    assert len(audit_rows(app, "token.revoked")) == 1


def test_revoking_another_business_token_is_404_and_changes_nothing(app, client, people, created):
    _plaintext, public_id = created
    client.post("/logout")
    login(client, people["other_owner"])
    for headers in ({}, HX):
        response = client.post(f"/admin/api-tokens/{public_id}/revoke", headers=headers)
        assert response.status_code == 404
        assert "Accounting Software" not in response.get_data(as_text=True)
    token = load(app, public_id)
    assert token.revoked_at is None and token.revoked_by_id is None
    assert audit_rows(app, "token.revoked") == []


def test_service_refuses_to_revoke_another_business_token(app, people, created):
    _plaintext, public_id = created
    with app.app_context():
        other = db.session.get(User, people["other_owner"].id)
        assert tokens.revoke_token(other, public_id) == (None, False)
    assert load(app, public_id).revoked_at is None


def test_no_route_of_the_page_un_revokes_a_token(app, as_owner, created, clock):
    _plaintext, public_id = created
    as_owner.post(f"/admin/api-tokens/{public_id}/revoke")
    revoked = load(app, public_id)
    clock.advance(minutes=5)
    attempts = {"revoked_at": "", "revoked": "false", "action": "unrevoke", "name": "Revived"}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin"):
            continue
        path = re.sub(r"<[^>]+>", public_id, rule.rule)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            for headers in ({}, HX):
                response = as_owner.open(path, method=method, data=attempts, headers=headers)
                response.get_data()
                response.close()
                # Still signed in, so each attempt really reached the view.
                assert response.status_code != 401
                assert "/login" not in response.headers.get("Location", "")
                token = load(app, public_id)
                assert token.revoked_at == revoked.revoked_at, f"{method} {path}"
                assert token.revoked_by_id == revoked.revoked_by_id
    assert load(app, public_id).name == "Accounting Software"


def test_reusing_a_revoked_name_makes_a_new_token_and_leaves_the_old_one_revoked(
    app, as_owner, created
):
    plaintext, public_id = created
    as_owner.post(f"/admin/api-tokens/{public_id}/revoke")
    _response, new_plaintext = create_token_via_ui(as_owner, "Accounting Software")
    assert parse_token(new_plaintext).public_id != public_id
    assert load(app, public_id).revoked_at is not None
    with app.app_context():
        assert tokens.authenticate(plaintext).outcome == "revoked"
        assert tokens.authenticate(new_plaintext).ok


def test_a_revoked_token_cannot_be_renamed(app, people, created):
    _plaintext, public_id = created
    with app.app_context():
        owner = db.session.get(User, people["owner"].id)
        tokens.revoke_token(owner, public_id)
        with pytest.raises(tokens.TokenError):
            tokens.rename_token(owner, public_id, "Revived")
    assert load(app, public_id).revoked_at is not None


def test_no_code_clears_a_revocation():
    source_dir = Path(vasbox_dash.__file__).parent
    for path in source_dir.rglob("*.py"):
        source = path.read_text()
        assert not re.search(r"revoked_at\s*=\s*None", source), path
        assert not re.search(r"revoked_by_id\s*=\s*None", source), path
        assert not re.search(r"revoked_at\s*=\s*(null|sa\.null)\(\)", source), path


def test_created_audit_row_records_actor_ip_agent_token_and_name(app, client, people, clock):
    login(client, people["owner"])
    response = client.post(
        "/admin/api-tokens",
        data={"name": "POS System - Branch 1", "creation_key": "audit-create"},
        headers={**HX, "User-Agent": "AuditTest/1.0 (create)"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert response.status_code == 200
    [plaintext] = find_tokens(response.get_data(as_text=True))
    token = load(app, parse_token(plaintext).public_id)
    [row] = audit_rows(app, "token.created")
    assert row.business_id == people["owner"].business_id
    assert row.actor_user_id == people["owner"].id
    assert row.actor_token_id is None
    assert row.ip == "203.0.113.7"
    assert row.user_agent == "AuditTest/1.0 (create)"
    assert row.target_type == "token"
    assert row.target_id == token.public_id
    assert row.details["token_id"] == token.id
    assert row.details["name"] == "POS System - Branch 1"
    assert row.created_at == clock.now


def test_revoked_audit_row_records_the_revoking_request(app, as_owner, created, clock, people):
    _plaintext, public_id = created
    clock.advance(minutes=20)
    as_owner.post(
        f"/admin/api-tokens/{public_id}/revoke",
        headers={**HX, "User-Agent": "AuditTest/2.0 (revoke)"},
        environ_base={"REMOTE_ADDR": "198.51.100.23"},
    )
    token = load(app, public_id)
    [row] = audit_rows(app, "token.revoked")
    assert row.business_id == people["owner"].business_id
    assert row.actor_user_id == people["owner"].id
    assert row.ip == "198.51.100.23"
    assert row.user_agent == "AuditTest/2.0 (revoke)"
    assert row.target_type == "token"
    assert row.target_id == public_id
    assert row.details["token_id"] == token.id
    assert row.details["name"] == "Accounting Software"
    assert row.created_at == clock.now == token.revoked_at


def test_no_audit_column_holds_the_secret_or_its_hash(app, as_owner, created):
    plaintext, public_id = created
    as_owner.post(f"/admin/api-tokens/{public_id}/revoke")
    secret = parse_token(plaintext).secret
    token = load(app, public_id)
    rows = audit_rows(app, "token.created") + audit_rows(app, "token.revoked")
    assert len(rows) == 2
    for row in rows:
        for column in AuditEvent.__table__.columns:
            value = str(getattr(row, column.key))
            assert plaintext not in value
            assert secret not in value
            assert secret[:16] not in value
            assert token.secret_hash not in value


@pytest.mark.parametrize("action", ["create", "revoke"])
def test_a_failed_audit_write_leaves_nothing_half_done(
    app, as_owner, created, monkeypatch, caplog, action
):
    _plaintext, public_id = created

    def broken_record(*args, **kwargs):
        raise RuntimeError("audit storage unavailable")

    monkeypatch.setattr(audit, "record", broken_record)
    if action == "create":
        response, plaintext = create_token_via_ui(as_owner, "Never half made")
        assert plaintext is None
    else:
        response = as_owner.post(f"/admin/api-tokens/{public_id}/revoke", headers=HX)
    assert response.status_code == 500
    with app.app_context():
        names = db.session.scalars(select(ApiToken.name)).all()
        assert names == ["Accounting Software"]
        assert db.session.scalar(select(ApiToken.revoked_at)) is None
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action.like("token.%"))
            )
            == 1
        )
