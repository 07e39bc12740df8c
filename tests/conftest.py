"""Shared fixtures: a fresh app and database per test, personas, an injectable clock."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from vasbox_dash import create_app
from vasbox_dash.accounts import create_business, create_user
from vasbox_dash.extensions import db

PASSWORD = "correct horse battery staple"
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/vasbox_test"
# The suite's database: SQLite (a file per test) unless CI points it at PostgreSQL.
TEST_DATABASE_URL = os.environ.get("VASBOX_TEST_DATABASE_URL", "")
RATELIMIT_URL = os.environ.get("VASBOX_TEST_RATELIMIT_STORAGE_URL", "memory://")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def postgres_url() -> str:
    """The PostgreSQL test database URL, created on first use."""
    return TEST_DATABASE_URL if TEST_DATABASE_URL.startswith("postgresql") else DEFAULT_PG_URL


def ensure_postgres_database(url: str) -> None:
    """Create the test database if the server has none by that name."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
        )
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def postgres_available() -> bool:
    try:
        ensure_postgres_database(postgres_url())
        return True
    except Exception:
        return False


requires_postgres = pytest.mark.skipif(
    not IN_CI and not TEST_DATABASE_URL and not postgres_available(),
    reason="PostgreSQL is not reachable at 127.0.0.1:5432",
)


REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


requires_redis = pytest.mark.skipif(
    not IN_CI and not redis_available(), reason="Redis is not reachable at 127.0.0.1:6379"
)


class FakeClock:
    """A clock the test moves by hand; installed as app.config["CLOCK"]."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 12, 3, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)


def make_config(database_url: str, **extra) -> dict:
    """Test config: cheap argon2, fixed secrets, the given database."""
    config = {
        "VASBOX_ENV": "testing",
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-" + "k" * 32,
        "TOKEN_PEPPER": "test-token-pepper-" + "p" * 32,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "ARGON2_PARAMS": CHEAP_ARGON2,
        "RATELIMIT_STORAGE_URI": RATELIMIT_URL,
        # A fresh key space per app, so counts never leak between tests on shared Redis.
        "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        "WTF_CSRF_ENABLED": False,
    }
    config.update(extra)
    return config


def reset_database() -> None:
    """Empty every table (PostgreSQL) or create the schema (a fresh SQLite file)."""
    if db.engine.dialect.name == "postgresql":
        db.create_all()
        names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
        db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        db.session.commit()
    else:
        db.create_all()


@pytest.fixture
def database_url(tmp_path) -> str:
    if TEST_DATABASE_URL:
        ensure_postgres_database(TEST_DATABASE_URL)
        return TEST_DATABASE_URL
    return f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app_config(database_url, clock) -> dict:
    """Override in a module to change the config (e.g. turn CSRF on)."""
    return make_config(database_url, CLOCK=clock)


@pytest.fixture
def app(app_config, tmp_path):
    app = create_app(app_config)
    with app.app_context():
        reset_database()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app_factory():
    """Build extra apps (e.g. a second "worker"); their connections are closed afterwards."""
    apps = []

    def build(config: dict):
        built = create_app(config)
        apps.append(built)
        return built

    yield build
    for built in apps:
        with built.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class Persona:
    id: int
    email: str
    name: str
    role: str
    business_id: int | None
    password: str = PASSWORD


@pytest.fixture
def people(app) -> dict[str, Persona]:
    """Owner, manager and cashier of Acme; another business's owner; a support agent."""
    with app.app_context():
        acme = create_business("Acme Stores", "Africa/Harare")
        other = create_business("Other Traders", "Africa/Johannesburg")
        specs = [
            ("owner", acme, "owner@acme.example", "Olivia Owner"),
            ("manager", acme, "manager@acme.example", "Mandla Manager"),
            ("cashier", acme, "cashier@acme.example", "Chipo Cashier"),
            ("other_owner", other, "owner@other.example", "Oscar Other"),
            ("support", None, "agent@vasbox.example", "Sam Support"),
        ]
        result = {}
        for key, business, email, name in specs:
            role = "owner" if key == "other_owner" else key
            user = create_user(
                business=business, email=email, name=name, role=role, password=PASSWORD
            )
            result[key] = Persona(user.id, email, name, role, user.business_id)
        return result


def login(client, persona: Persona, password: str | None = None):
    """Sign in through the real form; returns the response."""
    return client.post(
        "/login",
        data={"email": persona.email, "password": password or persona.password},
    )


@pytest.fixture
def as_owner(client, people):
    login(client, people["owner"])
    return client


TOKEN_RE = re.compile(r"vbx_[a-z2-9]{8}[0-9A-Za-z]{43}[0-9A-Za-z]{6}")


def find_tokens(text_: str) -> list[str]:
    """Every full token in a response body."""
    return TOKEN_RE.findall(text_)


def create_token_via_ui(client, name: str = "Accounting Software", htmx: bool = True):
    """Create a token through the page; returns (response, plaintext or None)."""
    headers = {"HX-Request": "true"} if htmx else {}
    response = client.post(
        "/admin/api-tokens",
        data={"name": name, "creation_key": uuid.uuid4().hex},
        headers=headers,
    )
    found = find_tokens(response.get_data(as_text=True))
    return response, (found[0] if found else None)


def pytest_report_header(config):
    """Say which database and limiter storage this run uses, so CI logs show it."""
    database = make_url(TEST_DATABASE_URL).render_as_string() if TEST_DATABASE_URL else "SQLite"
    return [f"vasbox database: {database}", f"vasbox rate-limit storage: {RATELIMIT_URL}"]


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test is a failure: browser and PostgreSQL tests must really run."""
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        reporter.write_line(f"CI: {skipped} test(s) were skipped; in CI every test must run.")
        session.exitstatus = 1


@pytest.fixture
def fresh_database_url(tmp_path):
    """An empty database with no schema: a new SQLite file, or a new PostgreSQL database."""
    if not TEST_DATABASE_URL:
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    yield from fresh_postgres_database(TEST_DATABASE_URL)


@pytest.fixture
def fresh_postgres_url():
    """An empty PostgreSQL database, dropped afterwards (PostgreSQL runs in CI)."""
    yield from fresh_postgres_database(postgres_url())


def fresh_postgres_database(base_url: str):
    """Yield the URL of a new, empty database on base_url's server; drop it afterwards."""
    parsed = make_url(base_url)
    name = f"{parsed.database}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
