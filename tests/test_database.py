"""Migrations on SQLite and PostgreSQL, and SQLite under concurrent writers (issue 2)."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import PASSWORD, Persona, login, make_config, requires_postgres
from flask_migrate import upgrade
from sqlalchemy import func, inspect, select

from vasbox_dash import create_app
from vasbox_dash.accounts import create_business, create_user
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, User
from vasbox_dash.tokens import issue_token


def migrate_and_compare(database_url: str) -> list:
    app = create_app(make_config(database_url))
    with app.app_context():
        upgrade()
        tables = set(inspect(db.engine).get_table_names())
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        business = create_business("Migrated Co")
        create_user(
            business=business, email="o@m.example", name="O", role="owner", password=PASSWORD
        )
        db.session.remove()
        db.engine.dispose()
    assert {"businesses", "users", "api_tokens", "audit_events", "token_usage"} <= tables
    return diff


def test_migrations_build_the_whole_schema_on_an_empty_sqlite_database(tmp_path):
    assert migrate_and_compare(f"sqlite:///{tmp_path / 'empty.sqlite3'}") == []


@requires_postgres
def test_migrations_build_the_whole_schema_on_an_empty_postgresql_database(fresh_postgres_url):
    assert migrate_and_compare(fresh_postgres_url) == []


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    app = create_app(make_config(f"sqlite:///{tmp_path / 'p.sqlite3'}"))
    with app.app_context():
        conn = db.session.connection()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        db.session.rollback()
        db.engine.dispose()


def test_concurrent_writers_on_sqlite_wait_for_the_lock_instead_of_failing(tmp_path):
    app = create_app(make_config(f"sqlite:///{tmp_path / 'busy.sqlite3'}"))
    with app.app_context():
        db.create_all()
        business = create_business("Busy Co")
        owner = create_user(
            business=business, email="o@busy.example", name="O", role="owner", password=PASSWORD
        )
        owner_id = owner.id
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        try:
            with app.app_context():
                user = db.session.get(User, owner_id)  # a read first, as a real request does
                barrier.wait()
                for i in range(5):
                    issue_token(user, f"Writer {n} token {i}")
                db.session.remove()
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 40
        db.engine.dispose()


def test_a_lock_timeout_returns_503_with_retry_after_not_500(tmp_path):
    path = tmp_path / "locked.sqlite3"
    app = create_app(make_config(f"sqlite:///{path}", SQLITE_BUSY_TIMEOUT_MS=50))
    with app.app_context():
        db.create_all()
        business = create_business("Locked Co")
        create_user(
            business=business, email="o@locked.example", name="O", role="owner", password=PASSWORD
        )
    client = app.test_client()
    owner = Persona(0, "o@locked.example", "O", "owner", None)
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # another worker holds the write lock
    try:
        response = login(client, owner)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert "busy" in response.get_data(as_text=True)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert login(client, owner).status_code == 303
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("path", ["/healthz"])
def test_health_check_answers_json_without_signing_in(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
