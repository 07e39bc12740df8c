"""Real HTTP against gunicorn with several workers: revocation while a token is in use,
concurrent idempotent retries, and usage records written by the workers themselves."""

from __future__ import annotations

import html
import http.cookiejar
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from conftest import PASSWORD
from live import (
    LIVE_BACKENDS,
    REDIS_URL,
    LiveServer,
    call,
    live_database,
    receipt_body,
    seed_business,
)
from sqlalchemy import func, select

from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, AuditEvent, Receipt, TokenUsage

pytestmark = pytest.mark.live

# Generous limits: these tests are about revocation and idempotency, not rate limiting.
LIMITS = {
    "VASBOX_API_RATE_LIMIT": "100000 per minute",
    "VASBOX_API_AUTH_FAILURE_LIMIT": "100000 per minute",
}
CSRF_INPUT = re.compile(r'<input[^>]*name="csrf_token"[^>]*>')
VALUE = re.compile(r'value="([^"]+)"')


@pytest.fixture(scope="module", params=LIVE_BACKENDS)
def live_db(request, tmp_path_factory):
    with live_database(request.param, tmp_path_factory.mktemp("live-db")) as url:
        yield url


@pytest.fixture(scope="module")
def server(live_db, tmp_path_factory):
    """gunicorn with 3 workers sharing the rate-limit storage in Redis, as in production."""
    started = LiveServer.start(
        live_db,
        tmp_path_factory.mktemp("live-server"),
        workers=3,
        ratelimit_url=REDIS_URL,
        extra_env=LIMITS,
    )
    yield started
    started.stop()


