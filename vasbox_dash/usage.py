"""API usage tracking, kept off the request path.

Each API request that carries a recognisable token adds one small event to an in-process
buffer. A background thread writes the buffer in one transaction per batch: the usage
rows, the tokens' "last used" columns (at most once a minute per token) and a security
audit event for each use of a revoked token. The buffer is also written when it fills up,
when the worker exits (atexit, which gunicorn's graceful shutdown runs) and when flush()
is called.

What a crash can lose: a worker killed without a chance to exit (SIGKILL, out of memory,
power loss) loses the events buffered since its last flush, at most USAGE_FLUSH_INTERVAL
seconds or USAGE_BUFFER_MAX requests' worth. While the database is unreachable events are
kept and retried, up to RETAIN_FACTOR times USAGE_BUFFER_MAX; beyond that the oldest are
dropped and counted in the log. Receipts and their audit rows are never buffered: they
commit with the request.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import delete, insert, or_, select, update

from .database import begin_write
from .extensions import db
from .models import ApiToken, AuditEvent, TokenUsage, utcnow

log = logging.getLogger(__name__)

EXTENSION_KEY = "vasbox_usage"
LAST_USED_INTERVAL = timedelta(seconds=60)
RETAIN_FACTOR = 20
PRUNE_BATCH = 5000


@dataclass(slots=True)
class UsageEvent:
    """One API request that carried a recognisable token; never its headers or body."""

    created_at: datetime
    public_id: str
    token_id: int | None
    business_id: int | None
    method: str
    route: str
    status: int
    outcome: str
    ip: str | None
    user_agent: str | None
    duration_ms: int
    request_id: str | None
    touch_last_used: bool = False


class UsageRecorder:
    """The per-process buffer of usage events and the thread that writes them."""

    def __init__(self, app: Flask) -> None:
        self._app_ref = weakref.ref(app)
        self.interval = float(app.config["USAGE_FLUSH_INTERVAL"])
        self.buffer_max = int(app.config["USAGE_BUFFER_MAX"])
        self.background = bool(app.config["USAGE_BACKGROUND_FLUSH"])
        self.dropped = 0
        self._reset()

    def _reset(self) -> None:
        # Called again in a forked child: a thread and locks copied by fork() are not usable.
        self._pid = os.getpid()
        self._events: deque[UsageEvent] = deque()
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # token id -> when this process last asked for a "last used" write, so a busy token
        # costs one UPDATE a minute, not one per flush.
        self._touched: dict[int, datetime] = {}

    def wants_last_used(self, token_id: int, stored: datetime | None, now: datetime) -> bool:
        """True if this use should refresh the token's last-used columns (once a minute)."""
        if stored is not None and now - stored < LAST_USED_INTERVAL:
            return False
        queued = self._touched.get(token_id)
        if queued is not None and now - queued < LAST_USED_INTERVAL:
            return False
        self._touched[token_id] = now
        return True

    def add(self, event: UsageEvent) -> None:
        """Buffer one event; cheap enough to call on every request."""
        if os.getpid() != self._pid:
            self._reset()
        self._events.append(event)
        if self.background:
            if self._thread is None:
                self._start()
            if len(self._events) >= self.buffer_max:
                self._wake.set()
        elif len(self._events) >= self.buffer_max:
            try:
                self.flush()
            except Exception:  # the request itself succeeded; its usage waits for the next try
                log.exception("writing API usage records failed; they will be retried")

    def pending(self) -> int:
        """How many events wait to be written."""
        return len(self._events)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="vasbox-usage-flush", daemon=True
            )
            self._thread.start()
            atexit.register(_flush_at_exit, weakref.ref(self))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("writing API usage records failed; they will be retried")

    def close(self) -> None:
        """Stop the background thread and write what is buffered."""
        thread = self._thread
        if thread is not None and os.getpid() == self._pid:
            self._stop.set()
            self._wake.set()
            thread.join(timeout=10)
            self._thread = None
        self.flush()

    def flush(self) -> int:
        """Write every buffered event now; returns how many were written.

        On a database error the events go back to the buffer (up to a bound) and the error
        is raised.
        """
        app = self._app_ref()
        if app is None:
            return 0
        with self._flush_lock:
            batch: list[UsageEvent] = []
            while self._events:
                try:
                    batch.append(self._events.popleft())
                except IndexError:
                    break
            if not batch:
                return 0
            try:
                with app.app_context():
                    try:
                        _write(batch)
                    except Exception:
                        db.session.rollback()
                        raise
            except Exception:
                self._requeue(batch)
                raise
            return len(batch)

    def _requeue(self, batch: list[UsageEvent]) -> None:
        room = self.buffer_max * RETAIN_FACTOR - len(self._events)
        keep = batch[-room:] if room > 0 else []
        lost = len(batch) - len(keep)
        if lost:
            self.dropped += lost
            log.warning("dropped %d API usage records; the database is unreachable", lost)
        self._events.extendleft(reversed(keep))


