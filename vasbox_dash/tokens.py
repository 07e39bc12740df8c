"""The API token service shared by the dashboard and the API: issue, list, revoke, rename,
authenticate."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from flask import current_app
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from . import audit
from .database import begin_write
from .extensions import db
from .models import ApiToken, Business, Role, User, utcnow
from .security import generate_public_id, generate_token, hash_secret, parse_token, verify_secret

NAME_MAX = 80
BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class TokenError(ValueError):
    """A token request that cannot be carried out; the message is shown to the owner."""


class TokenAlreadyCreated(TokenError):
    """The create form with this one-time key was already used: a double submit."""


def clean_name(raw: str | None) -> str:
    """Return the trimmed, NFC-normalised name, or raise TokenError saying what is wrong."""
    name = unicodedata.normalize("NFC", (raw or "")).strip()
    # A name made only of invisible format characters (zero-width space, BOM) would show
    # as a blank row, so it counts as empty.
    if not name or all(unicodedata.category(ch) == "Cf" for ch in name):
        raise TokenError("Enter a name, such as “Accounting Software”.")
    if len(name) > NAME_MAX:
        raise TokenError(f"Use at most {NAME_MAX} characters (this name has {len(name)}).")
    # Zl and Zp are Unicode's line and paragraph separators: line breaks too.
    if any(unicodedata.category(ch) in {"Cc", "Cs", "Zl", "Zp"} for ch in name):
        raise TokenError("The name cannot contain control characters such as line breaks.")
    # Bidirectional overrides can make a name display as another token's name, reversed.
    if any(ch in BIDI_CONTROLS for ch in name):
        raise TokenError("The name cannot contain text-direction control characters.")
    return name


def name_key(name: str) -> str:
    """The case-insensitive form used for uniqueness among active tokens."""
    return name.casefold()


def _name_taken(business_id: int, key: str, exclude_id: int | None = None) -> bool:
    query = select(func.count()).where(
        ApiToken.business_id == business_id,
        ApiToken.name_key == key,
        ApiToken.revoked_at.is_(None),
    )
    if exclude_id is not None:
        query = query.where(ApiToken.id != exclude_id)
    return bool(db.session.scalar(query))


def _duplicate_message(name: str) -> str:
    return f"An active token is already named “{name}”. Choose a different name."


def active_count(business_id: int) -> int:
    """How many unrevoked tokens the business has."""
    return db.session.scalar(
        select(func.count()).where(
            ApiToken.business_id == business_id, ApiToken.revoked_at.is_(None)
        )
    )


def _key_used(business_id: int, creation_key: str | None) -> bool:
    if creation_key is None:
        return False
    query = select(func.count()).where(
        ApiToken.business_id == business_id, ApiToken.creation_key == creation_key
    )
    return bool(db.session.scalar(query))


def issue_token(
    creator: User, raw_name: str | None, creation_key: str | None = None
) -> tuple[ApiToken, str]:
    """Create a token for the creator's business; returns (token, plaintext).

    The plaintext is never stored: only its HMAC is, so this return value is the one
    and only chance to show it. A repeated creation_key raises TokenAlreadyCreated.
    """
    name = clean_name(raw_name)
    creator_id, business_id = creator.id, creator.business_id
    if business_id is None:
        raise TokenError("Only a business's users can create API tokens.")
    limit = current_app.config["MAX_ACTIVE_TOKENS"]
    begin_write()
    try:
        # Creates for one business take turns: on PostgreSQL two concurrent requests would
        # otherwise both count 49 active tokens and both insert. (SQLite's write lock
        # already serialises them.)
        db.session.execute(select(Business.id).where(Business.id == business_id).with_for_update())
        if _key_used(business_id, creation_key):
            raise TokenAlreadyCreated("This token was already created.")
        if active_count(business_id) >= limit:
            raise TokenError(
                f"This business already has {limit} active tokens, the most allowed. "
                "Revoke one you no longer use, then try again."
            )
        if _name_taken(business_id, name_key(name)):
            raise TokenError(_duplicate_message(name))
        public_id = generate_public_id()
        while db.session.scalar(select(func.count()).where(ApiToken.public_id == public_id)):
            public_id = generate_public_id()
        plaintext, secret = generate_token(public_id)
        secret_hash, pepper_version = hash_secret(secret)
        token = ApiToken(
            business_id=business_id,
            public_id=public_id,
            name=name,
            name_key=name_key(name),
            secret_hash=secret_hash,
            pepper_version=pepper_version,
            created_by_id=creator_id,
            created_at=utcnow(),
            creation_key=creation_key,
        )
        db.session.add(token)
        db.session.flush()
        _audit_token("token.created", token, creator_id, name=name)
        db.session.commit()
    except IntegrityError:
        # A concurrent create (same name or same form key) won the race for a unique index.
        db.session.rollback()
        if _key_used(business_id, creation_key):
            raise TokenAlreadyCreated("This token was already created.") from None
        raise TokenError(_duplicate_message(name)) from None
    except TokenError:
        db.session.rollback()
        raise
    return token, plaintext


def _audit_token(action: str, token: ApiToken, actor_id: int, **details) -> None:
    """Add a token audit event naming the token by id and public id (never its secret)."""
    audit.record(
        action,
        business_id=token.business_id,
        actor_user_id=actor_id,
        target_type="token",
        target_id=token.public_id,
        details={"token_id": token.id, "public_id": token.public_id, **details},
    )


def list_tokens(business_id: int) -> tuple[list[ApiToken], list[ApiToken]]:
    """Return (active tokens newest first, revoked tokens most recently revoked first)."""
    # The list shows who created and who revoked each token: load those people up front
    # rather than one lazy query per distinct person while the template renders.
    tokens = db.session.scalars(
        select(ApiToken)
        .where(ApiToken.business_id == business_id)
        .options(selectinload(ApiToken.created_by), selectinload(ApiToken.revoked_by))
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    ).all()
    active = [t for t in tokens if t.revoked_at is None]
    revoked = sorted((t for t in tokens if t.revoked_at), key=lambda t: t.revoked_at, reverse=True)
    return active, revoked


def get_token(business_id: int, public_id: str) -> ApiToken | None:
    """The business's token with this public id, or None (another business's is None too)."""
    return db.session.scalar(
        select(ApiToken).where(ApiToken.business_id == business_id, ApiToken.public_id == public_id)
    )


def revoke_token(actor: User, public_id: str) -> tuple[ApiToken | None, bool]:
    """Revoke the token; returns (token, changed). Revoking twice changes nothing.

    The row is locked first and the time taken after, so any write made with the token
    committed before revoked_at and none can commit after it.
    """
    actor_id, business_id = actor.id, actor.business_id
    begin_write()
    token = db.session.scalar(
        select(ApiToken)
        .where(ApiToken.business_id == business_id, ApiToken.public_id == public_id)
        .with_for_update()
    )
    if token is None or token.revoked_at is not None:
        db.session.rollback()
        return token, False
    token.revoked_at = utcnow()
    token.revoked_by_id = actor_id
    _audit_token("token.revoked", token, actor_id, name=token.name)
    db.session.commit()
    return token, True


def rename_token(actor: User, public_id: str, raw_name: str | None) -> ApiToken | None:
    """Rename an active token (audited); None if the business has no such token."""
    name = clean_name(raw_name)
    actor_id, business_id = actor.id, actor.business_id
    begin_write()
    try:
        token = get_token(business_id, public_id)
        if token is None:
            db.session.rollback()
            return None
        if token.revoked_at is not None:
            raise TokenError("A revoked token cannot be renamed.")
        if token.name == name:
            db.session.rollback()
            return token
        if _name_taken(business_id, name_key(name), exclude_id=token.id):
            raise TokenError(_duplicate_message(name))
        old = token.name
        token.name, token.name_key = name, name_key(name)
        _audit_token("token.renamed", token, actor_id, **{"from": old, "to": name})
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise TokenError(_duplicate_message(name)) from None
    except TokenError:
        db.session.rollback()
        raise
    return token


Outcome = Literal["ok", "malformed", "unknown_token", "wrong_secret", "revoked", "creator_inactive"]

# What a token may do follows its creator's role at the moment of each request.
RECEIPTS_READ = "receipts:read"
RECEIPTS_WRITE = "receipts:write"
REPORTS_READ = "reports:read"
ALL_PERMISSIONS = frozenset({RECEIPTS_READ, RECEIPTS_WRITE, REPORTS_READ})
PERMISSIONS_BY_ROLE: dict[str, frozenset[str]] = {
    Role.OWNER: ALL_PERMISSIONS,  # everything, including permissions added later
    Role.MANAGER: frozenset({RECEIPTS_READ, RECEIPTS_WRITE, REPORTS_READ}),
    Role.CASHIER: frozenset({RECEIPTS_READ, RECEIPTS_WRITE}),
}


def role_permissions(role: str) -> frozenset[str]:
    """The permissions a token gets from a creator with this role (none for unknown roles)."""
    return PERMISSIONS_BY_ROLE.get(role, frozenset())


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an authenticated API request acts for: the token, its business and its creator."""

    token_id: int
    public_id: str
    token_name: str
    token_created_at: datetime
    last_used_at: datetime | None
    business_id: int
    business_name: str
    business_timezone: str
    creator_id: int
    creator_name: str
    creator_role: str

    @property
    def permissions(self) -> frozenset[str]:
        return role_permissions(self.creator_role)