@pytest.fixture(scope="module")
def state(server):
    """An app on the server's database, to seed and to read what was stored."""
    return server.app()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """A signed-in owner using the real pages: cookies, CSRF token and forms."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect()
        )

    def request(self, path: str, form: dict | None = None) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base + path, data=data, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def csrf(self, page: str) -> str:
        return html.unescape(VALUE.search(CSRF_INPUT.search(page).group(0)).group(1))

    def sign_in(self, email: str) -> None:
        _, page = self.request("/login")
        status, _ = self.request(
            "/login", {"email": email, "password": PASSWORD, "csrf_token": self.csrf(page)}
        )
        assert status == 303

    def revoke(self, public_id: str) -> int:
        _, page = self.request("/admin/api-tokens")
        status, _ = self.request(
            f"/admin/api-tokens/{public_id}/revoke", {"csrf_token": self.csrf(page)}
        )
        return status


@dataclass
class Sent:
    client: int
    sent_at: float
    kind: str
    status: int
    receipt_id: int | None
    problem_type: str | None


def test_a_token_revoked_while_in_use_is_refused_from_that_moment(server, state):
    seeded = seed_business(state, role="cashier")
    log: list[Sent] = []
    lock = threading.Lock()
    stop = threading.Event()

    def use_token(number: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            sent_at = time.monotonic()
            if i % 2:
                reply = call(
                    "POST",
                    server.url + "/api/v1/receipts",
                    token=seeded.token,
                    json_body=receipt_body(branch=f"Till {number}"),
                    headers={"Idempotency-Key": f"client-{number}-{i}"},
                )
            else:
                reply = call("GET", server.url + "/api/v1/me", token=seeded.token)
            data = reply.json()
            with lock:
                log.append(
                    Sent(
                        number,
                        sent_at,
                        "post" if i % 2 else "get",
                        reply.status,
                        data.get("id") if reply.status == 201 else None,
                        data.get("type") if reply.status >= 400 else None,
                    )
                )

    clients = [threading.Thread(target=use_token, args=(n,)) for n in range(4)]
    for thread in clients:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while sum(s.status == 201 for s in list(log)) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        owner = Browser(server.url)
        owner.sign_in(seeded.owner_email)
        assert owner.revoke(seeded.public_id) == 303
        revoked = time.monotonic()
        while time.monotonic() < deadline:
            after = [s for s in list(log) if s.sent_at > revoked]
            if all(sum(s.client == n for s in after) >= 3 for n in range(4)):
                break
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)

    before = [s for s in log if s.sent_at <= revoked]
    after = [s for s in log if s.sent_at > revoked]
    assert sum(s.status == 201 for s in before) >= 20
    assert len(after) >= 12
    # Nothing sent after the revoke response got through, on any of the workers.
    assert {s.status for s in after} == {401}
    assert {s.problem_type for s in after} == {"https://docs.vasbox.example/problems/invalid-token"}
    assert {s.status for s in before} <= {200, 201, 401}

    with state.app_context():
        token = db.session.get(ApiToken, seeded.token_id)
        receipts = db.session.scalars(select(Receipt).where(Receipt.token_id == token.id)).all()
        stored_ids = {r.id for r in receipts}
        # Exactly the receipts whose creation was confirmed, all committed before revoked_at.
        assert stored_ids == {s.receipt_id for s in log if s.status == 201}
        assert all(r.created_at < token.revoked_at for r in receipts)
        audited = db.session.scalar(
            select(func.count()).where(
                AuditEvent.action == "receipt.created", AuditEvent.actor_token_id == token.id
            )
        )
        assert audited == len(receipts)

    # Every request is in the usage records, written by the workers in the background, and
    # the uses after revocation are security events for the owner.
    def recorded() -> int:
        with state.app_context():
            return db.session.scalar(
                select(func.count()).where(TokenUsage.public_id == seeded.public_id)
            )

    deadline = time.monotonic() + 30
    while recorded() < len(log) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert recorded() == len(log)
    with state.app_context():
        revoked_uses = db.session.scalar(
            select(func.count()).where(
                TokenUsage.public_id == seeded.public_id, TokenUsage.outcome == "revoked"
            )
        )
        events = db.session.scalar(
            select(func.count()).where(
                AuditEvent.action == "token.revoked_used",
                AuditEvent.actor_token_id == seeded.token_id,
            )
        )
    assert revoked_uses >= 1 and events == revoked_uses


def test_fifty_receipts_each_sent_three_times_at_once_are_stored_once(server, state):
    seeded = seed_business(state, role="cashier")
    run = uuid.uuid4().hex[:8]

    def send(number: int):
        reply = call(
            "POST",
            server.url + "/api/v1/receipts",
            token=seeded.token,
            json_body=receipt_body(
                branch=f"Branch {number % 5}",
                lines=[
                    {"description": f"Item {number}", "quantity": "1", "unit_price": f"{number}.50"}
                ],
            ),
            headers={"Idempotency-Key": f"{run}-receipt-{number}"},
        )
        return number, reply

    with ThreadPoolExecutor(max_workers=12) as pool:
        # The three copies of a receipt are queued side by side, so they race each other.
        results = list(pool.map(send, [n for n in range(50) for _ in range(3)]))

    assert {reply.status for _, reply in results} == {201}
    ids_by_receipt: dict[int, set[int]] = {}
    for number, reply in results:
        ids_by_receipt.setdefault(number, set()).add(reply.json()["id"])
    assert all(len(ids) == 1 for ids in ids_by_receipt.values())
    assert len({next(iter(ids)) for ids in ids_by_receipt.values()}) == 50
    replays = sum(reply.headers.get("Idempotent-Replayed") == "true" for _, reply in results)
    assert replays == 100
    with state.app_context():
        stored = db.session.scalar(select(func.count()).where(Receipt.token_id == seeded.token_id))
        audited = db.session.scalar(
            select(func.count()).where(
                AuditEvent.action == "receipt.created",
                AuditEvent.actor_token_id == seeded.token_id,
            )
        )
    assert stored == 50 and audited == 50


def test_a_worker_writes_its_buffered_usage_when_gunicorn_stops(live_db, state, tmp_path):
    # A flush interval of an hour: only the shutdown can have written these records.
    lone = LiveServer.start(
        live_db, tmp_path, workers=1, extra_env={**LIMITS, "VASBOX_USAGE_FLUSH_INTERVAL": "3600"}
    )
    try:
        seeded = seed_business(state)
        for _ in range(5):
            assert call("GET", lone.url + "/api/v1/me", token=seeded.token).status == 200
    finally:
        lone.stop()
    with state.app_context():
        written = db.session.scalar(
            select(func.count()).where(TokenUsage.public_id == seeded.public_id)
        )
    assert written == 5, lone.log()
