"""Sign-in, sessions and sign-out (issue 2)."""

from __future__ import annotations

import pytest
from conftest import PASSWORD, REDIS_URL, login, requires_redis
from sqlalchemy import select

from vasbox_dash.accounts import deactivate_user
from vasbox_dash.extensions import db
from vasbox_dash.models import AuditEvent, User, UserSession
from vasbox_dash.security import hash_password, password_hasher


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("vasbox_session")
    return cookie.value if cookie else None


def audit_actions(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_owner_signs_in_and_lands_on_api_tokens(client, people):
    response = login(client, people["owner"])
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/api-tokens"
    page = client.get("/admin/api-tokens")
    text = page.get_data(as_text=True)
    assert "Olivia Owner" in text and "Acme Stores" in text and "Sign out" in text


def test_email_is_case_insensitive_at_sign_in(client, people):
    response = client.post("/login", data={"email": "  OWNER@Acme.Example ", "password": PASSWORD})
    assert response.status_code == 303


def test_unknown_email_and_wrong_password_get_the_same_response(client, people):
    wrong_password = client.post(
        "/login", data={"email": people["owner"].email, "password": "not the password!"}
    )
    unknown_email = client.post(
        "/login", data={"email": "nobody@acme.example", "password": "not the password!"}
    )
    assert wrong_password.status_code == unknown_email.status_code == 400
    for response in (wrong_password, unknown_email):
        assert "Incorrect email or password." in response.get_data(as_text=True)
        assert session_cookie(client) is None or "sid" not in client.get("/").location

    def strip_csrf(response):
        import re

        return re.sub(r'value="[^"]*"', "", response.get_data(as_text=True)).replace(
            "nobody@acme.example", people["owner"].email
        )

    assert strip_csrf(wrong_password) == strip_csrf(unknown_email)


def test_unknown_email_still_costs_a_password_verify(app, client, people, monkeypatch):
    calls = []
    hasher = None
    with app.app_context():
        hasher = password_hasher()
    original = type(hasher).verify

    def counting_verify(self, hash_, password):
        calls.append(hash_)
        return original(self, hash_, password)

    monkeypatch.setattr(type(hasher), "verify", counting_verify)
    client.post("/login", data={"email": "nobody@acme.example", "password": "whatever-123456"})
    assert len(calls) == 1


def test_failed_and_successful_sign_ins_are_audited(app, client, people):
    client.post("/login", data={"email": people["owner"].email, "password": "wrong-password-1"})
    login(client, people["owner"])
    client.post("/logout")
    assert audit_actions(app) == ["auth.login_failed", "auth.login", "auth.logout"]
    with app.app_context():
        failed = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "auth.login_failed")
        )
        assert failed.details == {"email": people["owner"].email}
        assert "wrong-password-1" not in str(failed.details)


def test_account_is_throttled_after_repeated_failures(app, client, people):
    owner = people["owner"]
    for _ in range(5):
        response = client.post("/login", data={"email": owner.email, "password": "bad-password!"})
        assert response.status_code == 400
    throttled = login(client, owner)  # even the right password is refused while throttled
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert "Too many failed sign-in attempts" in throttled.get_data(as_text=True)
    assert client.get("/admin/api-tokens").status_code == 302


def test_ip_is_throttled_across_accounts(client, people):
    for n in range(20):
        client.post("/login", data={"email": f"user{n}@acme.example", "password": "bad-password!"})
    response = login(client, people["manager"])
    assert response.status_code == 429


@requires_redis
def test_throttle_is_shared_across_app_instances_using_redis(app_config, people, app_factory):
    """Two app objects stand in for two workers sharing one Redis limiter storage."""
    shared = dict(app_config, RATELIMIT_STORAGE_URI=REDIS_URL)
    first, second = app_factory(dict(shared)), app_factory(dict(shared))
    first_client, second_client = first.test_client(), second.test_client()
    for _ in range(3):
        first_client.post("/login", data={"email": people["owner"].email, "password": "bad-pw-1"})
    for _ in range(2):
        second_client.post("/login", data={"email": people["owner"].email, "password": "bad-pw-1"})
    assert login(second_client, people["owner"]).status_code == 429


def test_sign_in_starts_a_new_session_id(client, people):
    with client.session_transaction() as sess:
        sess["sid"] = "planted-by-an-attacker"
        sess["leftover"] = "value"
    login(client, people["owner"])
    with client.session_transaction() as sess:
        first_sid = sess["sid"]
        assert first_sid != "planted-by-an-attacker"
        assert "leftover" not in sess
    client.post("/logout")
    login(client, people["owner"])
    with client.session_transaction() as sess:
        assert sess["sid"] != first_sid


def test_logout_ends_the_server_side_session_so_a_replayed_cookie_is_refused(app, client, people):
    login(client, people["owner"])
    saved = session_cookie(client)
    response = client.post("/logout")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    client.set_cookie("vasbox_session", saved)
    replay = client.get("/admin/api-tokens")
    assert replay.status_code == 302 and replay.headers["Location"].startswith("/login")
    with app.app_context():
        record = db.session.scalar(select(UserSession))
        assert record.ended_at is not None and record.end_reason == "logout"


