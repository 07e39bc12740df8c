"""Bearer authentication, the creator's permissions, business isolation and rate limits
for the API under /api/v1."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from conftest import login, make_config
from live import bearer, issue_token_for, receipt_body
from sqlalchemy import func, select

from vasbox_dash import receipts, reports, tokens, usage
from vasbox_dash.accounts import deactivate_user, set_role
from vasbox_dash.extensions import db
from vasbox_dash.models import AuditEvent, Receipt, TokenUsage, User
from vasbox_dash.security import CHECKSUM_LENGTH, checksum, parse_token

PROBLEM = "application/problem+json"
CHALLENGE = 'Bearer realm="vasbox"'
INVALID = 'Bearer realm="vasbox", error="invalid_token"'


@pytest.fixture
def owner_token(app, people) -> str:
    return issue_token_for(app, people["owner"].id, "Accounting Software")


def assert_problem(response, status: int) -> dict:
    """The response is RFC 9457 problem+json with the status and a request id."""
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def receipt_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Receipt))


def usage_rows(app) -> list[TokenUsage]:
    with app.app_context():
        usage.flush()
        return list(db.session.scalars(select(TokenUsage).order_by(TokenUsage.id)))


def wrong_secret(token: str) -> str:
    body = token[:-CHECKSUM_LENGTH]
    body = body[:-1] + ("A" if body[-1] != "A" else "B")
    return body + checksum(body)


def test_me_answers_with_the_business_creator_and_token(client, people, owner_token):
    response = client.get("/api/v1/me", headers=bearer(owner_token))
    assert response.status_code == 200
    body = response.get_json()
    assert body["business"] == {
        "id": people["owner"].business_id,
        "name": "Acme Stores",
        "timezone": "Africa/Harare",
    }
    assert body["creator"] == {"id": people["owner"].id, "name": "Olivia Owner", "role": "owner"}
    assert body["token"]["name"] == "Accounting Software"
    assert body["token"]["id"] == "vbx_" + parse_token(owner_token).public_id
    assert owner_token not in response.get_data(as_text=True)
    assert body["permissions"] == ["receipts:read", "receipts:write", "reports:read"]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_name_is_case_insensitive(client, owner_token, scheme):
    response = client.get("/api/v1/me", headers={"Authorization": f"{scheme} {owner_token}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Token vbx_abc"},
        {"X-Api-Key": "vbx_whatever"},
    ],
    ids=["no header", "empty", "basic", "other scheme", "other header"],
)
def test_request_without_bearer_credentials_is_challenged(client, headers):
    response = client.get("/api/v1/me", headers=headers)
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert "Authorization: Bearer" in body["detail"]


def test_every_kind_of_bad_token_gets_the_same_401(app, client, people, owner_token):
    revoked = issue_token_for(app, people["owner"].id, "Old POS")
    with app.app_context():
        tokens.revoke_token(
            SimpleNamespace(id=people["owner"].id, business_id=people["owner"].business_id),
            parse_token(revoked).public_id,
        )
    cashier_token = issue_token_for(app, people["cashier"].id, "Till 2")
    with app.app_context():
        deactivate_user(people["cashier"].email)
    valid_body = owner_token[:-CHECKSUM_LENGTH]
    unknown = "vbx_zzzzzzzz" + valid_body[12:]
    cases = {
        "malformed": "vbx_not-a-token",
        "bad checksum": valid_body + ("A" * CHECKSUM_LENGTH),
        "unknown id": unknown + checksum(unknown),
        "wrong secret": wrong_secret(owner_token),
        "revoked": revoked,
        "creator deactivated": cashier_token,
        "bare bearer": "",
    }
    bodies = {}
    for name, value in cases.items():
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {value}"})
        body = assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == INVALID, name
        bodies[name] = {k: v for k, v in body.items() if k != "request_id"}
    assert len({repr(sorted(b.items())) for b in bodies.values()}) == 1
    assert bodies["revoked"]["type"].endswith("/invalid-token")


def test_failed_attempts_record_their_reason_only_in_usage(app, client, people, owner_token):
    client.get("/api/v1/me", headers=bearer(wrong_secret(owner_token)))
    client.get("/api/v1/me", headers=bearer("vbx_zzzzzzzzNOTAREALTOKEN"))
    rows = usage_rows(app)
    assert [(r.outcome, r.status) for r in rows] == [("wrong_secret", 401), ("malformed", 401)]
    owner_token_id = rows[0].token_id
    assert owner_token_id is not None
    assert rows[1].token_id is None and rows[1].public_id == "zzzzzzzz"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/me?access_token={token}",
        "/api/v1/receipts?note={token}",
        "/api/v1/me?x=%76bx_{rest}",
    ],
)
def test_token_in_the_query_string_is_refused_and_never_logged(
    app, client, owner_token, caplog, path
):
    caplog.set_level(logging.DEBUG)
    url = path.format(token=owner_token, rest=owner_token[4:])
    response = client.get(url, headers=bearer(owner_token))
    body = assert_problem(response, 400)
    assert body["type"].endswith("/token-outside-header")
    assert "never in a URL" in body["detail"]
    assert owner_token not in response.get_data(as_text=True)
    rows = usage_rows(app)
    assert rows[-1].outcome == "token_in_query" and rows[-1].status == 400
    assert owner_token not in caplog.text and owner_token[12:40] not in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {"token": "{token}"}},
        {"data": {"access_token": "{token}"}},
        {"data": "note=%76bx_{rest}", "content_type": "application/x-www-form-urlencoded"},
    ],
    ids=["json", "form", "encoded form"],
)
def test_token_in_the_body_is_refused_and_nothing_is_created(app, client, owner_token, kwargs):
    def fill(value):
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, str):
            return value.format(token=owner_token, rest=owner_token[4:])
        return value

    response = client.post("/api/v1/receipts", **{k: fill(v) for k, v in kwargs.items()})
    assert_problem(response, 400)
    assert receipt_count(app) == 0
    assert usage_rows(app)[-1].outcome == "token_in_body"


def test_a_session_cookie_never_authenticates_the_api(app, client, people):
    assert login(client, people["owner"]).status_code == 303
    assert client.get("/admin/api-tokens").status_code == 200  # the cookie works for pages
    response = client.get("/api/v1/me")
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    created = client.post("/api/v1/receipts", json=receipt_body())
    assert_problem(created, 401)
    assert receipt_count(app) == 0
    assert client.get("/api/v1/receipts").status_code == 401


def test_revoked_token_is_refused_on_the_very_next_request(app, client, people, owner_token):
    assert client.get("/api/v1/me", headers=bearer(owner_token)).status_code == 200
    with app.app_context():
        tokens.revoke_token(
            SimpleNamespace(id=people["owner"].id, business_id=people["owner"].business_id),
            parse_token(owner_token).public_id,
        )
    response = client.get("/api/v1/me", headers=bearer(owner_token))
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == INVALID
    assert (
        client.post(
            "/api/v1/receipts", json=receipt_body(), headers=bearer(owner_token)
        ).status_code
        == 401
    )
    assert receipt_count(app) == 0


def test_each_use_of_a_revoked_token_is_a_security_event_for_the_owner(
    app, client, people, owner_token
):
    public_id = parse_token(owner_token).public_id
    with app.app_context():
        tokens.revoke_token(
            SimpleNamespace(id=people["owner"].id, business_id=people["owner"].business_id),
            public_id,
        )
    for _ in range(2):
        client.get("/api/v1/me", headers={**bearer(owner_token), "User-Agent": "OldPOS/1.0"})
    assert usage_rows(app)[-1].outcome == "revoked"
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "token.revoked_used")
        ).all()
        assert len(events) == 2
        event = events[0]
        assert event.business_id == people["owner"].business_id
        assert event.actor_token_id is not None
        assert event.details["public_id"] == public_id
        assert event.user_agent == "OldPOS/1.0"
        assert owner_token not in repr(event.details)


def test_deactivated_creators_token_is_refused(app, client, people):
    manager_token = issue_token_for(app, people["manager"].id)
    assert client.get("/api/v1/me", headers=bearer(manager_token)).status_code == 200
    with app.app_context():
        deactivate_user(people["manager"].email)
    response = client.get("/api/v1/me", headers=bearer(manager_token))
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == INVALID
    assert usage_rows(app)[-1].outcome == "creator_inactive"


ROUTES = {
    "me": ("GET", "/api/v1/me"),
    "create receipt": ("POST", "/api/v1/receipts"),
    "list receipts": ("GET", "/api/v1/receipts"),
    "sales report": ("GET", "/api/v1/reports/sales?from=2026-12-01&to=2026-12-02"),
}
ALLOWED = {
    "owner": {"me", "create receipt", "list receipts", "sales report"},
    "manager": {"me", "create receipt", "list receipts", "sales report"},
    "cashier": {"me", "create receipt", "list receipts"},
}


@pytest.mark.parametrize("role", sorted(ALLOWED))
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_token_may_do_what_its_creators_role_allows(app, client, people, role, route):
    token = issue_token_for(app, people[role].id)
    method, path = ROUTES[route]
    kwargs = {"json": receipt_body()} if method == "POST" else {}
    response = client.open(path, method=method, headers=bearer(token), **kwargs)
    if route in ALLOWED[role]:
        assert response.status_code in (200, 201)
    else:
        body = assert_problem(response, 403)
        assert response.headers["WWW-Authenticate"] == (
            'Bearer realm="vasbox", error="insufficient_scope", scope="reports:read"'
        )
        assert body["required_permission"] == "reports:read"
        assert "cashier role" in body["detail"]


def test_permissions_follow_the_creators_current_role(app, client, people):
    token = issue_token_for(app, people["cashier"].id)
    report = "/api/v1/reports/sales?from=2026-12-01&to=2026-12-01"
    assert client.get(report, headers=bearer(token)).status_code == 403
    with app.app_context():
        set_role(people["cashier"].email, "manager")
    assert client.get(report, headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(token)).get_json()["creator"]["role"] == (
        "manager"
    )
    with app.app_context():
        set_role(people["cashier"].email, "cashier")
    assert client.get(report, headers=bearer(token)).status_code == 403


def test_a_write_rechecks_the_role_inside_its_transaction(app, client, people, monkeypatch):
    token = issue_token_for(app, people["manager"].id)
    parse = receipts.parse_receipt

    def lose_permission_then_parse(data, now=None):
        # Runs after authentication, before the write transaction: the creator loses
        # the write permission at that very moment (no business role lacks it today,
        # so the role is set to one that has no permissions at all).
        user = db.session.get(User, people["manager"].id)
        user.role = "support"
        db.session.commit()
        return parse(data, now)

    monkeypatch.setattr("vasbox_dash.api.parse_receipt", lose_permission_then_parse)
    response = client.post("/api/v1/receipts", json=receipt_body(), headers=bearer(token))
    assert_problem(response, 403)
    assert receipt_count(app) == 0


def test_a_write_made_as_the_token_is_revoked_is_refused(app, client, people, monkeypatch):
    token = issue_token_for(app, people["owner"].id)
    parse = receipts.parse_receipt

    def revoke_then_parse(data, now=None):
        tokens.revoke_token(
            SimpleNamespace(id=people["owner"].id, business_id=people["owner"].business_id),
            parse_token(token).public_id,
        )
        return parse(data, now)

    monkeypatch.setattr("vasbox_dash.api.parse_receipt", revoke_then_parse)
    response = client.post("/api/v1/receipts", json=receipt_body(), headers=bearer(token))
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == INVALID
    assert receipt_count(app) == 0
    with app.app_context():
        assert not db.session.scalar(
            select(func.count()).where(AuditEvent.action == "receipt.created")
        )


def test_another_business_cannot_see_or_reach_our_receipts(app, client, people, owner_token):
    created = client.post("/api/v1/receipts", json=receipt_body(), headers=bearer(owner_token))
    receipt_id = created.get_json()["id"]
    other = issue_token_for(app, people["other_owner"].id)
    response = client.get(f"/api/v1/receipts/{receipt_id}", headers=bearer(other))
    body = assert_problem(response, 404)
    assert str(receipt_id) in body["detail"]
    assert client.get("/api/v1/receipts", headers=bearer(other)).get_json()["data"] == []
    report = client.get(
        "/api/v1/reports/sales?from=2026-12-01&to=2026-12-31", headers=bearer(other)
    ).get_json()
    assert report["days"] == [] and report["totals"] == []
    assert client.get(
        f"/api/v1/receipts/{receipt_id}", headers=bearer(owner_token)
    ).status_code == (200)


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/api/v1/no-such-thing", 404),
        ("GET", "/api/v1/receipts/99999", 404),
        ("GET", "/api/v1/receipts/99999999999999", 404),
        ("DELETE", "/api/v1/me", 405),
        ("PUT", "/api/v1/receipts", 405),
    ],
)
def test_unknown_paths_and_methods_are_problem_json(client, owner_token, method, path, status):
    response = client.open(path, method=method, headers=bearer(owner_token))
    assert_problem(response, status)
    if status == 405:
        assert "Allow" in response.headers


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/v1/me?verbose=1"),
        ("POST", "/api/v1/receipts?dry_run=1"),
        ("GET", "/api/v1/receipts?frm=2026-12-01"),
        ("GET", "/api/v1/receipts/1?expand=lines"),
        ("GET", "/api/v1/reports/sales?from=2026-12-01&to=2026-12-01&format=csv"),
        ("GET", "/api/v1/openapi.json?v=2"),
    ],
)
def test_an_unknown_query_parameter_is_refused_not_ignored(app, client, owner_token, method, path):
    kwargs = {"json": receipt_body()} if method == "POST" else {}
    response = client.open(path, method=method, headers=bearer(owner_token), **kwargs)
    body = assert_problem(response, 400)
    assert body["type"].endswith("/invalid-parameters")
    (error,) = body["errors"]
    assert error["parameter"] == path.rsplit("&", 1)[-1].rsplit("?", 1)[-1].split("=")[0]
    assert receipt_count(app) == 0


def test_openapi_document_needs_no_token(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"].startswith("3.1")


class TestRateLimits:
    @pytest.fixture
    def app_config(self, database_url, clock):
        return make_config(
            database_url,
            CLOCK=clock,
            API_RATE_LIMIT="3 per minute",
            API_AUTH_FAILURE_LIMIT="3 per minute",
        )

    def test_a_token_over_its_limit_gets_429_with_retry_after(self, app, client, people):
        busy = issue_token_for(app, people["owner"].id, "Busy script")
        quiet = issue_token_for(app, people["owner"].id, "Quiet script")
        for _ in range(3):
            assert client.get("/api/v1/me", headers=bearer(busy)).status_code == 200
        response = client.get("/api/v1/me", headers=bearer(busy))
        body = assert_problem(response, 429)
        assert int(response.headers["Retry-After"]) >= 1
        assert "limit" in body["detail"]
        assert client.get("/api/v1/me", headers=bearer(quiet)).status_code == 200
        assert usage_rows(app)[3].outcome == "rate_limited"

    def test_an_address_with_too_many_failures_is_throttled(self, app, client, people):
        good = issue_token_for(app, people["owner"].id)
        bad = wrong_secret(good)
        for _ in range(3):
            assert client.get("/api/v1/me", headers=bearer(bad)).status_code == 401
        response = client.get("/api/v1/me", headers=bearer(bad))
        assert_problem(response, 429)
        assert int(response.headers["Retry-After"]) >= 1
        # Even a good token waits from that address; other addresses are not affected.
        assert client.get("/api/v1/me", headers=bearer(good)).status_code == 429
        elsewhere = app.test_client()
        elsewhere.environ_base["REMOTE_ADDR"] = "198.51.100.7"
        assert elsewhere.get("/api/v1/me", headers=bearer(good)).status_code == 200
        assert [r.outcome for r in usage_rows(app)][-2:] == ["ip_throttled", "ok"]


def test_no_token_reaches_the_logs_responses_or_stored_rows(
    app, client, people, owner_token, caplog, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    secret = parse_token(owner_token).secret
    responses = [
        client.get("/api/v1/me", headers=bearer(owner_token)),
        client.post("/api/v1/receipts", json=receipt_body(), headers=bearer(owner_token)),
        client.post("/api/v1/receipts", json={"branch": 1}, headers=bearer(owner_token)),
        client.get("/api/v1/me", headers=bearer(wrong_secret(owner_token))),
        client.get(f"/api/v1/me?access_token={owner_token}"),
        client.get(f"/api/v1/{owner_token}", headers=bearer(owner_token)),
    ]

    def broken(*args, **kwargs):
        raise RuntimeError("the report query failed")

    monkeypatch.setattr(reports, "sales_report", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    crashed = client.get(
        "/api/v1/reports/sales?from=2026-12-01&to=2026-12-01", headers=bearer(owner_token)
    )
    body = assert_problem(crashed, 500)
    assert body["request_id"] in body["detail"]
    responses.append(crashed)
    with app.app_context():
        tokens.revoke_token(
            SimpleNamespace(id=people["owner"].id, business_id=people["owner"].business_id),
            parse_token(owner_token).public_id,
        )
    responses.append(client.get("/api/v1/me", headers=bearer(owner_token)))
    usage_rows(app)

    for response in responses:
        assert secret not in response.get_data(as_text=True)
    assert "vbx_" not in caplog.text.replace("vbx_[REDACTED]", "")
    assert secret not in caplog.text
    with app.app_context():
        stored = [
            repr(row.__dict__)
            for model in (TokenUsage, AuditEvent, Receipt)
            for row in db.session.scalars(select(model))
        ]
    assert stored and not any(secret in text for text in stored)


class TestWithCsrfProtectionOn:
    @pytest.fixture
    def app_config(self, database_url, clock):
        return make_config(database_url, CLOCK=clock, WTF_CSRF_ENABLED=True)

    def test_api_writes_need_a_bearer_token_and_no_csrf_token(self, app, client, people):
        token = issue_token_for(app, people["cashier"].id)
        created = client.post("/api/v1/receipts", json=receipt_body(), headers=bearer(token))
        assert created.status_code == 201
        assert_problem(client.post("/api/v1/no-such-thing", headers=bearer(token)), 404)
        assert_problem(client.post("/api/v1/receipts", json=receipt_body()), 401)
        assert receipt_count(app) == 1
