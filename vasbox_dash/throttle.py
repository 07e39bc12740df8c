"""Throttles on the shared limiter storage (Redis in production), so limits hold across
every worker process, not per process."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import current_app
from limits import parse

from .extensions import limiter


@dataclass(frozen=True)
class Throttle:
    """A named limit, read from app config, counted per identifier (an IP, an email, ...)."""

    name: str
    config_key: str

    def _item(self):
        return parse(current_app.config[self.config_key])

    def _keys(self, identifiers: tuple[str, ...]) -> tuple[str, ...]:
        # The prefix keeps apps (or test runs) that share one Redis from sharing counts.
        return (current_app.config.get("RATELIMIT_KEY_PREFIX") or "vasbox", self.name, *identifiers)

    def retry_after(self, *identifiers: str) -> int | None:
        """Seconds until another attempt is allowed, or None if one is allowed now."""
        item = self._item()
        keys = self._keys(identifiers)
        if limiter.limiter.test(item, *keys):
            return None
        stats = limiter.limiter.get_window_stats(item, *keys)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def hit(self, *identifiers: str) -> bool:
        """Count one attempt; False if it went over the limit."""
        return limiter.limiter.hit(self._item(), *self._keys(identifiers))

    def clear(self, *identifiers: str) -> None:
        """Forget the attempts counted for identifiers."""
        limiter.limiter.clear(self._item(), *self._keys(identifiers))


login_by_account = Throttle("login-account", "LOGIN_ACCOUNT_LIMIT")
login_by_ip = Throttle("login-ip", "LOGIN_IP_LIMIT")
api_auth_failures = Throttle("api-auth-failure", "API_AUTH_FAILURE_LIMIT")
# Wrong support codes, counted per agent and per business (a grant is one business).
support_code_by_agent = Throttle("support-code-agent", "SUPPORT_CODE_AGENT_LIMIT")
support_code_by_business = Throttle("support-code-business", "SUPPORT_CODE_BUSINESS_LIMIT")
