#!/usr/bin/env python3
"""Push one receipt from a point-of-sale system to VasBox, safely retried.

The token comes from the environment only, never from the command line (other users of
the machine can read command lines, and shells keep them in history):

    export VASBOX_API_TOKEN=vbx_...               # a token made by a cashier, manager or owner
    export VASBOX_API_URL=https://vasbox.example.com   # default http://127.0.0.1:8000
    python3 pos_push_receipt.py receipt.json --idempotency-key POS1-000123

receipt.json (amounts are strings, so no cents are lost to floating point):

    {"branch": "Harare CBD", "currency": "USD", "payment_method": "cash",
     "issued_at": "2026-12-03T14:05:00+02:00",
     "lines": [{"description": "White loaf", "quantity": "2", "unit_price": "1.20"}]}

Every attempt carries the same Idempotency-Key, so a retry after a timeout or a 5xx can
never create a second receipt, and running the script again with the same receipt (and
key) is safe too. Use the POS's own receipt number as the key; without --idempotency-key
the key is derived from the receipt's content. Only the standard library is needed.

Exit status: 0 stored (or already stored), 1 refused by the server, 2 bad usage,
3 gave up after retrying.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request

RETRYABLE = {408, 429, 500, 502, 503, 504}


def fail(message: str, status: int) -> int:
    print(f"pos_push_receipt: {message}", file=sys.stderr)
    return status


def describe_problem(body: bytes) -> str:
    """The server's problem+json detail (and request id), or the raw start of the body."""
    try:
        problem = json.loads(body)
        text = problem.get("detail") or problem.get("title") or ""
        for error in problem.get("errors", []):
            where = error.get("pointer") or error.get("parameter") or ""
            text += f"\n  {where}: {error.get('detail')}"
        if problem.get("request_id"):
            text += f"\n  (request id {problem['request_id']})"
        return text
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")


def push(
    url: str, token: str, receipt: bytes, key: str, attempts: int, timeout: float, delay: float
) -> int:
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url + "/api/v1/receipts",
            data=receipt,
            method="POST",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Idempotency-Key": key,
                "User-Agent": "vasbox-pos-example/1.0",
            },
        )
        wait = delay
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                stored = json.loads(response.read())
                again = response.headers.get("Idempotent-Replayed") == "true"
                note = " (it was already stored; nothing new was created)" if again else ""
                print(f"receipt {stored['id']} total {stored['currency']} {stored['total']}{note}")
                return 0
        except urllib.error.HTTPError as error:
            body = error.read()
            if error.code not in RETRYABLE:
                return fail(
                    f"the server refused the receipt ({error.code}): {describe_problem(body)}", 1
                )
            retry_after = error.headers.get("Retry-After", "")
            if retry_after.isdigit():
                wait = max(wait, float(retry_after))
            reason = f"HTTP {error.code}"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = str(getattr(error, "reason", None) or error) or type(error).__name__
        if attempt == attempts:
            return fail(
                f"gave up after {attempts} attempts (last: {reason}); run again later "
                "with the same key, it is safe",
                3,
            )
        print(f"attempt {attempt} failed ({reason}); retrying in {wait:.1f}s", file=sys.stderr)
        time.sleep(wait + random.uniform(0, wait / 4))
        delay = min(delay * 2, 30.0)
    return 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Push a receipt to VasBox with retries.")
    parser.add_argument("receipt", help="JSON file with the receipt, or - for standard input")
    parser.add_argument("--idempotency-key", help="unique per receipt, e.g. the POS number")
    parser.add_argument("--attempts", type=int, default=5, help="tries before giving up")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")
    parser.add_argument("--retry-delay", type=float, default=1.0, help="first wait; doubles")
    args = parser.parse_args(argv)

    token = os.environ.get("VASBOX_API_TOKEN", "").strip()
    if not token:
        return fail("set VASBOX_API_TOKEN to an API token (never pass it as an argument)", 2)
    url = os.environ.get("VASBOX_API_URL", "http://127.0.0.1:8000").rstrip("/")
    try:
        raw = sys.stdin.read() if args.receipt == "-" else open(args.receipt).read()
        receipt = json.loads(raw)
    except (OSError, ValueError) as error:
        return fail(f"cannot read the receipt: {error}", 2)
    body = json.dumps(receipt, sort_keys=True, separators=(",", ":")).encode()
    key = args.idempotency_key or "receipt-" + hashlib.sha256(body).hexdigest()[:40]
    return push(url, token, body, key, max(1, args.attempts), args.timeout, args.retry_delay)


if __name__ == "__main__":
    sys.exit(main())
