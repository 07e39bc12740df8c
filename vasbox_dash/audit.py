"""Writing audit events. The caller commits, so an action and its audit row share one
transaction."""

from __future__ import annotations

from typing import Any

from flask import has_request_context, request

from .extensions import db
from .models import AuditEvent, utcnow


def client_ip() -> str | None:
    """The client's IP as Flask sees it (ProxyFix decides how far X-Forwarded-For is trusted)."""
    return request.remote_addr if has_request_context() else None


def client_user_agent() -> str | None:
    """The request's User-Agent, cut to fit the column."""
    if not has_request_context():
        return None
    agent = request.headers.get("User-Agent")
    return agent[:255] if agent else None


def record(
    action: str,
    *,
    business_id: int | None,
    actor_user_id: int | None = None,
    actor_token_id: int | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the session (not committed); details must never hold secrets."""
    event = AuditEvent(
        created_at=utcnow(),
        business_id=business_id,
        actor_user_id=actor_user_id,
        actor_token_id=actor_token_id,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        ip=client_ip(),
        user_agent=client_user_agent(),
        details=details or {},
    )
    db.session.add(event)
    return event
