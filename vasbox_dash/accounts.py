"""Businesses and users: creation, roles and deactivation (shared by CLI and web)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select, update

from . import audit
from .database import begin_write
from .extensions import db
from .models import Business, Role, User, UserSession, utcnow
from .security import hash_password, password_problem


class AccountError(ValueError):
    """A request that cannot be carried out; the message is meant for the person asking."""


def normalize_email(email: str) -> str:
    """Return email trimmed and lower-cased, the form it is stored and looked up in."""
    return email.strip().lower()


def validate_timezone(name: str) -> str:
    """Return name if it is an IANA timezone, else raise AccountError."""
    try:
        ZoneInfo(name)
        return name
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise AccountError(f"Unknown timezone {name!r}; use an IANA name such as Africa/Harare.")


def find_business(name_or_id: str) -> Business | None:
    """Find a business by exact id or case-insensitive name."""
    if name_or_id.isdigit():
        found = db.session.get(Business, int(name_or_id))
        if found:
            return found
    return db.session.scalar(
        select(Business).where(Business.name_key == name_or_id.strip().casefold())
    )


def create_business(name: str, timezone: str = "Africa/Harare") -> Business:
    """Create and commit a business; names are unique, case-insensitively."""
    name = name.strip()
    if not name or len(name) > 120:
        raise AccountError("Business name must be 1 to 120 characters.")
    validate_timezone(timezone)
    begin_write()
    if find_business(name) is not None:
        db.session.rollback()
        raise AccountError(f"A business named {name!r} already exists.")
    business = Business(name=name, name_key=name.casefold(), timezone=timezone)
    db.session.add(business)
    db.session.commit()
    return business


def _check_role(role: str, business: Business | None) -> Role:
    try:
        parsed = Role(role)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise AccountError(f"Unknown role {role!r}; choose one of {choices}.") from None
    if parsed == Role.SUPPORT and business is not None:
        raise AccountError("Support staff belong to VasBox, not to a business; omit --business.")
    if parsed != Role.SUPPORT and business is None:
        raise AccountError(f"A {parsed.value} must belong to a business; pass --business.")
    return parsed


def create_user(
    *, business: Business | None, email: str, name: str, role: str, password: str
) -> User:
    """Create and commit a user after checking role, email uniqueness and password strength."""
    parsed_role = _check_role(role, business)
    email = normalize_email(email)
    if "@" not in email or len(email) > 254 or email.startswith("@") or email.endswith("@"):
        raise AccountError(f"{email!r} is not a valid email address.")
    name = name.strip()
    if not name or len(name) > 120:
        raise AccountError("Display name must be 1 to 120 characters.")
    problem = password_problem(password)
    if problem:
        raise AccountError(problem)
    password_hash = hash_password(password)
    begin_write()
    if db.session.scalar(select(func.count()).where(User.email == email)):
        db.session.rollback()
        raise AccountError(f"A user with the email {email} already exists.")
    user = User(
        business_id=business.id if business else None,
        email=email,
        display_name=name,
        password_hash=password_hash,
        role=parsed_role.value,
    )
    db.session.add(user)
    db.session.commit()
    return user


def get_user_by_email(email: str) -> User | None:
    """Return the user with this email (case-insensitive), or None."""
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def _require_user(email: str) -> User:
    user = get_user_by_email(email)
    if user is None:
        raise AccountError(f"No user with the email {normalize_email(email)}.")
    return user


def set_role(email: str, role: str) -> User:
    """Change a user's role; API tokens they created follow the new role at once."""
    begin_write()
    user = _require_user(email)
    new_role = _check_role(role, user.business)
    old_role = user.role
    user.role = new_role.value
    audit.record(
        "user.role_changed",
        business_id=user.business_id,
        target_type="user",
        target_id=user.id,
        details={"email": user.email, "from": old_role, "to": new_role.value},
    )
    db.session.commit()
    return user


def end_sessions(user_id: int, reason: str) -> int:
    """End every live server-side session of the user; returns how many were ended."""
    result = db.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason=reason)
    )
    return result.rowcount or 0


def deactivate_user(email: str) -> User:
    """Deactivate a user and end their sessions at once; their tokens stop working."""
    begin_write()
    user = _require_user(email)
    user.active = False
    ended = end_sessions(user.id, "deactivated")
    audit.record(
        "user.deactivated",
        business_id=user.business_id,
        target_type="user",
        target_id=user.id,
        details={"email": user.email, "sessions_ended": ended},
    )
    db.session.commit()
    return user


def set_password(email: str, password: str) -> User:
    """Set a new password and end the user's sessions, so an old cookie cannot be replayed."""
    problem = password_problem(password)
    if problem:
        raise AccountError(problem)
    password_hash = hash_password(password)
    begin_write()
    user = _require_user(email)
    user.password_hash = password_hash
    end_sessions(user.id, "password_changed")
    audit.record(
        "user.password_changed",
        business_id=user.business_id,
        target_type="user",
        target_id=user.id,
    )
    db.session.commit()
    return user
