"""VasBox Dash: where a Business Owner manages API tokens."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import load_config

ROOT = Path(__file__).resolve().parent.parent
TOKEN_IN_TEXT = re.compile(r"vbx_[0-9A-Za-z]+")

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


class RedactTokens(logging.Filter):
    """Defence in depth: scrub anything shaped like a token from every log record,
    including exception text and stack traces."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "vbx_" in message:
            record.msg = TOKEN_IN_TEXT.sub("vbx_[REDACTED]", message)
            record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            # Format the traceback now, redacted, so no handler formats the raw one later.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = TOKEN_IN_TEXT.sub("vbx_[REDACTED]", text)
            record.exc_info = None
        elif record.exc_text and "vbx_" in record.exc_text:
            record.exc_text = TOKEN_IN_TEXT.sub("vbx_[REDACTED]", record.exc_text)
        if record.stack_info and "vbx_" in record.stack_info:
            record.stack_info = TOKEN_IN_TEXT.sub("vbx_[REDACTED]", record.stack_info)
        return True


_redactor = RedactTokens()


def _install_log_redaction() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    # Alembic announces each of its plugins at INFO whenever it is imported; that is noise.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    for handler in root.handlers:
        if not any(isinstance(f, RedactTokens) for f in handler.filters):
            handler.addFilter(_redactor)
    # Handlers added later (by gunicorn, a test harness, an operator's config) are covered
    # too: every record is redacted as it is created.
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "vasbox_redacts", False):

        def redacting_factory(*args, **kwargs) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            _redactor.filter(record)
            return record

        redacting_factory.vasbox_redacts = True
        logging.setLogRecordFactory(redacting_factory)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: config, then extensions, then blueprints, then request hooks."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_mapping(load_config(app.instance_path, overrides=test_config))
    _install_log_redaction()

    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from . import errors, filters
    from .database import configure_engine
    from .extensions import csrf, db, limiter, login_manager, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    login_manager.session_protection = None  # server-side session records do this job
    csrf.init_app(app)
    limiter.init_app(app)
    with app.app_context():
        configure_engine(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])

    from . import activity, api, auth, dashboard, main, support

    app.register_blueprint(auth.bp)
    app.register_blueprint(main.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(support.bp)
    app.register_blueprint(support.owner_bp)
    app.register_blueprint(activity.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # bearer tokens only; a test proves cookies never authenticate the API
    api.init_app(app)

    filters.register(app)
    errors.register(app)
    _register_hooks(app)

    from .cli import register_flask_commands

    register_flask_commands(app)
    return app


def _register_hooks(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        g.request_id = str(uuid.uuid4())

    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
        headers["X-Frame-Options"] = "DENY"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if app.config["HSTS"]:
            headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        if "request_id" in g:
            headers["X-Request-ID"] = g.request_id
        if not request.path.startswith("/static/"):
            # Signed-in pages show business data; keep them out of shared caches.
            headers.setdefault("Cache-Control", "private, no-cache")
        response.vary.add("HX-Request")
        return response
