#!/usr/bin/env python3
"""Save yesterday's sales (per day and branch) from VasBox as a CSV file, for cron.

The token comes from the environment only, never from the command line:

    export VASBOX_API_TOKEN=vbx_...      # a token made by a manager or the owner
    export VASBOX_API_URL=https://vasbox.example.com   # default http://127.0.0.1:8000
    python3 daily_sales_report.py --dir /srv/reports

"Yesterday" is the business's yesterday, in its own timezone (read from /api/v1/me), so
the file is right wherever the script runs. The file, sales-YYYY-MM-DD.csv, is written
under a temporary name and then renamed, so a half-written report never appears.
--date YYYY-MM-DD fetches another day. Only the standard library is needed.

A crontab line (06:15 every day, token kept in a file only its owner can read):

    15 6 * * * . $HOME/.vasbox-env && python3 /opt/vasbox/daily_sales_report.py --dir /srv/reports

Exit status: 0 saved, 1 refused by the server, 2 bad usage, 3 gave up after retrying.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

RETRYABLE = {408, 429, 500, 502, 503, 504}


class Refused(Exception):
    """The server answered with an error that a retry will not fix."""


class GaveUp(Exception):
    """Every attempt failed with a timeout, a dropped connection or a 5xx."""


def describe_problem(body: bytes) -> str:
    try:
        problem = json.loads(body)
        text = problem.get("detail") or problem.get("title") or ""
        if problem.get("request_id"):
            text += f" (request id {problem['request_id']})"
        return text
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")


def get(url: str, token: str, accept: str, attempts: int, timeout: float, delay: float) -> bytes:
    """GET url, retrying timeouts, dropped connections, 429 and 5xx with backoff."""
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": accept,
                "User-Agent": "vasbox-daily-report-example/1.0",
            },
        )
        wait = delay
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            body = error.read()
            if error.code not in RETRYABLE:
                raise Refused(f"{error.code}: {describe_problem(body)}") from None
            retry_after = error.headers.get("Retry-After", "")
            if retry_after.isdigit():
                wait = max(wait, float(retry_after))
            reason = f"HTTP {error.code}"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = str(getattr(error, "reason", None) or error) or type(error).__name__
        if attempt == attempts:
            raise GaveUp(f"gave up after {attempts} attempts (last: {reason})")
        print(f"attempt {attempt} failed ({reason}); retrying in {wait:.1f}s", file=sys.stderr)
        time.sleep(wait)
        delay = min(delay * 2, 30.0)
    raise GaveUp("no attempts made")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Save a day's VasBox sales as CSV.")
    parser.add_argument("--date", help="the day to fetch (default: yesterday, business time)")
    parser.add_argument("--dir", default=".", help="where to write sales-YYYY-MM-DD.csv")
    parser.add_argument("--attempts", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per attempt")
    parser.add_argument("--retry-delay", type=float, default=1.0, help="first wait; doubles")
    args = parser.parse_args(argv)

    token = os.environ.get("VASBOX_API_TOKEN", "").strip()
    if not token:
        print(
            "daily_sales_report: set VASBOX_API_TOKEN (never pass it as an argument)",
            file=sys.stderr,
        )
        return 2
    base = os.environ.get("VASBOX_API_URL", "http://127.0.0.1:8000").rstrip("/")
    retry = {"attempts": max(1, args.attempts), "timeout": args.timeout, "delay": args.retry_delay}
    try:
        if args.date:
            day = date.fromisoformat(args.date)
        else:
            me = json.loads(get(base + "/api/v1/me", token, "application/json", **retry))
            now = datetime.now(ZoneInfo(me["business"]["timezone"]))
            day = now.date() - timedelta(days=1)
        query = urllib.parse.urlencode({"from": day.isoformat(), "to": day.isoformat()})
        csv_bytes = get(f"{base}/api/v1/reports/sales?{query}", token, "text/csv", **retry)
    except ValueError as error:
        print(f"daily_sales_report: {error}", file=sys.stderr)
        return 2
    except Refused as error:
        print(f"daily_sales_report: the server refused: {error}", file=sys.stderr)
        return 1
    except GaveUp as error:
        print(f"daily_sales_report: {error}", file=sys.stderr)
        return 3

    os.makedirs(args.dir, exist_ok=True)
    target = os.path.join(args.dir, f"sales-{day.isoformat()}.csv")
    fd, partial = tempfile.mkstemp(dir=args.dir, prefix=".sales-", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(csv_bytes)
        os.replace(partial, target)
    except OSError:
        os.unlink(partial)
        raise
    rows = max(0, csv_bytes.count(b"\n") - 1)
    print(f"saved {target} ({rows} row{'s' if rows != 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
