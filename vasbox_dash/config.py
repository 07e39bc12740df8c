"""Configuration: defaults, VASBOX_* environment variables, and fail-loud validation."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WEAK_SECRETS = {"", "dev", "secret", "changeme", "change-me", "password", "test", "development"}
MIN_SECRET_LENGTH = 32


class ConfigError(RuntimeError):
    """Raised when the configuration cannot be used; the message says how to fix it."""


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}.")


def _positive_int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}.") from None
    if number <= 0:
        raise ConfigError(f"{name} must be greater than zero.")
    return number


def _positive_float(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}.") from None
    if not 0 < number < 86400:
        raise ConfigError(f"{name} must be more than 0 and less than a day.")
    return number


def _instance_secret(instance_path: str, filename: str) -> str:
    """Return a secret kept in the instance folder, creating it (mode 0600) on first use.

    Local and demo installs get stable secrets without setup, so sessions and tokens
    survive restarts. Production must pass secrets explicitly instead.
    """
    path = Path(instance_path) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _check_strong(name: str, value: str | None) -> str:
    if value is None or value.strip().lower() in WEAK_SECRETS:
        raise ConfigError(
            f"{name} is missing or a well-known placeholder. In production, set it to a random "
            f"value of at least {MIN_SECRET_LENGTH} characters, for example the output of "
            '`python -c "import secrets; print(secrets.token_urlsafe(48))"`.'
        )
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{name} is too short ({len(value)} characters); use at least {MIN_SECRET_LENGTH}."
        )
    return value


def _parse_previous_peppers(raw: str) -> dict[int, str]:
    """Parse "VERSION:SECRET,VERSION:SECRET" for peppers kept during a rotation."""
    peppers: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        version, sep, secret = item.partition(":")
        if not sep or not version.isdigit() or not secret:
            raise ConfigError(
                "VASBOX_TOKEN_PEPPER_PREVIOUS must look like '1:oldsecret,2:othersecret'."
            )
        peppers[int(version)] = secret
    return peppers


def load_config(
    instance_path: str, environ: Mapping[str, str] | None = None, overrides: Mapping | None = None
) -> dict[str, Any]:
    """Build the Flask config from defaults, the VASBOX_* environment and test overrides."""
    env = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    app_env = overrides.get("VASBOX_ENV", env.get("VASBOX_ENV", "development")).strip().lower()
    if app_env not in {"development", "production", "testing"}:
        raise ConfigError("VASBOX_ENV must be development, production or testing.")
    production = app_env == "production"

    secret_key = env.get("VASBOX_SECRET_KEY") or overrides.get("SECRET_KEY")
    pepper = env.get("VASBOX_TOKEN_PEPPER") or overrides.get("TOKEN_PEPPER")
    if production:
        secret_key = _check_strong("VASBOX_SECRET_KEY", secret_key)
        pepper = _check_strong("VASBOX_TOKEN_PEPPER", pepper)
        if secret_key == pepper:
            raise ConfigError("VASBOX_TOKEN_PEPPER must differ from VASBOX_SECRET_KEY.")
    else:
        secret_key = secret_key or _instance_secret(instance_path, "secret_key")
        pepper = pepper or _instance_secret(instance_path, "token_pepper")

    pepper_version = _positive_int(env.get("VASBOX_TOKEN_PEPPER_VERSION", "1"), "pepper version")
    peppers = _parse_previous_peppers(env.get("VASBOX_TOKEN_PEPPER_PREVIOUS", ""))
    peppers[pepper_version] = pepper

    default_db = "sqlite:///" + str(Path(instance_path) / "vasbox.sqlite3")
    cookie_secure_raw = env.get("VASBOX_COOKIE_SECURE")
    cookie_secure = (
        _bool(cookie_secure_raw, "VASBOX_COOKIE_SECURE") if cookie_secure_raw else production
    )
    idle = _positive_int(
        env.get("VASBOX_SESSION_IDLE_MINUTES", "30"), "VASBOX_SESSION_IDLE_MINUTES"
    )
    absolute = _positive_int(
        env.get("VASBOX_SESSION_ABSOLUTE_HOURS", "12"), "VASBOX_SESSION_ABSOLUTE_HOURS"
    )

    config: dict[str, Any] = {
        "VASBOX_ENV": app_env,
        "SECRET_KEY": secret_key,
        "TOKEN_PEPPERS": peppers,
        "TOKEN_PEPPER_VERSION": pepper_version,
        "SQLALCHEMY_DATABASE_URI": env.get("VASBOX_DATABASE_URL", default_db),
        "RATELIMIT_STORAGE_URI": env.get("VASBOX_RATELIMIT_STORAGE_URL", "memory://"),
        # Lets several installs (or test runs) share one Redis without sharing counts.
        "RATELIMIT_KEY_PREFIX": env.get("VASBOX_RATELIMIT_KEY_PREFIX", ""),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_STRATEGY": "moving-window",
        "SESSION_IDLE_SECONDS": idle * 60,
        "SESSION_ABSOLUTE_SECONDS": absolute * 3600,
        "SESSION_COOKIE_NAME": "vasbox_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": cookie_secure,
        "REMEMBER_COOKIE_SECURE": cookie_secure,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "HSTS": production,
        "WTF_CSRF_TIME_LIMIT": None,  # the CSRF token lives as long as the server-side session
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "MAX_ACTIVE_TOKENS": _positive_int(
            env.get("VASBOX_MAX_ACTIVE_TOKENS", "50"), "VASBOX_MAX_ACTIVE_TOKENS"
        ),
        "API_RATE_LIMIT": env.get("VASBOX_API_RATE_LIMIT", "600 per minute"),
        "API_AUTH_FAILURE_LIMIT": env.get("VASBOX_API_AUTH_FAILURE_LIMIT", "30 per minute"),
        "LOGIN_ACCOUNT_LIMIT": env.get("VASBOX_LOGIN_ACCOUNT_LIMIT", "5 per 15 minutes"),
        "LOGIN_IP_LIMIT": env.get("VASBOX_LOGIN_IP_LIMIT", "20 per 15 minutes"),
        "SUPPORT_CODE_AGENT_LIMIT": env.get("VASBOX_SUPPORT_CODE_AGENT_LIMIT", "5 per 15 minutes"),
        "SUPPORT_CODE_BUSINESS_LIMIT": env.get(
            "VASBOX_SUPPORT_CODE_BUSINESS_LIMIT", "10 per 15 minutes"
        ),
        "TRUSTED_PROXIES": int(env.get("VASBOX_TRUSTED_PROXIES", "0") or 0),
        "SQLITE_BUSY_TIMEOUT_MS": 5000,
        "ARGON2_PARAMS": None,  # None means argon2-cffi's RFC 9106 low-memory defaults
        "USAGE_FLUSH_INTERVAL": _positive_float(
            env.get("VASBOX_USAGE_FLUSH_INTERVAL", "1"), "VASBOX_USAGE_FLUSH_INTERVAL"
        ),
        "USAGE_BUFFER_MAX": 500,
        # Tests flush usage records by hand (usage.flush()); servers write them in the
        # background.
        "USAGE_BACKGROUND_FLUSH": app_env != "testing",
    }
    config.update(overrides)
    return config
