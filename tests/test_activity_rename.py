"""Renaming a token from its detail page: inline with htmx, a plain form without
JavaScript, validation, names unique among active tokens, and the audit row."""

from __future__ import annotations

import pytest
from conftest import create_token_via_ui
from sqlalchemy import select

from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, AuditEvent
from vasbox_dash.security import parse_token

HX = {"HX-Request": "true"}


@pytest.fixture
def token(as_owner) -> str:
    _response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    return parse_token(plaintext).public_id


def name_of(app, public_id: str) -> str:
    with app.app_context():
        return db.session.scalar(select(ApiToken.name).where(ApiToken.public_id == public_id))


def renames(app) -> list[dict]:
    with app.app_context():
        return [
            {**event.details, "actor": event.actor_user_id, "target": event.target_id}
            for event in db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "token.renamed")
                .order_by(AuditEvent.id)
            )
        ]


def test_rename_button_opens_an_inline_form_with_htmx(as_owner, token):
    page = as_owner.get(f"/admin/api-tokens/{token}").get_data(as_text=True)
    assert f'hx-get="/admin/api-tokens/{token}/rename"' in page
    response = as_owner.get(f"/admin/api-tokens/{token}/rename", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="token-name"')
    assert 'value="Accounting Software"' in body
    assert f'hx-post="/admin/api-tokens/{token}/rename"' in body
    assert "<html" not in body


def test_rename_form_without_javascript_is_a_full_page(as_owner, token):
    response = as_owner.get(f"/admin/api-tokens/{token}/rename")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert f'action="/admin/api-tokens/{token}/rename"' in body
    assert 'name="csrf_token"' in body


def test_owner_renames_inline_and_the_rename_is_audited(app, as_owner, people, token):
    response = as_owner.post(
        f"/admin/api-tokens/{token}/rename", data={"name": "  Xero Books  "}, headers=HX
    )
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert ">Xero Books</h1>" in body
    assert "Renamed to “Xero Books”." in body
    assert 'hx-swap-oob="true"' in body
    assert name_of(app, token) == "Xero Books"
    assert renames(app) == [
        {
            "token_id": 1,
            "public_id": token,
            "from": "Accounting Software",
            "to": "Xero Books",
            "actor": people["owner"].id,
            "target": token,
        }
    ]
    log = as_owner.get("/admin/audit-log").get_data(as_text=True)
    assert f"Renamed token vbx_{token}… from “Accounting Software” to “Xero Books”." in log


def test_rename_works_without_javascript(app, as_owner, token):
    response = as_owner.post(f"/admin/api-tokens/{token}/rename", data={"name": "Xero Books"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/admin/api-tokens/{token}"
    page = as_owner.get(response.headers["Location"]).get_data(as_text=True)
    assert "Renamed to “Xero Books”." in page
    assert name_of(app, token) == "Xero Books"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Enter a name"),
        ("   ", "Enter a name"),
        ("x" * 81, "Use at most 80 characters (this name has 81)."),
        ("Line\nbreak", "cannot contain control characters"),
    ],
    ids=["empty", "blank", "too-long", "control-character"],
)
@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_invalid_names_are_refused_with_the_form_kept_open(
    app, as_owner, token, name, message, htmx
):
    response = as_owner.post(
        f"/admin/api-tokens/{token}/rename", data={"name": name}, headers=HX if htmx else {}
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert message in body
    assert 'aria-invalid="true"' in body
    assert ("<html" in body) is not htmx
    assert name_of(app, token) == "Accounting Software"
    assert renames(app) == []


def test_names_must_differ_from_other_active_tokens_ignoring_case(app, as_owner, token):
    create_token_via_ui(as_owner, "Reporting Script")
    response = as_owner.post(
        f"/admin/api-tokens/{token}/rename", data={"name": "REPORTING script"}, headers=HX
    )
    assert response.status_code == 422
    assert "An active token is already named “REPORTING script”." in response.get_data(as_text=True)
    assert name_of(app, token) == "Accounting Software"
    assert renames(app) == []


def test_a_revoked_tokens_name_can_be_reused(app, as_owner, token):
    _response, plaintext = create_token_via_ui(as_owner, "Old POS")
    as_owner.post(f"/admin/api-tokens/{parse_token(plaintext).public_id}/revoke")
    response = as_owner.post(f"/admin/api-tokens/{token}/rename", data={"name": "Old POS"})
    assert response.status_code == 303
    assert name_of(app, token) == "Old POS"


def test_a_revoked_token_cannot_be_renamed(app, as_owner, token):
    as_owner.post(f"/admin/api-tokens/{token}/revoke")
    response = as_owner.post(f"/admin/api-tokens/{token}/rename", data={"name": "New name"})
    assert response.status_code == 422
    assert "A revoked token cannot be renamed." in response.get_data(as_text=True)
    assert name_of(app, token) == "Accounting Software"
    form = as_owner.get(f"/admin/api-tokens/{token}/rename")
    assert form.status_code == 302
    assert form.headers["Location"] == f"/admin/api-tokens/{token}"


def test_keeping_the_same_name_changes_nothing(app, as_owner, token):
    response = as_owner.post(
        f"/admin/api-tokens/{token}/rename", data={"name": "Accounting Software"}
    )
    assert response.status_code == 303
    assert renames(app) == []


def test_cancel_puts_the_heading_back(as_owner, token):
    response = as_owner.get(f"/admin/api-tokens/{token}/name", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert ">Accounting Software</h1>" in body and "<form" not in body
    plain = as_owner.get(f"/admin/api-tokens/{token}/name")
    assert plain.status_code == 302
    assert plain.headers["Location"] == f"/admin/api-tokens/{token}"


def test_the_new_name_shows_on_the_api_tokens_page(as_owner, token):
    as_owner.post(f"/admin/api-tokens/{token}/rename", data={"name": "Xero Books"})
    listing = as_owner.get("/admin/api-tokens").get_data(as_text=True)
    assert f'<a href="/admin/api-tokens/{token}">Xero Books</a>' in listing
    assert "Accounting Software" not in listing
