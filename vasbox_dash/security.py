"""Password hashing (argon2id) and API token generation, parsing and HMAC."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

MIN_PASSWORD_LENGTH = 12
TOKEN_PREFIX = "vbx_"
# Lower-case letters and digits without the easily confused 0 o 1 l i, so an id read
# aloud over the phone cannot be misheard as another.
PUBLIC_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
PUBLIC_ID_LENGTH = 8
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_BYTES = 32
SECRET_LENGTH = 43  # 62**43 > 2**256, so 32 random bytes always fit in 43 base62 digits
CHECKSUM_LENGTH = 6  # 62**6 > 2**32, enough for a CRC32
TOKEN_LENGTH = len(TOKEN_PREFIX) + PUBLIC_ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH
TOKEN_RE = re.compile(
    rf"^{TOKEN_PREFIX}([{PUBLIC_ID_ALPHABET}]{{{PUBLIC_ID_LENGTH}}})"
    rf"([0-9A-Za-z]{{{SECRET_LENGTH}}})([0-9A-Za-z]{{{CHECKSUM_LENGTH}}})$"
)
PUBLIC_ID_RE = re.compile(rf"^[{PUBLIC_ID_ALPHABET}]{{{PUBLIC_ID_LENGTH}}}$")


def base62(number: int, width: int) -> str:
    """Encode a non-negative integer in base62, left-padded with zeros to width."""
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(BASE62[rem])
    encoded = "".join(reversed(digits)) or "0"
    if len(encoded) > width:
        raise ValueError("number too large for width")
    return encoded.rjust(width, "0")


def checksum(body: str) -> str:
    """Return the 6-character base62 CRC32 of body (everything before the checksum)."""
    return base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


@dataclass(frozen=True, slots=True)
class ParsedToken:
    public_id: str
    secret: str


def generate_public_id() -> str:
    """Return a random 8-character public id; the caller ensures uniqueness."""
    return "".join(secrets.choice(PUBLIC_ID_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


def generate_token(public_id: str) -> tuple[str, str]:
    """Return (token, secret) for public_id; the token is what the user copies, once."""
    secret = base62(int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big"), SECRET_LENGTH)
    body = f"{TOKEN_PREFIX}{public_id}{secret}"
    return body + checksum(body), secret


def parse_token(token: str) -> ParsedToken | None:
    """Return the token's parts if its format and checksum are right, else None.

    This touches no database, so look-alikes and typos are refused cheaply.
    """
    if len(token) != TOKEN_LENGTH:
        return None
    match = TOKEN_RE.match(token)
    if match is None:
        return None
    public_id, secret, check = match.groups()
    if not hmac.compare_digest(check, checksum(token[:-CHECKSUM_LENGTH])):
        return None
    return ParsedToken(public_id, secret)


def looks_like_token(value: str) -> bool:
    """True if value starts like a VasBox token, even a damaged one (used to refuse leaks)."""
    return TOKEN_PREFIX in value


def _pepper(version: int) -> bytes:
    peppers = current_app.config["TOKEN_PEPPERS"]
    return peppers[version].encode()


def hash_secret(secret: str, version: int | None = None) -> tuple[str, int]:
    """Return (hex HMAC-SHA-256 of secret under the pepper, pepper version)."""
    if version is None:
        version = current_app.config["TOKEN_PEPPER_VERSION"]
    digest = hmac.new(_pepper(version), secret.encode("ascii"), hashlib.sha256).hexdigest()
    return digest, version


def verify_secret(secret: str, stored_hash: str, version: int) -> bool:
    """Constant-time check of secret against the stored HMAC; unknown pepper versions fail."""
    if version not in current_app.config["TOKEN_PEPPERS"]:
        return False
    candidate, _ = hash_secret(secret, version)
    return hmac.compare_digest(candidate, stored_hash)


def keyed_hash(value: str) -> str:
    """HMAC of a short-lived value (session id, support code) under the current pepper."""
    version = current_app.config["TOKEN_PEPPER_VERSION"]
    return hmac.new(_pepper(version), value.encode(), hashlib.sha256).hexdigest()


def password_hasher() -> PasswordHasher:
    """Return the app's argon2id hasher (cheap parameters only when tests ask for them)."""
    params = current_app.config.get("ARGON2_PARAMS")
    return _hasher(tuple(sorted(params.items())) if params else ())


@cache
def _hasher(params: tuple) -> PasswordHasher:
    return PasswordHasher(**dict(params))


def hash_password(password: str) -> str:
    """Return an argon2id hash of password."""
    return password_hasher().hash(password)


_DUMMY_HASHES: dict[tuple, str] = {}


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check password against stored_hash; with no hash, verify a dummy so timing matches."""
    hasher = password_hasher()
    if stored_hash is None:
        key = (hasher.time_cost, hasher.memory_cost, hasher.parallelism)
        if key not in _DUMMY_HASHES:
            _DUMMY_HASHES[key] = hasher.hash(secrets.token_urlsafe(16))
        stored_hash = _DUMMY_HASHES[key]
        password = password + "\x00"  # never matches the random dummy
        try:
            hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            pass
        return False
    try:
        return hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when stored_hash was made with weaker parameters than the current ones."""
    return password_hasher().check_needs_rehash(stored_hash)


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords, lower-cased."""
    text = resources.files("vasbox_dash").joinpath("data/common-passwords.txt").read_text()
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def password_problem(password: str) -> str | None:
    """Return why password is unacceptable, or None if it is fine."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be at least {MIN_PASSWORD_LENGTH} characters long."
    if len(password) > 256:
        return "Password must be at most 256 characters long."
    lowered = password.lower()
    # "sunshine2024!" is as guessable as "sunshine": strip the usual trailing padding too.
    stem = lowered.rstrip("0123456789!@#$%^&*.?_-+= ")
    if lowered in common_passwords() or stem in common_passwords():
        return "That password is on a list of commonly used passwords; choose another."
    return None
