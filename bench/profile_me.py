"""Profile the API's hot path (GET /api/v1/me) in-process with pyinstrument.

    .venv/bin/pip install pyinstrument            # or: pip install -e '.[bench]'
    .venv/bin/python bench/profile_me.py [--db sqlite|postgresql] [--requests 3000]

Runs the real app (usage tracking on) through Flask's test client, so the profile shows
the app's own cost without gunicorn or the network, next to /healthz for comparison.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    count = max(100, min(args.requests, 50_000))

    from pyinstrument import Profiler
    from sqlalchemy import create_engine, text

    from vasbox_dash import create_app, usage
    from vasbox_dash.accounts import create_business, create_user
    from vasbox_dash.extensions import db
    from vasbox_dash.tokens import issue_token

    pg_name = None
    if args.db == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp(prefix='vasbox-profile-')}/profile.sqlite3"
    else:
        pg_name = f"vasbox_profile_{uuid.uuid4().hex[:8]}"
        admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        url = f"{PG_SERVER}/{pg_name}"
    app = create_app(
        {
            "VASBOX_ENV": "development",
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "profile-secret-" + "s" * 32,
            "TOKEN_PEPPER": "profile-pepper-" + "p" * 32,
            "API_RATE_LIMIT": "1000000000 per minute",
            "ARGON2_PARAMS": {"time_cost": 1, "memory_cost": 8, "parallelism": 1},
        }
    )
    try:
        with app.app_context():
            db.create_all()
            business = create_business("Profile Bakery")
            owner = create_user(
                business=business,
                email="owner@profile.example",
                name="Owner",
                role="owner",
                password="correct horse battery staple",
            )
            _, plaintext = issue_token(owner, "Profile")
        client = app.test_client()
        headers = {"Authorization": f"Bearer {plaintext}"}
        for _ in range(200):  # warm-up
            client.get("/api/v1/me", headers=headers)
            client.get("/healthz")
        timings = {}
        for name, path, hdrs in (
            ("healthz", "/healthz", {}),
            ("me", "/api/v1/me", headers),
        ):
            started = time.perf_counter()
            for _ in range(count):
                assert client.get(path, headers=hdrs).status_code == 200
            timings[name] = (time.perf_counter() - started) / count * 1e6
        print(
            f"in-process: /healthz {timings['healthz']:.0f} µs, /api/v1/me {timings['me']:.0f} µs "
            f"per request; ratio {timings['healthz'] / timings['me']:.2f}"
        )
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for _ in range(count):
            client.get("/api/v1/me", headers=headers)
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        usage.recorder(app).close()
    finally:
        with app.app_context():
            db.engine.dispose()
        if pg_name:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