@dataclass(slots=True)
class AuthResult:
    """What authenticating a presented token found; only outcome "ok" grants access.

    token_id and business_id are set whenever the public id matched a token, so a failed
    attempt can still be recorded against it; principal is set only when outcome is "ok".
    """

    outcome: Outcome
    public_id: str | None = None
    token_id: int | None = None
    business_id: int | None = None
    principal: Principal | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


_tokens = ApiToken.__table__
_users = User.__table__
_businesses = Business.__table__
# Built once: a Core statement with a bound parameter hits SQLAlchemy's compiled cache and
# skips ORM object loading, which profiling showed to be most of an API request's cost.
_LOOKUP = (
    select(
        _tokens.c.id,
        _tokens.c.public_id,
        _tokens.c.name,
        _tokens.c.created_at,
        _tokens.c.last_used_at,
        _tokens.c.secret_hash,
        _tokens.c.pepper_version,
        _tokens.c.revoked_at,
        _tokens.c.business_id,
        _businesses.c.name,
        _businesses.c.timezone,
        _users.c.id,
        _users.c.display_name,
        _users.c.role,
        _users.c.active,
    )
    .select_from(
        _tokens.join(_users, _users.c.id == _tokens.c.created_by_id).join(
            _businesses, _businesses.c.id == _tokens.c.business_id
        )
    )
    .where(_tokens.c.public_id == bindparam("public_id"))
)


