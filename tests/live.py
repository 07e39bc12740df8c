"""Real servers for tests: gunicorn on 127.0.0.1 with its own database, and HTTP helpers.

- live_database(kind, tmp_path): a fresh SQLite file or PostgreSQL database (dropped after);
- LiveServer.start(database_url, tmp_path, workers=...): schema via `vasbox-dash db upgrade`,
  then gunicorn on a free port; .stop() ends it gracefully (SIGTERM), as a deploy would;
- server.app(): an app on the same database, to seed data and check what was stored;
- seed_business(app, ...), receipt_body(...), call(...): small helpers shared by live tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from conftest import PASSWORD, TEST_DATABASE_URL, fresh_postgres_database, make_config, postgres_url

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SECRET_KEY = "live-secret-key-" + "k" * 32
PEPPER = "live-token-pepper-" + "p" * 32
REDIS_URL = os.environ.get("VASBOX_TEST_LIVE_REDIS_URL", "redis://127.0.0.1:6379/0")
# The suite runs live tests on the database it runs on: SQLite by default, PostgreSQL when
# VASBOX_TEST_DATABASE_URL points there (CI runs both, so both are always covered).
LIVE_BACKENDS = ["postgresql"] if TEST_DATABASE_URL.startswith("postgresql") else ["sqlite"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_database(kind: str, tmp_path: Path):
    """Yield the URL of an empty database of kind ("sqlite" or "postgresql"), removed after."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'live.sqlite3'}"
        return
    yield from fresh_postgres_database(postgres_url())


@dataclass
class LiveServer:
    """A gunicorn serving create_app() on 127.0.0.1, with the environment it was given."""

    url: str
    database_url: str
    env: dict[str, str]
    process: subprocess.Popen
    log_path: Path
    _apps: list = field(default_factory=list)

    @classmethod
    def start(
        cls,
        database_url: str,
        tmp_path: Path,
        *,
        workers: int = 3,
        ratelimit_url: str = "memory://",
        extra_env: dict[str, str] | None = None,
    ) -> LiveServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VASBOX_")}
        env.update(
            VASBOX_ENV="development",
            VASBOX_DATABASE_URL=database_url,
            VASBOX_SECRET_KEY=SECRET_KEY,
            VASBOX_TOKEN_PEPPER=PEPPER,
            VASBOX_RATELIMIT_STORAGE_URL=ratelimit_url,
            VASBOX_RATELIMIT_KEY_PREFIX=f"live-{uuid.uuid4().hex}",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env or {})
        subprocess.run(
            [str(VENV_BIN / "vasbox-dash"), "db", "upgrade"],
            env=env,
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )
        port = free_port()
        log_path = tmp_path / f"gunicorn-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    str(workers),
                    "--graceful-timeout",
                    "20",
                    "--chdir",
                    str(REPO),
                    "vasbox_dash:create_app()",
                ],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = cls(f"http://127.0.0.1:{port}", database_url, env, process, log_path)
        server._wait_until_up()
        return server

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer /healthz:\n{self.log()}")

    def log(self) -> str:
        """What gunicorn and the app printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM) and wait, so workers run their exit handlers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for app in self._apps:
            from vasbox_dash.extensions import db

            with app.app_context():
                db.engine.dispose()

    def app(self):
        """An app on the server's database (same secrets), for seeding and checking state."""
        from vasbox_dash import create_app

        app = create_app(
            make_config(
                self.database_url,
                SECRET_KEY=SECRET_KEY,
                TOKEN_PEPPER=PEPPER,
                RATELIMIT_STORAGE_URI="memory://",
            )
        )
        self._apps.append(app)
        return app


@dataclass
class Seeded:
    business_id: int
    owner_id: int
    owner_email: str
    token: str
    public_id: str
    token_id: int


def seed_business(app, *, role: str = "owner", timezone: str = "Africa/Harare") -> Seeded:
    """A new business with an owner (and a creator of role, if not owner) and one token."""
    from vasbox_dash.accounts import create_business, create_user
    from vasbox_dash.extensions import db
    from vasbox_dash.tokens import issue_token

    tag = uuid.uuid4().hex[:8]
    with app.app_context():
        business = create_business(f"Live Shop {tag}", timezone)
        owner = create_user(
            business=business,
            email=f"owner-{tag}@live.example",
            name="Live Owner",
            role="owner",
            password=PASSWORD,
        )
        creator = owner
        if role != "owner":
            creator = create_user(
                business=business,
                email=f"{role}-{tag}@live.example",
                name=f"Live {role.title()}",
                role=role,
                password=PASSWORD,
            )
        token, plaintext = issue_token(creator, f"Live token {tag}")
        seeded = Seeded(business.id, owner.id, owner.email, plaintext, token.public_id, token.id)
        db.session.remove()
        return seeded


def receipt_body(**overrides) -> dict:
    """A valid receipt request; keyword arguments replace fields."""
    body = {
        "branch": "Harare CBD",
        "currency": "USD",
        "payment_method": "cash",
        "issued_at": "2026-12-03T10:00:00+02:00",
        "lines": [
            {"description": "White loaf", "quantity": "2", "unit_price": "1.20"},
            {"description": "Meat pie", "quantity": "1", "unit_price": "2.50"},
        ],
    }
    body.update(overrides)
    return body


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(
    method: str,
    url: str,
    *,
    token: str | None = None,
    json_body=None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> Reply:
    """One HTTP request with urllib; HTTP errors are returned, not raised."""
    all_headers = dict(headers or {})
    data = None
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        data = json.dumps(json_body).encode()
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def issue_token_for(app, user_id: int, name: str | None = None) -> str:
    """Issue a token for the user straight through the token service; returns the plaintext."""
    from vasbox_dash.extensions import db
    from vasbox_dash.models import User
    from vasbox_dash.tokens import issue_token

    with app.app_context():
        user = db.session.get(User, user_id)
        _, plaintext = issue_token(user, name or f"Token {uuid.uuid4().hex[:8]}")
        return plaintext


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for token."""
    return {"Authorization": f"Bearer {token}"}
