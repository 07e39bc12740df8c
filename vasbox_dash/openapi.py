"""The OpenAPI 3.1 description of /api/v1, built from the same constants the API enforces."""

from __future__ import annotations

from functools import cache
from typing import Any

from .receipts import (
    BRANCH_MAX,
    CURRENCIES,
    DEFAULT_PAGE,
    DESCRIPTION_MAX,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_LINES,
    MAX_PAGE,
    MAX_RECEIPT_ID,
    PAYMENT_METHODS,
    PRICE_PATTERN,
    QUANTITY_PATTERN,
    TEXT_PATTERN,
)
from .security import PUBLIC_ID_ALPHABET, PUBLIC_ID_LENGTH
from .tokens import ALL_PERMISSIONS

PROBLEM_JSON = "application/problem+json"

DESCRIPTION = """\
The VasBox API for point-of-sale systems, accounting software and scripts.

**Authentication.** Send a token from the API Tokens page in the `Authorization` header:
`Authorization: Bearer vbx_…`. Tokens in a URL or a request body are refused with 400.

**Permissions** are those of the token's creator, from their role at the time of each request:

| creator's role | may use |
|---|---|
| owner | everything |
| manager | receipts (read and write) and reports |
| cashier | create and read receipts |
| deactivated | nothing (401) |

A role without the permission gets 403 with `error="insufficient_scope"`.

**Errors** are `application/problem+json` (RFC 9457) with a `request_id` to quote to support.

**Amounts** are decimal strings such as `"12.50"`, never JSON numbers.
"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _response(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _problem(description: str, schema: str = "Problem", headers: dict | None = None) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _ref(schema)}},
    }
    if headers:
        response["headers"] = headers
    return response


def _money(description: str) -> dict:
    return {"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$", "description": description}


def _schemas() -> dict[str, Any]:
    public_id = f"[{PUBLIC_ID_ALPHABET}]{{{PUBLIC_ID_LENGTH}}}"
    count_and_total = {
        "currency": {"type": "string", "enum": sorted(CURRENCIES)},
        "receipts": {"type": "integer", "minimum": 1},
        "total": _money("Sum of the receipts' totals."),
    }
    return {
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail", "request_id"],
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "request_id": {"type": ["string", "null"]},
                "required_permission": {"type": "string"},
                "receipt_id": {"type": "integer"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["detail"],
                        "properties": {
                            "pointer": {
                                "type": "string",
                                "description": "JSON Pointer (RFC 6901) to the bad body field.",
                            },
                            "parameter": {
                                "type": "string",
                                "description": "Name of the bad query parameter.",
                            },
                            "detail": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Me": {
            "type": "object",
            "required": ["business", "creator", "token", "permissions"],
            "additionalProperties": False,
            "properties": {
                "business": {
                    "type": "object",
                    "required": ["id", "name", "timezone"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "timezone": {"type": "string", "description": "IANA timezone name."},
                    },
                },
                "creator": {
                    "type": "object",
                    "required": ["id", "name", "role"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "role": {"type": "string", "enum": ["owner", "manager", "cashier"]},
                    },
                },
                "token": {
                    "type": "object",
                    "required": ["id", "name", "created_at"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {
                            "type": "string",
                            "pattern": f"^vbx_{public_id}$",
                            "description": "The token's public identifier (not the secret).",
                        },
                        "name": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                    },
                },
                "permissions": {
                    "type": "array",
                    "items": {"type": "string", "enum": sorted(ALL_PERMISSIONS)},
                },
            },
        },
        "LineInput": {
            "type": "object",
            "required": ["description", "quantity", "unit_price"],
            "additionalProperties": False,
            "properties": {
                "description": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": DESCRIPTION_MAX,
                    "pattern": TEXT_PATTERN,
                },
                "quantity": {
                    "type": "string",
                    "pattern": QUANTITY_PATTERN,
                    "description": "Above 0, below 10^9, at most 3 decimals.",
                    "examples": ["2", "0.75"],
                },
                "unit_price": {
                    "type": "string",
                    "pattern": PRICE_PATTERN,
                    "description": "From 0 to below 10^12, at most 2 decimals.",
                    "examples": ["12.50"],
                },
            },
        },
        "ReceiptInput": {
            "type": "object",
            "required": ["branch", "currency", "payment_method", "issued_at", "lines"],
            "additionalProperties": False,
            "properties": {
                "branch": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": BRANCH_MAX,
                    "pattern": TEXT_PATTERN,
                },
                "currency": {
                    "type": "string",
                    "enum": sorted(CURRENCIES),
                    "description": "ISO 4217 code, e.g. USD or ZWG.",
                },
                "payment_method": {"type": "string", "enum": list(PAYMENT_METHODS)},
                "issued_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the sale happened (RFC 3339, with an offset); from "
                    "the year 2000 up to one day ahead of the server's clock.",
                },
                "lines": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_LINES,
                    "items": _ref("LineInput"),
                },
            },
        },
        "ReceiptLine": {
            "type": "object",
            "required": ["description", "quantity", "unit_price", "line_total"],
            "additionalProperties": False,
            "properties": {
                "description": {"type": "string"},
                "quantity": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                "unit_price": _money("Price of one unit."),
                "line_total": _money("quantity × unit_price, rounded half up to cents."),
            },
        },
        "Receipt": {
            "type": "object",
            "required": [
                "id",
                "branch",
                "currency",
                "payment_method",
                "issued_at",
                "total",
                "lines",
                "created_at",
            ],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "branch": {"type": "string"},
                "currency": {"type": "string"},
                "payment_method": {"type": "string", "enum": list(PAYMENT_METHODS)},
                "issued_at": {"type": "string", "format": "date-time"},
                "total": _money("Sum of the line totals, computed by the server."),
                "lines": {"type": "array", "items": _ref("ReceiptLine")},
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "ReceiptPage": {
            "type": "object",
            "required": ["data", "next_cursor"],
            "additionalProperties": False,
            "properties": {
                "data": {"type": "array", "items": _ref("Receipt")},
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "Pass as `cursor` for the next page; null on the last page.",
                },
            },
        },
        "SalesReport": {
            "type": "object",
            "required": ["from", "to", "timezone", "days", "branches", "totals"],
            "additionalProperties": False,
            "properties": {
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "timezone": {"type": "string"},
                "days": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["date", "currency", "receipts", "total"],
                        "additionalProperties": False,
                        "properties": {
                            "date": {"type": "string", "format": "date"},
                            **count_and_total,
                        },
                    },
                },
                "branches": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["branch", "currency", "receipts", "total"],
                        "additionalProperties": False,
                        "properties": {"branch": {"type": "string"}, **count_and_total},
                    },
                },
                "totals": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["currency", "receipts", "total"],
                        "additionalProperties": False,
                        "properties": count_and_total,
                    },
                },
            },
        },
    }


def _responses() -> dict[str, Any]:
    retry_after = {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    }
    challenge = {
        "WWW-Authenticate": {
            "description": 'Bearer realm="vasbox", with error="invalid_token" when a token '
            "was sent but does not work.",
            "required": True,
            "schema": {"type": "string"},
        }
    }
    return {
        "BadRequest": _problem(
            "A bad or unknown query parameter, a bad header, a body that is not JSON, or a "
            "token sent outside the Authorization header."
        ),
        "Unauthorized": _problem(
            "No token, or a token that does not work (the body is the same whatever the reason).",
            headers=challenge,
        ),
        "Forbidden": _problem(
            "The token's creator's role lacks the permission (error=\"insufficient_scope\").",
            headers={
                "WWW-Authenticate": {
                    "description": 'Bearer realm="vasbox", error="insufficient_scope", scope="…".',
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        ),
        "NotFound": _problem("No such object in the token's business."),
        "TooManyRequests": _problem(
            "The token's rate limit, or this address's limit on failed authentications, "
            "was exceeded.",
            headers=retry_after,
        ),
    }


def _common(*extra: tuple[str, dict]) -> dict[str, Any]:
    responses = {
        "400": _response("BadRequest"),
        "401": _response("Unauthorized"),
        "429": _response("TooManyRequests"),
    }
    responses.update(dict(extra))
    return dict(sorted(responses.items()))


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document served at /api/v1/openapi.json."""
    forbidden = ("403", _response("Forbidden"))
    date_or_time = {
        "anyOf": [
            {"type": "string", "format": "date"},
            {"type": "string", "format": "date-time"},
        ]
    }
    receipt_json = {"application/json": {"schema": _ref("Receipt")}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "VasBox API", "version": "1.0.0", "description": DESCRIPTION},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearerAuth": []}],
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "vbx_ token from the API Tokens page",
                }
            },
            "schemas": _schemas(),
            "responses": _responses(),
        },
        "paths": {
            "/me": {
                "get": {
                    "operationId": "getMe",
                    "summary": "The token, its business and its creator",
                    "description": "Any working token may call this; use it to check a setup.",
                    "responses": _common(
                        (
                            "200",
                            {
                                "description": "Who the token acts for.",
                                "content": {"application/json": {"schema": _ref("Me")}},
                            },
                        )
                    ),
                }
            },
            "/receipts": {
                "post": {
                    "operationId": "createReceipt",
                    "summary": "Create a receipt (receipts:write)",
                    "description": "The server computes line totals and the total with "
                    "decimal arithmetic. Send an `Idempotency-Key` to make retries safe: "
                    "the same key with the same body answers 201 with the original receipt "
                    "(and `Idempotent-Replayed: true`), creating nothing; the same key with "
                    "a different body answers 409.",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "description": "A unique key per receipt, e.g. a UUID; kept for "
                            "the token's lifetime.",
                            "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ReceiptInput")}},
                    },
                    "responses": _common(
                        (
                            "201",
                            {
                                "description": "Created, or the original receipt for a "
                                "repeated Idempotency-Key and body.",
                                "headers": {
                                    "Location": {
                                        "description": "The receipt's URL.",
                                        "required": True,
                                        "schema": {"type": "string"},
                                    },
                                    "Idempotent-Replayed": {
                                        "description": "true when nothing new was stored.",
                                        "schema": {"type": "string", "enum": ["true"]},
                                    },
                                },
                                "content": receipt_json,
                            },
                        ),
                        forbidden,
                        ("409", _problem("The Idempotency-Key was used with another body.")),
                        ("413", _problem("The body is larger than 1 MB.")),
                        ("415", _problem("The body is not sent as application/json.")),
                        (
                            "422",
                            _problem("One or more fields are invalid; `errors` lists each."),
                        ),
                        (
                            "503",
                            _problem(
                                "The database is busy; retry with the same Idempotency-Key.",
                                headers={
                                    "Retry-After": {
                                        "description": "Seconds to wait.",
                                        "schema": {"type": "string"},
                                    }
                                },
                            ),
                        ),
                    ),
                },
                "get": {
                    "operationId": "listReceipts",
                    "summary": "List receipts, newest first (receipts:read)",
                    "description": "`from` is inclusive and `to` exclusive; a plain date "
                    "means that whole day in the business's timezone, so from=to=2026-12-03 "
                    "is that one day.",
                    "parameters": [
                        {"name": "from", "in": "query", "schema": date_or_time},
                        {"name": "to", "in": "query", "schema": date_or_time},
                        {
                            "name": "branch",
                            "in": "query",
                            "description": "Only this branch (exact match).",
                            "schema": {"type": "string", "minLength": 1, "maxLength": BRANCH_MAX},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_PAGE,
                                "default": DEFAULT_PAGE,
                            },
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "description": "next_cursor from the previous page.",
                            "schema": {"type": "string", "minLength": 1},
                        },
                    ],
                    "responses": _common(
                        (
                            "200",
                            {
                                "description": "A page of receipts.",
                                "content": {"application/json": {"schema": _ref("ReceiptPage")}},
                            },
                        ),
                        forbidden,
                    ),
                },
            },
            "/receipts/{receipt_id}": {
                "get": {
                    "operationId": "getReceipt",
                    "summary": "One receipt (receipts:read)",
                    "parameters": [
                        {
                            "name": "receipt_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RECEIPT_ID},
                        }
                    ],
                    "responses": _common(
                        ("200", {"description": "The receipt.", "content": receipt_json}),
                        forbidden,
                        ("404", _response("NotFound")),
                    ),
                }
            },
            "/reports/sales": {
                "get": {
                    "operationId": "getSalesReport",
                    "summary": "Sales per day and per branch (reports:read)",
                    "description": "Days are calendar days in the business's timezone; "
                    "from and to are inclusive and at most 366 days apart. Totals are per "
                    "currency. Send `Accept: text/csv` for CSV with one row per day, branch "
                    "and currency.",
                    "parameters": [
                        {
                            "name": "from",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "format": "date"},
                        },
                        {
                            "name": "to",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "format": "date"},
                        },
                    ],
                    "responses": _common(
                        (
                            "200",
                            {
                                "description": "The report.",
                                "content": {
                                    "application/json": {"schema": _ref("SalesReport")},
                                    "text/csv": {
                                        "schema": {"type": "string"},
                                        "example": "date,branch,currency,receipts,total\r\n"
                                        "2026-12-02,Harare CBD,USD,41,612.40\r\n",
                                    },
                                },
                            },
                        ),
                        forbidden,
                    ),
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI 3.1 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _response("BadRequest"),
                    },
                }
            },
        },
    }