def authenticate(presented: str) -> AuthResult:
    """Check a presented token: format and checksum (no database), then lookup by public id,
    constant-time HMAC compare, then the token's and its creator's state. No cache: a
    revocation is seen by the very next request on every worker."""
    parsed = parse_token(presented)
    if parsed is None:
        return AuthResult("malformed")
    row = db.session.connection().execute(_LOOKUP, {"public_id": parsed.public_id}).first()
    if row is None:
        return AuthResult("unknown_token", parsed.public_id)
    (
        token_id,
        public_id,
        name,
        created_at,
        last_used_at,
        secret_hash,
        pepper_version,
        revoked_at,
        business_id,
        business_name,
        timezone,
        creator_id,
        creator_name,
        role,
        active,
    ) = row
    result = AuthResult("ok", public_id, token_id, business_id)
    if not verify_secret(parsed.secret, secret_hash, pepper_version):
        result.outcome = "wrong_secret"
    elif revoked_at is not None:
        result.outcome = "revoked"
    elif not active:
        result.outcome = "creator_inactive"
    else:
        result.principal = Principal(
            token_id,
            public_id,
            name,
            created_at,
            last_used_at,
            business_id,
            business_name,
            timezone,
            creator_id,
            creator_name,
            role,
        )
    return result


@dataclass(frozen=True, slots=True)
class WriteCheck:
    """The token's state as re-read inside a write transaction."""

    token_id: int
    public_id: str
    business_id: int
    creator_id: int
    creator_role: str


def recheck_for_write(token_id: int) -> WriteCheck | None:
    """Inside a write transaction, lock and re-read the token; None if it is no longer usable.

    Called by every API write before it commits, so nothing made with a token can commit
    after that token's revocation: on PostgreSQL the shared row lock makes a concurrent
    revoke wait for this transaction (and this one wait for a revoke in progress, then see
    it); on SQLite the write transaction is already exclusive.
    """
    row = db.session.execute(
        select(
            ApiToken.id,
            ApiToken.public_id,
            ApiToken.business_id,
            ApiToken.revoked_at,
            User.id,
            User.role,
            User.active,
        )
        .join(User, User.id == ApiToken.created_by_id)
        .where(ApiToken.id == token_id)
        .with_for_update(read=True, of=ApiToken)
    ).first()
    if row is None:
        return None
    token_id, public_id, business_id, revoked_at, creator_id, role, active = row
    if revoked_at is not None or not active:
        return None
    return WriteCheck(token_id, public_id, business_id, creator_id, role)