def test_logout_must_be_a_post(as_owner):
    assert as_owner.get("/logout").status_code == 405


def test_idle_session_expires_after_thirty_minutes(client, people, clock):
    login(client, people["owner"])
    clock.advance(minutes=29)
    assert client.get("/admin/api-tokens").status_code == 200  # activity resets the idle timer
    clock.advance(minutes=29)
    assert client.get("/admin/api-tokens").status_code == 200
    clock.advance(minutes=31)
    response = client.get("/admin/api-tokens")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    page = client.get(response.headers["Location"])
    assert "Your session has ended" in page.get_data(as_text=True)


def test_absolute_timeout_ends_even_an_active_session_after_twelve_hours(
    app, client, people, clock
):
    login(client, people["owner"])
    for _ in range(11 * 4 + 3):  # active every 15 minutes for 11h45m
        clock.advance(minutes=15)
        assert client.get("/admin/api-tokens").status_code == 200
    clock.advance(minutes=16)
    assert client.get("/admin/api-tokens").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(UserSession.end_reason)) == "absolute_timeout"


def test_htmx_request_with_an_expired_session_gets_401_and_hx_redirect(client, people, clock):
    login(client, people["owner"])
    clock.advance(hours=1)
    response = client.get(
        "/admin/api-tokens/new",
        headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/admin/api-tokens"},
    )
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/admin/api-tokens"
    assert response.get_data(as_text=True) == ""


def test_deactivating_a_user_ends_their_existing_session(app, client, people):
    login(client, people["owner"])
    assert client.get("/admin/api-tokens").status_code == 200
    with app.app_context():
        deactivate_user(people["owner"].email)
    response = client.get("/admin/api-tokens")
    assert response.status_code == 302
    assert login(client, people["owner"]).status_code == 400  # and cannot sign in again


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http:evil.example",
        "/\t/evil.example",
        " //evil.example",
        "evil.example",
    ],
)
def test_sign_in_refuses_open_redirect_next_values(client, people, target):
    response = client.post(
        "/login",
        query_string={"next": target},
        data={"email": people["owner"].email, "password": PASSWORD},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/api-tokens"


def test_sign_in_follows_a_local_next_path(client, people):
    response = client.post(
        "/login",
        query_string={"next": "/admin/api-tokens?x=1"},
        data={"email": people["owner"].email, "password": PASSWORD},
    )
    assert response.headers["Location"] == "/admin/api-tokens?x=1"


def test_anonymous_visitor_is_sent_to_sign_in_and_returned_afterwards(client, people):
    response = client.get("/admin/api-tokens")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/admin/api-tokens"
    signed_in = client.post(
        response.headers["Location"],
        data={"email": people["owner"].email, "password": PASSWORD},
    )
    assert signed_in.headers["Location"] == "/admin/api-tokens"


def test_weak_password_hash_is_upgraded_at_sign_in(app, client, people):
    with app.app_context():
        user = db.session.get(User, people["owner"].id)
        app.config["ARGON2_PARAMS"] = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
        user.password_hash = hash_password(PASSWORD)
        db.session.commit()
        app.config["ARGON2_PARAMS"] = {"time_cost": 2, "memory_cost": 16, "parallelism": 1}
    login(client, people["owner"])
    with app.app_context():
        stored = db.session.get(User, people["owner"].id).password_hash
        assert "m=16,t=2" in stored


def test_password_hashes_are_argon2id(app, people):
    with app.app_context():
        assert db.session.get(User, people["owner"].id).password_hash.startswith("$argon2id$")


def test_owner_sees_admin_api_tokens_in_the_shell_and_others_do_not(client, people):
    login(client, people["owner"])
    assert "API Tokens" in client.get("/admin/api-tokens").get_data(as_text=True)
    client.post("/logout")
    login(client, people["cashier"])
    home = client.get("/")
    text = home.get_data(as_text=True)
    assert home.status_code == 200
    assert "API Tokens" not in text.replace("API tokens are managed", "")
    assert "Chipo Cashier" in text and "Acme Stores" in text


def test_background_polls_do_not_keep_an_idle_session_alive(client, people, clock):
    login(client, people["owner"])
    poll = {"HX-Request": "true", "X-VasBox-Background": "1"}
    for _ in range(6):  # the tokens page polls for fresh times every minute
        clock.advance(minutes=5)
        assert client.get("/admin/api-tokens/times", headers=poll).status_code == 200
    clock.advance(minutes=1)
    expired = client.get("/admin/api-tokens/times", headers=poll)
    assert expired.status_code == 401
    assert expired.headers["HX-Redirect"].startswith("/login")


def test_a_session_ended_on_the_server_tells_the_user_it_has_ended(app, client, people):
    from vasbox_dash.accounts import set_password

    login(client, people["owner"])
    with app.app_context():
        set_password(people["owner"].email, "a brand new passphrase here")
    response = client.get("/admin/api-tokens")
    assert response.status_code == 302
    page = client.get(response.headers["Location"])
    assert "Your session has ended" in page.get_data(as_text=True)
