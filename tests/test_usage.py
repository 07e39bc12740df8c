"""Usage tracking: one record per API request with a recognisable token, written in
batches off the request path; last-used at most once a minute; retention pruning."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from conftest import login, make_config
from live import bearer, issue_token_for, receipt_body
from sqlalchemy import func, select

from vasbox_dash import create_app, usage
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, TokenUsage
from vasbox_dash.security import parse_token


@pytest.fixture
def token(app, people) -> str:
    return issue_token_for(app, people["owner"].id, "Accounting Software")


def rows(app) -> list[TokenUsage]:
    with app.app_context():
        return list(db.session.scalars(select(TokenUsage).order_by(TokenUsage.id)))


def stored_token(app, token: str) -> ApiToken:
    with app.app_context():
        row = db.session.scalar(
            select(ApiToken).where(ApiToken.public_id == parse_token(token).public_id)
        )
        db.session.expunge(row)
        return row


def test_usage_is_buffered_and_written_on_flush(app, client, token):
    response = client.post(
        "/api/v1/receipts",
        json=receipt_body(branch="Secret Branch Name"),
        headers={
            **bearer(token),
            "Idempotency-Key": "idem-key-123",
            "User-Agent": "AcmeBooks/2.1",
            "X-Custom": "header value",
        },
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert response.status_code == 201
    # Nothing is written while the request runs: the cost stays off the hot path.
    assert rows(app) == []
    assert usage.recorder(app).pending() == 1
    assert usage.flush(app) == 1
    (row,) = rows(app)
    assert row.public_id == parse_token(token).public_id
    assert row.token_id == stored_token(app, token).id
    assert row.business_id is not None
    assert (row.method, row.route, row.status, row.outcome) == (
        "POST",
        "/api/v1/receipts",
        201,
        "ok",
    )
    assert row.ip == "203.0.113.9" and row.user_agent == "AcmeBooks/2.1"
    assert row.duration_ms >= 0
    assert row.request_id == response.headers["X-Request-ID"]
    stored = repr(row.__dict__)
    for never in ("Secret Branch Name", "idem-key-123", "header value", token, "Bearer"):
        assert never not in stored


def test_routes_are_recorded_as_templates_not_paths(app, client, token):
    client.get("/api/v1/receipts/12345", headers=bearer(token))
    client.get("/api/v1/nowhere", headers=bearer(token))
    usage.flush(app)
    assert [(r.route, r.status, r.outcome) for r in rows(app)] == [
        ("/api/v1/receipts/<int:receipt_id>", 404, "ok"),
        ("(no route)", 404, "no_route"),
    ]


def test_requests_without_a_recognisable_token_leave_no_usage(app, client):
    client.get("/api/v1/me")
    client.get("/api/v1/me", headers={"Authorization": "Basic abc"})
    client.get("/api/v1/me", headers={"Authorization": "Bearer not-a-token"})
    client.get("/api/v1/openapi.json")
    client.get("/healthz")
    assert usage.flush(app) == 0
    assert rows(app) == []


def test_an_unknown_token_is_recorded_without_a_token_id(app, client, token):
    unknown = "vbx_zzzzzzzz" + token[12:]
    client.get("/api/v1/me", headers=bearer(unknown))
    usage.flush(app)
    (row,) = rows(app)
    assert row.token_id is None and row.outcome in {"malformed", "unknown_token"}


def test_last_used_is_written_at_most_once_a_minute(app, client, clock, token):
    def use(agent: str, ip: str):
        response = client.get(
            "/api/v1/me",
            headers={**bearer(token), "User-Agent": agent},
            environ_base={"REMOTE_ADDR": ip},
        )
        assert response.status_code == 200
        usage.flush(app)

    assert stored_token(app, token).last_used_at is None
    start = clock.now
    use("Books/1", "192.0.2.1")
    first = stored_token(app, token)
    assert first.last_used_at == start
    assert (first.last_used_ip, first.last_used_user_agent) == ("192.0.2.1", "Books/1")

    clock.advance(seconds=30)
    use("Books/2", "192.0.2.2")
    clock.advance(seconds=29)
    use("Books/3", "192.0.2.3")
    unchanged = stored_token(app, token)
    assert unchanged.last_used_at == start and unchanged.last_used_user_agent == "Books/1"

    clock.advance(seconds=2)  # 61 seconds after the first write
    use("Books/4", "192.0.2.4")
    later = stored_token(app, token)
    assert later.last_used_at == start + timedelta(seconds=61)
    assert (later.last_used_ip, later.last_used_user_agent) == ("192.0.2.4", "Books/4")
    assert len(rows(app)) == 4  # every request is still counted in usage


def test_last_used_is_not_moved_by_failed_attempts(app, client, clock, token):
    bad = token[:-1] + ("A" if token[-1] != "A" else "B")
    client.get("/api/v1/me", headers=bearer(bad))
    usage.flush(app)
    assert stored_token(app, token).last_used_at is None


def test_the_api_tokens_page_shows_the_last_use(app, client, people, clock, token):
    client.get("/api/v1/me", headers={**bearer(token), "User-Agent": "AcmeBooks/2.1"})
    usage.flush(app)
    clock.advance(minutes=5)
    login(client, people["owner"])
    page = client.get("/admin/api-tokens").get_data(as_text=True)
    assert "5 minutes ago" in page


class TestBufferLimit:
    @pytest.fixture
    def app_config(self, database_url, clock):
        return make_config(database_url, CLOCK=clock, USAGE_BUFFER_MAX=3)

    def test_a_full_buffer_is_written_without_waiting(self, app, client, token):
        for _ in range(3):
            client.get("/api/v1/me", headers=bearer(token))
        assert len(rows(app)) == 3
        assert usage.recorder(app).pending() == 0


def test_events_survive_a_failed_write_and_go_out_with_the_next(app, client, token, monkeypatch):
    client.get("/api/v1/me", headers=bearer(token))
    real_write = usage._write

    def failing(batch):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(usage, "_write", failing)
    with pytest.raises(RuntimeError):
        usage.flush(app)
    assert usage.recorder(app).pending() == 1
    monkeypatch.setattr(usage, "_write", real_write)
    client.get("/api/v1/me", headers=bearer(token))
    assert usage.flush(app) == 2
    assert len(rows(app)) == 2


def server_app(database_url: str, clock, interval: float):
    """A second app on the test database, configured like a server: background flushing."""
    config = make_config(
        database_url, CLOCK=clock, USAGE_BACKGROUND_FLUSH=True, USAGE_FLUSH_INTERVAL=interval
    )
    return create_app(config)


def test_the_background_thread_writes_usage_by_itself(database_url, clock, people, app):
    server = create_app(
        make_config(
            database_url, CLOCK=clock, USAGE_BACKGROUND_FLUSH=True, USAGE_FLUSH_INTERVAL=0.05
        )
    )
    try:
        plaintext = issue_token_for(server, people["owner"].id)
        assert server.test_client().get("/api/v1/me", headers=bearer(plaintext)).status_code == 200
        deadline = time.monotonic() + 30
        while not rows(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(rows(server)) == 1
    finally:
        usage.recorder(server).close()
        with server.app_context():
            db.engine.dispose()


def test_closing_the_recorder_writes_what_is_left(database_url, clock, people, app):
    server = create_app(
        make_config(
            database_url, CLOCK=clock, USAGE_BACKGROUND_FLUSH=True, USAGE_FLUSH_INTERVAL=3600
        )
    )
    try:
        plaintext = issue_token_for(server, people["owner"].id)
        for _ in range(3):
            server.test_client().get("/api/v1/me", headers=bearer(plaintext))
        usage.recorder(server).close()
        assert len(rows(server)) == 3
    finally:
        with server.app_context():
            db.engine.dispose()


def add_usage(app, when, count: int = 1) -> None:
    with app.app_context():
        for _ in range(count):
            db.session.add(
                TokenUsage(
                    created_at=when,
                    public_id="abcdefgh",
                    method="GET",
                    route="/api/v1/me",
                    status=200,
                    outcome="ok",
                    duration_ms=1,
                )
            )
        db.session.commit()


def test_prune_usage_removes_records_older_than_the_retention(app, clock):
    add_usage(app, clock.now - timedelta(days=91), count=3)
    add_usage(app, clock.now - timedelta(days=89), count=2)
    result = app.test_cli_runner().invoke(args=["prune-usage"])
    assert result.exit_code == 0, result.output
    assert "Removed 3 API usage record(s) older than 90 days." in result.output
    assert len(rows(app)) == 2
    result = app.test_cli_runner().invoke(args=["prune-usage", "--days", "30"])
    assert "Removed 2" in result.output
    assert rows(app) == []


def test_prune_usage_works_through_many_records_in_batches(app, clock, monkeypatch):
    monkeypatch.setattr(usage, "PRUNE_BATCH", 4)
    add_usage(app, clock.now - timedelta(days=100), count=10)
    with app.app_context():
        assert usage.prune(90) == 10
        assert not db.session.scalar(select(func.count()).select_from(TokenUsage))


@pytest.mark.parametrize("days", ["0", "-5", "soon"])
def test_prune_usage_refuses_a_nonsense_retention(app, days):
    result = app.test_cli_runner().invoke(args=["prune-usage", "--days", days])
    assert result.exit_code != 0
    assert "--days" in result.output
