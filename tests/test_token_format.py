"""Token format: vbx_ + public id + base62 secret + CRC32 checksum, and look-alikes refused
before any database access."""

from __future__ import annotations

import re
import zlib
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select

from vasbox_dash import security, tokens
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, User
from vasbox_dash.security import (
    BASE62,
    CHECKSUM_LENGTH,
    PUBLIC_ID_ALPHABET,
    PUBLIC_ID_LENGTH,
    SECRET_LENGTH,
    TOKEN_LENGTH,
    base62,
    checksum,
    generate_public_id,
    generate_token,
    parse_token,
)

SAMPLE_PUBLIC_ID = "k7q2m9xd"


@contextmanager
def count_queries():
    """Count every SQL statement sent to the database while the block runs."""
    statements: list[str] = []

    def before_cursor_execute(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", before_cursor_execute)


def with_checksum(body: str) -> str:
    """A token body with a correct checksum appended, for forging near-valid look-alikes."""
    return body + checksum(body)


@pytest.fixture
def issued(app, people, monkeypatch):
    """A real token of the owner's business with a known public id: (plaintext, public_id)."""
    monkeypatch.setattr(tokens, "generate_public_id", lambda: SAMPLE_PUBLIC_ID)
    with app.app_context():
        owner = db.session.get(User, people["owner"].id)
        token, plaintext = tokens.issue_token(owner, "Accounting Software")
        return plaintext, token.public_id


def test_generated_token_round_trips_through_parse(app):
    with app.app_context():
        for _ in range(50):
            public_id = generate_public_id()
            token, secret = generate_token(public_id)
            parsed = parse_token(token)
            assert parsed is not None
            assert parsed.public_id == public_id
            assert parsed.secret == secret


def test_token_is_prefix_public_id_secret_and_checksum():
    token, secret = generate_token(SAMPLE_PUBLIC_ID)
    assert len(token) == TOKEN_LENGTH == 4 + 8 + 43 + 6
    assert token.startswith("vbx_" + SAMPLE_PUBLIC_ID)
    assert token[12 : 12 + SECRET_LENGTH] == secret
    body, check = token[:-CHECKSUM_LENGTH], token[-CHECKSUM_LENGTH:]
    assert check == base62(zlib.crc32(body.encode("ascii")), 6)
    assert re.fullmatch(r"[0-9A-Za-z]{43}", secret)


def test_token_contains_exactly_one_underscore_so_a_double_click_selects_it_all():
    for _ in range(200):
        token, _secret = generate_token(generate_public_id())
        assert token.count("_") == 1
        assert re.fullmatch(r"vbx_\w+", token)
        assert re.fullmatch(r"[0-9A-Za-z_]+", token)


def test_secret_carries_at_least_256_bits():
    assert security.SECRET_BYTES * 8 >= 256
    assert 62**SECRET_LENGTH >= 2**256
    secrets_seen = {generate_token(SAMPLE_PUBLIC_ID)[1] for _ in range(100)}
    assert len(secrets_seen) == 100


@pytest.mark.parametrize("confusable", ["0", "o", "1", "l", "i"])
def test_public_id_alphabet_leaves_out_easily_confused_characters(confusable):
    assert confusable not in PUBLIC_ID_ALPHABET


def test_public_ids_use_only_lowercase_letters_and_digits_from_the_alphabet():
    assert set(PUBLIC_ID_ALPHABET) <= set("abcdefghijklmnopqrstuvwxyz0123456789")
    seen = "".join(generate_public_id() for _ in range(500))
    assert set(seen) <= set(PUBLIC_ID_ALPHABET)
    assert len(seen) == 500 * PUBLIC_ID_LENGTH
    # 4000 random draws from 31 characters cover the whole alphabet.
    assert set(seen) == set(PUBLIC_ID_ALPHABET)


@pytest.mark.parametrize(
    ("number", "width", "expected"),
    [
        (0, 6, "000000"),
        (61, 1, "z"),
        (62, 2, "10"),
        (2**32 - 1, 6, base62(2**32 - 1, 6)),
    ],
)
def test_base62_pads_to_its_width(number, width, expected):
    encoded = base62(number, width)
    assert encoded == expected
    assert len(encoded) == width
    assert set(encoded) <= set(BASE62)
    assert int_from_base62(encoded) == number


def int_from_base62(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 62 + BASE62.index(ch)
    return value


def test_base62_refuses_a_number_too_large_for_its_width():
    with pytest.raises(ValueError):
        base62(62**3, 3)


def test_checksum_is_the_crc32_of_everything_before_it_in_six_base62_digits():
    body = "vbx_" + SAMPLE_PUBLIC_ID + "A" * SECRET_LENGTH
    assert checksum(body) == base62(zlib.crc32(body.encode()), 6)
    assert int_from_base62(checksum(body)) == zlib.crc32(body.encode())


def _lookalikes(token: str) -> dict[str, str]:
    """Damaged or forged variants of a valid token, each with the reason it must fail."""
    body, check = token[:-CHECKSUM_LENGTH], token[-CHECKSUM_LENGTH:]
    flipped_check = check[:-1] + ("a" if check[-1] != "a" else "b")
    secret_pos = 4 + PUBLIC_ID_LENGTH + 10
    changed_secret = (
        token[:secret_pos] + ("X" if token[secret_pos] != "X" else "Y") + token[secret_pos + 1 :]
    )
    public_id = token[4:12]
    changed_public = token[:5] + ("z" if token[5] != "z" else "y") + token[6:]
    return {
        "bad checksum": body + flipped_check,
        "changed secret character": changed_secret,
        "changed public id character": changed_public,
        "one character short": token[:-1],
        "one character long": token + "a",
        "truncated to the public id": token[:12],
        "empty": "",
        "prefix only": "vbx_",
        "wrong prefix vbk_": "vbk_" + token[4:],
        "wrong prefix recomputed checksum": with_checksum("vbk_" + body[4:]),
        "upper-case prefix": "VBX_" + token[4:],
        "dash instead of underscore": "vbx-" + token[4:],
        "upper-case public id": token[:4] + public_id.upper() + token[12:],
        "upper-case public id recomputed checksum": with_checksum(
            "vbx_" + public_id.upper() + body[12:]
        ),
        "confusable 0 in public id with valid checksum": with_checksum(
            "vbx_0" + public_id[1:] + body[12:]
        ),
        "confusable l in public id with valid checksum": with_checksum(
            "vbx_l" + public_id[1:] + body[12:]
        ),
        "extra underscore in secret": token[:20] + "_" + token[21:],
        "extra underscore with valid checksum": with_checksum(body[:20] + "_" + body[21:]),
        "leading space": " " + token,
        "trailing space": token + " ",
        "trailing newline": token + "\n",
        "leading tab": "\t" + token,
        "space inside": token[:30] + " " + token[31:],
        "bearer prefix left on": "Bearer " + token,
        "cyrillic a look-alike": token[:4] + "\u0430" + token[5:],
        "full-width v": "\uff56" + token[1:],
        "checksum of another token": body + checksum(body[:-1] + ("Q" if body[-1] != "Q" else "R")),
        "two tokens pasted together": token + token,
    }


LOOKALIKE_CASES = list(_lookalikes(with_checksum("vbx_" + SAMPLE_PUBLIC_ID + "a" * 43)))


@pytest.mark.parametrize("case", LOOKALIKE_CASES)
def test_parse_token_rejects_lookalike(case):
    token, _ = generate_token(SAMPLE_PUBLIC_ID)
    assert parse_token(token) is not None
    assert parse_token(_lookalikes(token)[case]) is None


@pytest.mark.parametrize("case", LOOKALIKE_CASES)
def test_lookalike_is_refused_without_touching_the_database(app, issued, case):
    plaintext, _public_id = issued
    candidate = _lookalikes(plaintext)[case]
    assert candidate != plaintext
    with app.app_context():
        with count_queries() as statements:
            result = tokens.authenticate(candidate)
        assert result.outcome == "malformed"
        assert not result.ok
        assert statements == []


def test_query_counter_sees_the_lookup_of_a_well_formed_token(app, issued):
    """The control for the test above: a well-formed token does reach the database, so an
    empty count there really means no query was made."""
    plaintext, public_id = issued
    body = plaintext[:-CHECKSUM_LENGTH]
    wrong_secret = with_checksum(body[:-1] + ("A" if body[-1] != "A" else "B"))
    with app.app_context():
        with count_queries() as statements:
            good = tokens.authenticate(plaintext)
        assert good.ok and good.public_id == public_id
        assert statements
        with count_queries() as statements:
            forged = tokens.authenticate(wrong_secret)
        assert forged.outcome == "wrong_secret"
        assert statements


def test_issued_public_id_is_unique_even_when_the_random_draw_collides(app, people, monkeypatch):
    with app.app_context():
        owner = db.session.get(User, people["owner"].id)
        first, _ = tokens.issue_token(owner, "First")
        draws = iter([first.public_id, first.public_id, "mnpqrstu"])
        monkeypatch.setattr(tokens, "generate_public_id", lambda: next(draws))
        second, plaintext = tokens.issue_token(owner, "Second")
        assert second.public_id == "mnpqrstu"
        assert parse_token(plaintext).public_id == "mnpqrstu"
        count = db.session.scalar(select(func.count()).select_from(ApiToken))
        assert count == 2


def test_stored_hash_is_an_hmac_under_the_pepper_not_the_secret_key(app, issued):
    import hashlib
    import hmac

    plaintext, public_id = issued
    secret = parse_token(plaintext).secret
    with app.app_context():
        row = db.session.scalar(select(ApiToken).where(ApiToken.public_id == public_id))
        version = app.config["TOKEN_PEPPER_VERSION"]
        pepper = app.config["TOKEN_PEPPERS"][version].encode()
        assert pepper != app.config["SECRET_KEY"].encode()
        assert row.pepper_version == version
        assert row.secret_hash == hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()
        assert row.secret_hash != hashlib.sha256(secret.encode()).hexdigest()
        assert (
            row.secret_hash
            != hmac.new(app.config["SECRET_KEY"].encode(), secret.encode(), "sha256").hexdigest()
        )
        assert security.verify_secret(secret, row.secret_hash, row.pepper_version)
        assert not security.verify_secret(secret, row.secret_hash, version + 1)
