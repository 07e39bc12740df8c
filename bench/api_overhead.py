"""How much does token authentication cost? GET /api/v1/me against GET /healthz.

Starts the app under gunicorn (2 workers, 127.0.0.1 only) on SQLite and/or PostgreSQL,
loads each endpoint with wrk for a bounded time, and prints req/s, p50 and p99 side by
side with the ratio me/healthz. Usage tracking is on, as in production.

Needs wrk (`apt-get install -y wrk` on Debian/Ubuntu, `brew install wrk` on macOS) and,
for --db postgresql, a PostgreSQL server (default postgresql+psycopg://postgres@127.0.0.1:5432;
the script creates and drops its own database).

    .venv/bin/python bench/api_overhead.py                      # both databases
    .venv/bin/python bench/api_overhead.py --db sqlite --duration 10
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PG_SERVER = os.environ.get("VASBOX_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
SECRET = "bench-secret-key-" + "s" * 32
PEPPER = "bench-token-pepper-" + "p" * 32
MAX_DURATION = 60  # seconds per run: loads are always bounded
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(database_url: str, ratelimit_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        VASBOX_DATABASE_URL=database_url,
        VASBOX_SECRET_KEY=SECRET,
        VASBOX_TOKEN_PEPPER=PEPPER,
        VASBOX_RATELIMIT_STORAGE_URL=ratelimit_url,
        # The limiter still counts every request; the limit is just out of the bench's reach.
        VASBOX_API_RATE_LIMIT="1000000000 per minute",
        PYTHONUNBUFFERED="1",
    )
    return env


def prepare_database(database_url: str, env: dict[str, str]) -> str:
    """Create the schema and a business with an owner and a token; returns the token."""
    subprocess.run(
        [str(Path(sys.executable).parent / "vasbox-dash"), "db", "upgrade"],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    code = (
        "from vasbox_dash import create_app\n"
        "from vasbox_dash.accounts import create_business, create_user\n"
        "from vasbox_dash.tokens import issue_token\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    b = create_business('Bench Bakery')\n"
        "    u = create_user(business=b, email='owner@bench.example', name='Bench Owner',\n"
        f"        role='owner', password={PASSWORD!r})\n"
        "    _, plaintext = issue_token(u, 'Bench')\n"
        "    print(plaintext)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, check=True, capture_output=True, text=True
    )
    return result.stdout.strip().splitlines()[-1]


def start_gunicorn(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "vasbox_dash:create_app()",
        ],
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise RuntimeError("gunicorn did not start")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * UNITS[unit]


def worker_cpu_seconds(master_pid: int) -> float:
    """CPU time (user + system, all threads) used so far by the master's worker processes."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    ticks = 0
    for pid in children:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, duration: int, connections: int, headers: list[str], master_pid: int
) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    cpu_before = worker_cpu_seconds(master_pid)
    output = subprocess.run(
        command + [url], check=True, capture_output=True, text=True, timeout=duration + 30
    ).stdout
    cpu = worker_cpu_seconds(master_pid) - cpu_before
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} non-2xx responses\n{output}")
    # Server CPU per request does not depend on what else the machine is running, so it
    # gives a steadier ratio than req/s on a shared or busy machine.
    return {"rps": rps, "p50": p50, "p99": p99, "cpu_us": cpu / requests * 1e6}


def bench_database(kind: str, args) -> dict[str, dict[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="vasbox-bench-"))
    pg_name = None
    if kind == "sqlite":
        database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    else:
        from sqlalchemy import create_engine, text

        pg_name = f"vasbox_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        database_url = f"{PG_SERVER}/{pg_name}"
    env = server_env(database_url, args.ratelimit_storage)
    env["VASBOX_ENV"] = "development"
    process = None
    try:
        token = prepare_database(database_url, env)
        port = free_port()
        process = start_gunicorn(env, port, args.workers)
        base = f"http://127.0.0.1:{port}"
        targets = {
            "healthz": (f"{base}/healthz", []),
            "me": (f"{base}/api/v1/me", [f"Authorization: Bearer {token}"]),
        }
        for url, headers in targets.values():  # warm-up: imports, pools, caches
            run_wrk(url, 2, args.connections, headers, process.pid)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(args.rounds):  # alternate, so drift hits both endpoints alike
            for name, (url, headers) in targets.items():
                results[name].append(
                    run_wrk(url, args.duration, args.connections, headers, process.pid)
                )
        best = {name: max(runs, key=lambda r: r["rps"]) for name, runs in results.items()}
        for name, runs in results.items():
            best[name]["cpu_us"] = min(r["cpu_us"] for r in runs)
        return best
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(tmp, ignore_errors=True)
        if pg_name:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
            admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (max 60)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per endpoint (best kept)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ratelimit-storage", default="memory://")
    args = parser.parse_args()
    args.duration = max(1, min(args.duration, MAX_DURATION))
    args.rounds = max(1, min(args.rounds, 5))
    args.connections = max(1, min(args.connections, 64))
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (or brew install wrk)", file=sys.stderr)
        return 2
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(
        f"gunicorn {args.workers} workers, wrk 1 thread {args.connections} connections, "
        f"{args.rounds}x{args.duration}s per endpoint (best run), "
        f"rate limit storage {args.ratelimit_storage}, usage tracking on"
    )
    header = (
        f"{'database':<11} {'endpoint':<16} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU µs/req':>10}"
    )
    lines = [header]
    for kind in kinds:
        result = bench_database(kind, args)
        for name, label in (("healthz", "GET /healthz"), ("me", "GET /api/v1/me")):
            r = result[name]
            lines.append(
                f"{kind:<11} {label:<16} {r['rps']:>7.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
                f"{r['cpu_us']:>10.0f}"
            )
        ratio = result["me"]["rps"] / result["healthz"]["rps"]
        cpu_ratio = result["healthz"]["cpu_us"] / result["me"]["cpu_us"]
        lines.append(
            f"{kind:<11} {'ratio me/healthz':<16} {ratio:>7.2f} {'':>7} {'':>7} {cpu_ratio:>10.2f}"
        )
        print("\n".join(lines[-3:]), flush=True)
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
