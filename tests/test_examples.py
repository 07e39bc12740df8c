"""The example integrations in examples/, run as real scripts against a live server (and,
for retries, against a stub server that fails on purpose)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from live import LIVE_BACKENDS, LiveServer, call, live_database, receipt_body, seed_business
from sqlalchemy import func, select

from vasbox_dash.extensions import db
from vasbox_dash.models import Receipt

pytestmark = pytest.mark.live

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module", params=LIVE_BACKENDS)
def server(request, tmp_path_factory):
    with live_database(request.param, tmp_path_factory.mktemp("examples-db")) as url:
        started = LiveServer.start(url, tmp_path_factory.mktemp("examples"), workers=2)
        yield started
        started.stop()


@pytest.fixture(scope="module")
def state(server):
    return server.app()


def run(script: str, *args: str, token: str | None, url: str, cwd: Path, stdin: str = ""):
    """Run an example as a cron job would: token and URL in the environment only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VASBOX_")}
    env["VASBOX_API_URL"] = url
    if token is not None:
        env["VASBOX_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def receipts_of(state, business_id: int) -> int:
    with state.app_context():
        return db.session.scalar(
            select(func.count()).select_from(Receipt).where(Receipt.business_id == business_id)
        )


def test_pos_example_pushes_a_receipt_and_is_safe_to_run_again(server, state, tmp_path):
    seeded = seed_business(state, role="cashier")
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(receipt_body()))
    first = run(
        "pos_push_receipt.py",
        str(receipt),
        "--idempotency-key",
        "POS1-000123",
        token=seeded.token,
        url=server.url,
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    assert "total USD 4.90" in first.stdout
    again = run(
        "pos_push_receipt.py",
        str(receipt),
        "--idempotency-key",
        "POS1-000123",
        token=seeded.token,
        url=server.url,
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert "already stored" in again.stdout
    assert first.stdout.split()[1] == again.stdout.split()[1]  # the same receipt id
    assert receipts_of(state, seeded.business_id) == 1
    assert seeded.token not in first.stdout + first.stderr + again.stdout + again.stderr


def test_pos_example_derives_a_stable_key_from_the_receipt(server, state, tmp_path):
    seeded = seed_business(state, role="cashier")
    body = json.dumps(receipt_body(branch="Avondale"))
    for _ in range(2):
        result = run(
            "pos_push_receipt.py", "-", token=seeded.token, url=server.url, cwd=tmp_path, stdin=body
        )
        assert result.returncode == 0, result.stderr
    assert receipts_of(state, seeded.business_id) == 1


def test_pos_example_reports_each_invalid_field_and_fails(server, state, tmp_path):
    seeded = seed_business(state, role="cashier")
    bad = json.dumps(receipt_body(currency="usd", lines=[]))
    result = run(
        "pos_push_receipt.py", "-", token=seeded.token, url=server.url, cwd=tmp_path, stdin=bad
    )
    assert result.returncode == 1
    assert "/currency" in result.stderr and "/lines" in result.stderr
    assert "request id" in result.stderr


def test_examples_need_the_token_in_the_environment(server, tmp_path):
    for script, args in (("pos_push_receipt.py", ["-"]), ("daily_sales_report.py", [])):
        result = run(script, *args, token=None, url=server.url, cwd=tmp_path, stdin="{}")
        assert result.returncode == 2
        assert "VASBOX_API_TOKEN" in result.stderr
        help_text = run(script, "--help", token=None, url=server.url, cwd=tmp_path).stdout
        assert "--token" not in help_text


def test_daily_report_example_saves_yesterdays_sales_as_csv(server, state, tmp_path):
    seeded = seed_business(state, role="manager")
    zone = ZoneInfo("Africa/Harare")
    yesterday = datetime.now(zone).date() - timedelta(days=1)
    noon = datetime(yesterday.year, yesterday.month, yesterday.day, 12, tzinfo=zone)
    for branch, minutes in (("Harare CBD", 0), ("Harare CBD", 5), ("Avondale", 10)):
        issued = (noon + timedelta(minutes=minutes)).isoformat()
        reply = call(
            "POST",
            server.url + "/api/v1/receipts",
            token=seeded.token,
            json_body=receipt_body(branch=branch, issued_at=issued),
        )
        assert reply.status == 201
    result = run(
        "daily_sales_report.py",
        "--dir",
        str(tmp_path / "reports"),
        token=seeded.token,
        url=server.url,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    saved = tmp_path / "reports" / f"sales-{yesterday.isoformat()}.csv"
    assert f"saved {saved} (2 rows)" in result.stdout
    assert list(csv.reader(io.StringIO(saved.read_text()))) == [
        ["date", "branch", "currency", "receipts", "total"],
        [yesterday.isoformat(), "Avondale", "USD", "1", "4.90"],
        [yesterday.isoformat(), "Harare CBD", "USD", "2", "9.80"],
    ]
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.startswith(".sales-")]


def test_daily_report_example_fetches_a_chosen_day_and_refuses_a_cashier(server, state, tmp_path):
    manager = seed_business(state, role="manager")
    result = run(
        "daily_sales_report.py",
        "--date",
        "2026-01-15",
        "--dir",
        str(tmp_path),
        token=manager.token,
        url=server.url,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sales-2026-01-15.csv").read_bytes() == (
        b"date,branch,currency,receipts,total\r\n"
    )
    cashier = seed_business(state, role="cashier")
    refused = run(
        "daily_sales_report.py",
        "--date",
        "2026-01-15",
        token=cashier.token,
        url=server.url,
        cwd=tmp_path,
    )
    assert refused.returncode == 1
    assert "403" in refused.stderr and "cashier role" in refused.stderr


class Stub:
    """A local HTTP server that plays a script of responses and records what it got."""

    def __init__(self, script: list[tuple[float, int, dict, bytes]]) -> None:
        self.script = list(script)
        self.seen: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
                delay, status, headers, payload = stub.script.pop(0)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as intended

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


PROBLEM_503 = (
    0.0,
    503,
    {"Content-Type": "application/problem+json", "Retry-After": "0"},
    json.dumps({"status": 503, "detail": "busy"}).encode(),
)
CREATED = (
    0.0,
    201,
    {"Content-Type": "application/json"},
    json.dumps({"id": 7, "currency": "USD", "total": "4.90"}).encode(),
)


@pytest.fixture
def stub():
    stubs = []

    def make(script):
        stubs.append(Stub(script))
        return stubs[-1]

    yield make
    for s in stubs:
        s.close()


def test_pos_example_retries_a_5xx_with_the_same_idempotency_key(stub, tmp_path):
    server = stub([PROBLEM_503, PROBLEM_503, CREATED])
    result = run(
        "pos_push_receipt.py",
        "-",
        "--retry-delay",
        "0.01",
        token="vbx_example",
        url=server.url,
        cwd=tmp_path,
        stdin=json.dumps(receipt_body()),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("retrying") == 2
    keys = {request["headers"]["Idempotency-Key"] for request in server.seen}
    bodies = {request["body"] for request in server.seen}
    assert len(server.seen) == 3 and len(keys) == 1 and len(bodies) == 1


def test_pos_example_retries_after_a_timeout(stub, tmp_path):
    slow = (2.0, *CREATED[1:])
    server = stub([slow, CREATED])
    result = run(
        "pos_push_receipt.py",
        "-",
        "--timeout",
        "0.5",
        "--retry-delay",
        "0.01",
        token="vbx_example",
        url=server.url,
        cwd=tmp_path,
        stdin=json.dumps(receipt_body()),
    )
    assert result.returncode == 0, result.stderr
    assert "timed out" in result.stderr
    assert len({request["headers"]["Idempotency-Key"] for request in server.seen}) == 1


def test_pos_example_gives_up_after_its_attempts(stub, tmp_path):
    server = stub([PROBLEM_503] * 3)
    result = run(
        "pos_push_receipt.py",
        "-",
        "--attempts",
        "3",
        "--retry-delay",
        "0.01",
        token="vbx_example",
        url=server.url,
        cwd=tmp_path,
        stdin=json.dumps(receipt_body()),
    )
    assert result.returncode == 3
    assert "gave up after 3 attempts" in result.stderr


def test_daily_report_example_retries_a_5xx(stub, tmp_path):
    csv_reply = (0.0, 200, {"Content-Type": "text/csv"}, b"date,branch,currency,receipts,total\r\n")
    server = stub([PROBLEM_503, csv_reply])
    result = run(
        "daily_sales_report.py",
        "--date",
        "2026-12-02",
        "--retry-delay",
        "0.01",
        "--dir",
        str(tmp_path),
        token="vbx_example",
        url=server.url,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in server.seen] == [
        "/api/v1/reports/sales?from=2026-12-02&to=2026-12-02"
    ] * 2
    assert server.seen[0]["headers"]["Accept"] == "text/csv"
