"""Database engine set-up: SQLite pragmas, write transactions, and lock-timeout handling."""

from __future__ import annotations

import contextvars

from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db

# Set just before a write transaction begins, read by the "begin" listener below.
_begin_immediate: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "begin_immediate", default=False
)


def configure_engine(engine: Engine, busy_timeout_ms: int) -> None:
    """Install SQLite pragmas and transaction control on the engine; no-op elsewhere."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself, so writes can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # A deferred transaction that later writes cannot wait for the lock: SQLite fails it
        # at once with "database is locked" if another worker wrote meanwhile. Writes
        # therefore take the lock up front (and wait up to busy_timeout); reads stay deferred
        # so they never queue behind writers in WAL mode.
        if _begin_immediate.get():
            _begin_immediate.set(False)
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def begin_write() -> None:
    """Start the session's write transaction now, ending any read-only one first.

    Call it before the reads a write depends on, so those reads and the write are one
    atomic, serialised unit (BEGIN IMMEDIATE on SQLite; a plain transaction elsewhere).
    """
    session = db.session()
    if session.in_transaction():
        session.commit()
    _begin_immediate.set(True)
    try:
        session.connection()
    finally:
        _begin_immediate.set(False)


def is_lock_timeout(error: BaseException) -> bool:
    """True when the database gave up waiting for a lock (SQLite busy, PostgreSQL lock timeout)."""
    text = str(getattr(error, "orig", error)).lower()
    return "database is locked" in text or "lock timeout" in text or "database is busy" in text
