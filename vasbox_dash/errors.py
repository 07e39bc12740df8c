"""Error responses: HTML pages in the site layout, problem+json under /api, never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from .database import is_lock_timeout
from .extensions import db
from .htmx import hx_retarget, is_htmx

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://docs.vasbox.example/problems/"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
DEFAULT_PROBLEM_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}


def wants_problem_json() -> bool:
    """True for API requests, which always get application/problem+json errors."""
    return request.path.startswith("/api/")


def problem(
    status: int,
    detail: str,
    *,
    type_: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra,
) -> Response:
    """An RFC 9457 problem+json response with the request id support can quote."""
    body = {
        "type": PROBLEM_BASE + (type_ or DEFAULT_PROBLEM_TYPES.get(status, "error")),
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "request_id": g.get("request_id"),
        **extra,
    }
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_page(status: int, message: str | None = None, headers=None) -> Response:
    """The HTML error response: a full page, or for htmx an alert swapped into #alerts."""
    if is_htmx():
        body = render_template("_alert.html", level="error", message=message or TITLES[status])
        response = hx_retarget(make_response(body, status), "#alerts")
    else:
        body = render_template(
            f"errors/{status}.html" if status in (403, 404, 429, 500) else "errors/generic.html",
            status=status,
            title=TITLES.get(status, "Error"),
            message=message,
        )
        response = make_response(body, status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _respond(status: int, message: str | None, headers=None) -> Response:
    if wants_problem_json():
        return problem(status, message or TITLES.get(status, "Error"), headers=headers)
    return error_page(status, message, headers)


def register(app: Flask) -> None:
    """Install the error handlers on the app."""

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return _respond(
            400,
            "This form has expired or was sent from another page. "
            "Reload the page and try again; nothing was changed.",
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if isinstance(error, InternalServerError):
            return internal_error(error)
        status = error.code or 500
        headers = {k: v for k, v in error.get_headers() if k.lower() not in {"content-type"}}
        message = error.description if error.description and not _generic(error) else None
        if status == 429 and not message:
            message = "Too many requests. Wait a moment and try again."
        return _respond(status, message, headers)

    @app.errorhandler(OperationalError)
    def database_error(error: OperationalError):
        db.session.rollback()
        if is_lock_timeout(error):
            log.warning("database lock timeout on %s %s", request.method, request.path)
            return _respond(
                503,
                "The service is busy. Try again in a moment; nothing was changed.",
                {"Retry-After": "2"},
            )
        return internal_error(error)

    @app.errorhandler(Exception)
    def internal_error(error: Exception):
        if isinstance(error, HTTPException) and not isinstance(error, InternalServerError):
            return http_error(error)
        original = getattr(error, "original_exception", None) or error
        log.error(
            "unhandled error %s on %s %s (request %s)",
            type(original).__name__,
            request.method,
            request.path,
            g.get("request_id"),
            exc_info=original,
        )
        db.session.rollback()
        if isinstance(original, ServiceUnavailable):
            return _respond(503, None)
        return _respond(
            500,
            f"Something went wrong on our side. Quote request {g.get('request_id')} to support.",
        )


def _generic(error: HTTPException) -> bool:
    """True when the description is Werkzeug's stock text, which we replace with our own."""
    return error.description == type(error).description
