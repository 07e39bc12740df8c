"""A created token's secret is shown exactly once: never stored, logged or rendered again."""

from __future__ import annotations

import logging

import pytest
from conftest import create_token_via_ui, find_tokens
from sqlalchemy import select, text

import vasbox_dash
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken
from vasbox_dash.security import parse_token

HX = {"HX-Request": "true"}


def dump_database() -> str:
    """Every column of every row of every table, as stored (raw SQL) and as loaded."""
    parts = []
    for table in db.metadata.sorted_tables:
        raw_rows = db.session.execute(text(f'SELECT * FROM "{table.name}"')).all()
        typed_rows = db.session.execute(select(table)).all()
        for raw, typed in zip(raw_rows, typed_rows, strict=True):
            for column, raw_value, value in zip(table.columns, raw, typed, strict=True):
                parts.append(f"{table.name}.{column.name}={raw_value!r}|{value!s}")
    db.session.rollback()
    return "\n".join(parts)


def secret_fragments(secret: str, size: int = 16) -> list[str]:
    """Every 16-character window of the secret: a truncated or split copy is a leak too."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_no_secret(haystack: str, plaintext: str, where: str) -> None:
    secret = parse_token(plaintext).secret
    assert plaintext not in haystack, f"token found in {where}"
    assert plaintext.encode().hex() not in haystack, f"hex-encoded token found in {where}"
    for fragment in secret_fragments(secret):
        assert fragment not in haystack, f"part of the secret found in {where}"


@pytest.fixture
def created(app, as_owner):
    """A token created through the dialog: (create response, plaintext, public id)."""
    response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    assert response.status_code == 200
    assert plaintext is not None
    return response, plaintext, parse_token(plaintext).public_id


def test_only_the_hmac_of_the_secret_is_stored(app, created):
    _response, plaintext, public_id = created
    with app.app_context():
        dump = dump_database()
        row = db.session.scalar(select(ApiToken).where(ApiToken.public_id == public_id))
    # The dump really holds the token's row: its public id and HMAC are in it.
    assert f"api_tokens.public_id='{public_id}'" in dump
    assert row.secret_hash in dump
    assert len(row.secret_hash) == 64
    assert_no_secret(dump, plaintext, "the database")


def test_database_holds_no_secret_after_the_token_is_used_listed_and_revoked(
    app, as_owner, created
):
    _response, plaintext, public_id = created
    as_owner.get("/admin/api-tokens")
    as_owner.get("/admin/api-tokens/times", headers=HX)
    as_owner.get(f"/admin/api-tokens/{public_id}/revoke")
    assert as_owner.post(f"/admin/api-tokens/{public_id}/revoke").status_code == 303
    with app.app_context():
        dump = dump_database()
    assert "token.revoked" in dump
    assert_no_secret(dump, plaintext, "the database")


def test_secret_is_in_exactly_one_response_the_create_response(app, as_owner):
    responses = [
        ("list before", as_owner.get("/admin/api-tokens")),
        ("dialog", as_owner.get("/admin/api-tokens/new", headers=HX)),
    ]
    create_response, plaintext = create_token_via_ui(as_owner, "POS System - Branch 1")
    assert plaintext is not None
    public_id = parse_token(plaintext).public_id
    responses += [
        ("create", create_response),
        ("list after", as_owner.get("/admin/api-tokens")),
        ("list again", as_owner.get("/admin/api-tokens")),
        ("list with HX-Request", as_owner.get("/admin/api-tokens", headers=HX)),
        ("new page", as_owner.get("/admin/api-tokens/new")),
        ("row", as_owner.get(f"/admin/api-tokens/{public_id}/row", headers=HX)),
        ("times", as_owner.get("/admin/api-tokens/times", headers=HX)),
        ("confirm fragment", as_owner.get(f"/admin/api-tokens/{public_id}/revoke", headers=HX)),
        ("confirm page", as_owner.get(f"/admin/api-tokens/{public_id}/revoke")),
        ("home", as_owner.get("/", follow_redirects=True)),
        ("revoke", as_owner.post(f"/admin/api-tokens/{public_id}/revoke", headers=HX)),
        ("list after revoke", as_owner.get("/admin/api-tokens")),
        ("revoked row", as_owner.get(f"/admin/api-tokens/{public_id}/row", headers=HX)),
    ]
    secret = parse_token(plaintext).secret
    showing_token = []
    showing_secret = []
    for label, response in responses:
        assert response.status_code < 400, label
        everything = response.get_data(as_text=True) + str(response.headers)
        if plaintext in everything:
            showing_token.append(label)
        if secret in everything:
            showing_secret.append(label)
    assert showing_token == ["create"]
    assert showing_secret == ["create"]
    # In the create response it is rendered once, in the read-only field.
    assert create_response.get_data(as_text=True).count(plaintext) == 1


def test_list_page_after_create_shows_only_the_public_identifier(as_owner, created):
    _response, plaintext, public_id = created
    page = as_owner.get("/admin/api-tokens").get_data(as_text=True)
    assert f"vbx_{public_id}…" in page
    assert find_tokens(page) == []
    assert plaintext[: 12 + 4] not in page


def test_session_cookie_carries_no_secret(app, client, as_owner, created):
    response, plaintext, _public_id = created
    set_cookies = " ".join(response.headers.getlist("Set-Cookie"))
    assert_no_secret(set_cookies, plaintext, "Set-Cookie")
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    session_data = app.session_interface.get_signing_serializer(app).loads(cookie.value)
    assert_no_secret(repr(session_data) + cookie.value, plaintext, "the session")


def test_no_log_record_holds_the_secret(app, as_owner, caplog, monkeypatch):
    # Turn off the redaction filter, so this proves the code never logs the secret rather
    # than that the filter hid it.
    monkeypatch.setattr(vasbox_dash.RedactTokens, "filter", lambda self, record: True)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    response, plaintext = create_token_via_ui(as_owner, "Reporting Script")
    assert response.status_code == 200
    public_id = parse_token(plaintext).public_id
    as_owner.get("/admin/api-tokens")
    as_owner.get(f"/admin/api-tokens/{public_id}/row", headers=HX)
    as_owner.post(f"/admin/api-tokens/{public_id}/revoke", headers=HX)
    # A refused create goes through the logs too.
    as_owner.post("/admin/api-tokens", data={"name": ""}, headers=HX)
    logged = "\n".join(
        f"{record.name} {record.levelname} {record.getMessage()} {record.exc_text or ''}"
        for record in caplog.records
    )
    # The capture really saw the database writes, with their parameters.
    assert "INSERT INTO api_tokens" in logged
    assert public_id in logged
    assert_no_secret(logged + caplog.text, plaintext, "the logs")


def test_redaction_filter_scrubs_a_token_that_reaches_a_log_handler(app):
    # Defence in depth behind the test above: a token logged by mistake is still scrubbed.
    with app.app_context():
        plaintext = "vbx_k7q2m9xd" + "A" * 43 + "abcdef"
        record = logging.LogRecord("x", logging.WARNING, __file__, 1, "got %s", (plaintext,), None)
        assert vasbox_dash.RedactTokens().filter(record)
        assert plaintext not in record.getMessage()
        assert "vbx_[REDACTED]" in record.getMessage()