def _flush_at_exit(ref: weakref.ref[UsageRecorder]) -> None:
    recorder = ref()
    if recorder is None or os.getpid() != recorder._pid:
        return
    try:
        recorder.close()
    except Exception:
        log.exception("writing API usage records at exit failed")


def _write(batch: list[UsageEvent]) -> None:
    """One transaction: usage rows, revoked-use security events, throttled last-used."""
    begin_write()
    unresolved = {e.public_id for e in batch if e.token_id is None}
    owners: dict[str, tuple[int, int]] = {}
    if unresolved:
        # Failed attempts that never reached a lookup (a damaged token, a token in a URL)
        # are still filed under the token whose public id they carry.
        owners = {
            public_id: (token_id, business_id)
            for token_id, business_id, public_id in db.session.execute(
                select(ApiToken.id, ApiToken.business_id, ApiToken.public_id).where(
                    ApiToken.public_id.in_(unresolved)
                )
            )
        }
    rows = []
    for event in batch:
        token_id, business_id = event.token_id, event.business_id
        if token_id is None and event.public_id in owners:
            token_id, business_id = owners[event.public_id]
        rows.append(
            {
                "created_at": event.created_at,
                "token_id": token_id,
                "business_id": business_id,
                "public_id": event.public_id,
                "method": event.method,
                "route": event.route,
                "status": event.status,
                "outcome": event.outcome,
                "ip": event.ip,
                "user_agent": event.user_agent,
                "duration_ms": event.duration_ms,
                "request_id": event.request_id,
            }
        )
    # Core executemany: one statement for the batch, no ORM objects.
    db.session.execute(insert(TokenUsage.__table__), rows)

    security = [
        {
            "created_at": e.created_at,
            "business_id": e.business_id,
            "actor_token_id": e.token_id,
            "action": "token.revoked_used",
            "target_type": "token",
            "target_id": e.public_id,
            "ip": e.ip,
            "user_agent": e.user_agent,
            "details": {
                "public_id": e.public_id,
                "method": e.method,
                "route": e.route,
                "request_id": e.request_id,
            },
        }
        for e in batch
        if e.outcome == "revoked"
    ]
    if security:
        db.session.execute(insert(AuditEvent.__table__), security)

    latest: dict[int, UsageEvent] = {}
    for event in batch:
        if event.touch_last_used and event.token_id is not None:
            seen = latest.get(event.token_id)
            if seen is None or event.created_at >= seen.created_at:
                latest[event.token_id] = event
    table = ApiToken.__table__
    for token_id, event in latest.items():
        # The condition makes the write happen at most once a minute per token across
        # every worker, whatever each process believes.
        db.session.execute(
            update(table)
            .where(
                table.c.id == token_id,
                or_(
                    table.c.last_used_at.is_(None),
                    table.c.last_used_at <= event.created_at - LAST_USED_INTERVAL,
                ),
            )
            .values(
                last_used_at=event.created_at,
                last_used_ip=event.ip,
                last_used_user_agent=event.user_agent,
            )
        )
    db.session.commit()


def init_app(app: Flask) -> UsageRecorder:
    """Attach a usage recorder to the app."""
    recorder = UsageRecorder(app)
    app.extensions[EXTENSION_KEY] = recorder
    return recorder


def recorder(app: Flask | None = None) -> UsageRecorder:
    """The app's usage recorder (the current app's by default)."""
    return (app or current_app).extensions[EXTENSION_KEY]


def flush(app: Flask | None = None) -> int:
    """Write the app's buffered usage events now; tests and shutdown hooks call this."""
    return recorder(app).flush()


def prune(days: int) -> int:
    """Delete usage records older than days; returns how many were removed.

    Works in batches, each its own short transaction, so a large prune never holds the
    database's write lock for long.
    """
    cutoff = utcnow() - timedelta(days=days)
    removed = 0
    while True:
        begin_write()
        ids = select(TokenUsage.id).where(TokenUsage.created_at < cutoff).limit(PRUNE_BATCH)
        table = TokenUsage.__table__
        result = db.session.execute(delete(table).where(table.c.id.in_(ids.scalar_subquery())))
        db.session.commit()
        removed += result.rowcount or 0
        if (result.rowcount or 0) < PRUNE_BATCH:
            return removed
