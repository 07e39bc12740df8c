"""Creating a token: the create dialog, the one-time reveal, double submits and name rules."""

from __future__ import annotations

import re

import pytest
from conftest import create_token_via_ui, find_tokens, login
from sqlalchemy import func, select

from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, AuditEvent
from vasbox_dash.security import parse_token

HX = {"HX-Request": "true"}
CREATE_URL = "/admin/api-tokens"
NAVIGATION_HEADERS = ["HX-Push-Url", "HX-Replace-Url", "HX-Location", "HX-Redirect", "Location"]


def token_names(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(ApiToken.name).order_by(ApiToken.id)))


def count_tokens(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ApiToken))


def count_audit(app, action: str) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )


def creation_key_of(body: str) -> str:
    match = re.search(r'name="creation_key" type="hidden" value="([^"]+)"', body)
    assert match, "the form carries a one-time creation key"
    return match.group(1)


def opening_tag(body: str, element: str, containing: str) -> str:
    """The opening tag of the <element> whose content includes `containing`."""
    position = body.index(containing)
    start = body.rindex(f"<{element}", 0, position)
    assert body.find(f"</{element}>", start) > position, f"{containing!r} is inside <{element}>"
    return body[start : body.index(">", start) + 1]


def test_create_dialog_holds_a_labelled_name_field_with_placeholder_and_hint(as_owner):
    response = as_owner.get("/admin/api-tokens/new", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert re.match(r'\s*<dialog[^>]*id="token-dialog"', body)
    assert "<html" not in body
    assert '<label for="name">Name</label>' in body
    assert 'placeholder="e.g., Accounting Integration"' in body
    assert (
        "Use descriptive names like “Accounting Software”, “POS System - Branch 1”, "
        "or “Reporting Script”." in body
    )
    assert 'hx-post="/admin/api-tokens"' in body
    assert 'hx-sync="this:drop"' in body


def test_each_opening_of_the_dialog_gets_a_fresh_creation_key(as_owner):
    first = creation_key_of(as_owner.get("/admin/api-tokens/new", headers=HX).get_data(True))
    second = creation_key_of(as_owner.get("/admin/api-tokens/new", headers=HX).get_data(True))
    assert first != second
    assert len(first) >= 16


def test_create_page_without_javascript_is_a_full_page_with_the_same_form(as_owner):
    response = as_owner.get("/admin/api-tokens/new")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert '<form method="post" action="/admin/api-tokens"' in body
    assert 'placeholder="e.g., Accounting Integration"' in body
    assert "hx-post" not in body.split("<main", 1)[1]


def test_reveal_dialog_shows_the_token_once_with_copy_warning_and_done(app, as_owner):
    response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "Token Created Successfully" in body
    assert "Copy this token now. You won't be able to see it again." in body
    assert re.search(r"<button[^>]*data-copy=\"new-token-value\"[^>]*>Copy</button>", body)
    assert re.search(r"<button[^>]*data-close-dialog[^>]*>Done</button>", body)
    field = re.search(r"<input id=\"new-token-value\"[^>]*>", body, re.S).group(0)
    assert f'value="{plaintext}"' in field
    assert "readonly" in field
    assert find_tokens(body) == [plaintext]
    assert token_names(app) == ["Accounting Software"]
    assert count_audit(app, "token.created") == 1


def test_reveal_response_is_never_stored_and_pushes_no_url(as_owner):
    response, plaintext = create_token_via_ui(as_owner)
    assert plaintext
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert "HX-Request" in response.headers["Vary"]
    for header in NAVIGATION_HEADERS:
        assert header not in response.headers
    for name, value in response.headers.items():
        assert "vbx_" not in value, name


def test_revealed_secret_sits_in_a_dialog_kept_out_of_htmx_history(as_owner):
    response, plaintext = create_token_via_ui(as_owner)
    body = response.get_data(as_text=True)
    dialog = opening_tag(body, "dialog", plaintext)
    assert 'id="token-dialog"' in dialog
    assert 'hx-history="false"' in dialog
    # The new row arrives out of band in the same response, without the secret.
    sections = body[body.index('<div id="token-sections"') :]
    assert 'hx-swap-oob="true"' in sections.split(">", 1)[0]
    assert f"vbx_{parse_token(plaintext).public_id}…" in sections
    assert plaintext not in sections


def test_create_without_javascript_renders_a_full_reveal_page_never_stored(app, as_owner):
    response, plaintext = create_token_via_ui(as_owner, "Reporting Script", htmx=False)
    assert response.status_code == 201
    body = response.get_data(as_text=True)
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert "Token Created Successfully" in body
    assert "Copy this token now. You won't be able to see it again." in body
    assert find_tokens(body) == [plaintext]
    assert response.headers["Cache-Control"] == "no-store"
    for header in NAVIGATION_HEADERS:
        assert header not in response.headers
    assert 'hx-history="false"' in opening_tag(body, "section", plaintext)
    assert re.search(r'<a [^>]*href="/admin/api-tokens"[^>]*>Done</a>', body)
    assert token_names(app) == ["Reporting Script"]


def test_get_on_the_create_url_reveals_nothing_and_creates_nothing(app, as_owner):
    create_token_via_ui(as_owner)
    response = as_owner.get(CREATE_URL, query_string={"name": "Sneaky", "creation_key": "k"})
    assert response.status_code == 200
    assert find_tokens(response.get_data(as_text=True)) == []
    assert "Token Created Successfully" not in response.get_data(as_text=True)
    assert count_tokens(app) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/admin/api-tokens"),
        ("PATCH", "/admin/api-tokens"),
        ("DELETE", "/admin/api-tokens"),
        ("POST", "/admin/api-tokens/new"),
        ("POST", "/admin/api-tokens/times"),
        ("POST", "/admin/api-tokens/{public_id}/row"),
        ("PUT", "/admin/api-tokens/{public_id}/revoke"),
        ("DELETE", "/admin/api-tokens/{public_id}/revoke"),
        ("PATCH", "/admin/api-tokens/{public_id}/revoke"),
    ],
)
def test_wrong_method_is_refused_with_405_and_changes_nothing(app, as_owner, method, path):
    _response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    public_id = parse_token(plaintext).public_id
    response = as_owner.open(
        path.format(public_id=public_id), method=method, data={"name": "Other"}
    )
    assert response.status_code == 405
    assert find_tokens(response.get_data(as_text=True)) == []
    assert token_names(app) == ["Accounting Software"]
    with app.app_context():
        assert db.session.scalar(select(ApiToken.revoked_at)) is None


def test_double_submit_with_the_same_key_creates_one_token_and_shows_no_secret(app, as_owner):
    form = {"name": "Accounting Software", "creation_key": "same-key-for-both-clicks"}
    first = as_owner.post(CREATE_URL, data=form, headers=HX)
    second = as_owner.post(CREATE_URL, data=form, headers=HX)
    assert first.status_code == 200
    assert len(find_tokens(first.get_data(as_text=True))) == 1
    assert second.status_code == 409
    body = second.get_data(as_text=True)
    assert find_tokens(body) == []
    assert "Token Created Successfully" not in body
    assert "This form was already sent, and the token was created then." in body
    assert "its secret is shown only once" in body
    assert second.headers["Cache-Control"] == "no-store"
    assert token_names(app) == ["Accounting Software"]
    assert count_audit(app, "token.created") == 1


def test_double_submit_with_a_different_name_still_creates_only_the_first(app, as_owner):
    key = "one-dialog-one-token"
    assert as_owner.post(CREATE_URL, data={"name": "First", "creation_key": key}).status_code == 201
    again = as_owner.post(CREATE_URL, data={"name": "Second", "creation_key": key})
    assert again.status_code == 303
    assert token_names(app) == ["First"]


def test_reloading_the_no_javascript_reveal_page_does_not_show_the_secret_again(app, as_owner):
    form = {"name": "Reporting Script", "creation_key": "reload-me"}
    first = as_owner.post(CREATE_URL, data=form)
    assert first.status_code == 201
    plaintext = find_tokens(first.get_data(as_text=True))[0]
    # A browser reload of the reveal page re-sends the same form.
    reload = as_owner.post(CREATE_URL, data=form)
    assert reload.status_code == 303
    assert reload.headers["Location"] == "/admin/api-tokens"
    assert reload.headers["Cache-Control"] == "no-store"
    page = as_owner.get(reload.headers["Location"])
    text = page.get_data(as_text=True)
    assert "This form was already sent, and the token was created then." in text
    assert plaintext not in text
    assert find_tokens(text) == []
    assert count_tokens(app) == 1


def test_second_dialog_with_a_new_key_creates_a_second_token(app, as_owner):
    create_token_via_ui(as_owner, "Accounting Software")
    response, plaintext = create_token_via_ui(as_owner, "POS System - Branch 1")
    assert response.status_code == 200
    assert plaintext
    assert token_names(app) == ["Accounting Software", "POS System - Branch 1"]


NAME_TOO_LONG = "Use at most 80 characters (this name has 81)."
NAME_REQUIRED = "Enter a name, such as “Accounting Software”."
NO_CONTROL = "The name cannot contain control characters such as line breaks."
NO_BIDI = "The name cannot contain text-direction control characters."
DUPLICATE = "An active token is already named"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param("", NAME_REQUIRED, id="empty"),
        pytest.param("     ", NAME_REQUIRED, id="only-spaces"),
        pytest.param("\u3000\t ", NAME_REQUIRED, id="only-unicode-whitespace"),
        pytest.param("\u200b", NAME_REQUIRED, id="only-zero-width-space"),
        pytest.param(" \ufeff\u200d ", NAME_REQUIRED, id="only-invisible-characters"),
        pytest.param("Line\u2028separator", NO_CONTROL, id="unicode-line-separator"),
        pytest.param("Para\u2029separator", NO_CONTROL, id="unicode-paragraph-separator"),
        pytest.param("x" * 81, NAME_TOO_LONG, id="81-characters"),
        pytest.param("é" * 81, NAME_TOO_LONG, id="81-accented-characters"),
        pytest.param("Line\nbreak", NO_CONTROL, id="newline"),
        pytest.param("Tab\tinside", NO_CONTROL, id="tab"),
        pytest.param("Bell\x07", NO_CONTROL, id="bell"),
        pytest.param("Null\x00byte", NO_CONTROL, id="nul"),
        pytest.param("Escape\x1b[31m", NO_CONTROL, id="escape-sequence"),
        pytest.param("Payroll \u202etpircS", NO_BIDI, id="right-to-left-override"),
        pytest.param("\u2066Isolated\u2069", NO_BIDI, id="direction-isolates"),
    ],
)
def test_invalid_name_is_refused_inside_the_dialog_and_nothing_is_created(
    app, as_owner, raw, message
):
    response = as_owner.post(CREATE_URL, data={"name": raw, "creation_key": "k1"}, headers=HX)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert re.match(r'\s*<dialog[^>]*id="token-dialog"', body)
    errors = re.search(r'<ul [^>]*id="name-errors"[^>]*>(.*?)</ul>', body, re.S)
    assert errors and message in errors.group(1)
    assert 'aria-invalid="true"' in body
    assert "Token Created Successfully" not in body
    assert find_tokens(body) == []
    assert count_tokens(app) == 0
    assert count_audit(app, "token.created") == 0


def test_a_refused_name_keeps_the_dialog_usable_with_the_same_key(app, as_owner):
    refused = as_owner.post(CREATE_URL, data={"name": "", "creation_key": "k2"}, headers=HX)
    assert refused.status_code == 422
    assert creation_key_of(refused.get_data(as_text=True)) == "k2"
    fixed = as_owner.post(CREATE_URL, data={"name": "Fixed", "creation_key": "k2"}, headers=HX)
    assert fixed.status_code == 200
    assert token_names(app) == ["Fixed"]


def test_invalid_name_without_javascript_shows_the_error_on_the_full_page(app, as_owner):
    response = as_owner.post(CREATE_URL, data={"name": "  ", "creation_key": "k3"})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert body.lstrip().lower().startswith("<!doctype html>")
    assert NAME_REQUIRED in body
    assert count_tokens(app) == 0


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        pytest.param("A", "A", id="one-character"),
        pytest.param("x" * 80, "x" * 80, id="80-characters"),
        pytest.param("é" * 80, "é" * 80, id="80-accented-characters"),
        pytest.param("  Padded name  ", "Padded name", id="trimmed"),
        pytest.param("Shop 🛒 POS ☕", "Shop 🛒 POS ☕", id="emoji"),
        pytest.param("👨‍👩‍👧 Family shop", "👨‍👩‍👧 Family shop", id="emoji-zwj-sequence"),
        pytest.param("Kassa – Хараре 收银", "Kassa – Хараре 收银", id="any-script"),
        pytest.param("Cafe\u0301", "Caf\u00e9", id="nfc-normalised"),
        pytest.param("POS System - Branch 1", "POS System - Branch 1", id="hint-example"),
    ],
)
def test_valid_name_is_stored_trimmed_and_shown(app, as_owner, raw, stored):
    response, plaintext = create_token_via_ui(as_owner, raw)
    assert response.status_code == 200
    assert plaintext
    assert token_names(app) == [stored]
    page = as_owner.get("/admin/api-tokens").get_data(as_text=True)
    assert re.search(rf'data-label="Name">(<a [^>]*>)?{re.escape(stored)}(</a>)?</td>', page)


def test_html_in_a_name_is_stored_as_is_and_shown_as_text(app, as_owner):
    name = '<script>alert("x")</script><b onmouseover=alert(1)>Bold</b> & co'
    response, plaintext = create_token_via_ui(as_owner, name)
    assert plaintext
    assert token_names(app) == [name]
    escaped = (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
        "&lt;b onmouseover=alert(1)&gt;Bold&lt;/b&gt; &amp; co"
    )
    for body in (
        response.get_data(as_text=True),
        as_owner.get("/admin/api-tokens").get_data(as_text=True),
    ):
        assert "<script>alert" not in body
        assert "<b onmouseover" not in body
        assert escaped in body


def test_duplicate_of_an_active_name_is_refused_case_insensitively(app, as_owner):
    create_token_via_ui(as_owner, "Accounting Software")
    response, plaintext = create_token_via_ui(as_owner, "  ACCOUNTING software ")
    assert response.status_code == 422
    assert plaintext is None
    body = response.get_data(as_text=True)
    assert (
        "An active token is already named “ACCOUNTING software”. Choose a different name." in body
    )
    assert token_names(app) == ["Accounting Software"]


def test_duplicate_check_compares_normalised_names(app, as_owner):
    create_token_via_ui(as_owner, "Caf\u00e9 Till")
    response, _ = create_token_via_ui(as_owner, "CAFE\u0301 TILL")
    assert response.status_code == 422
    assert DUPLICATE in response.get_data(as_text=True)
    assert count_tokens(app) == 1


def test_duplicate_message_shows_an_html_name_as_text(as_owner):
    create_token_via_ui(as_owner, "<i>Till</i>")
    response, _ = create_token_via_ui(as_owner, "<I>till</I>")
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "“&lt;I&gt;till&lt;/I&gt;”" in body
    assert "<I>till</I>" not in body


def test_name_of_a_revoked_token_can_be_reused(app, as_owner):
    _response, plaintext = create_token_via_ui(as_owner, "Accounting Software")
    public_id = parse_token(plaintext).public_id
    assert as_owner.post(f"/admin/api-tokens/{public_id}/revoke", headers=HX).status_code == 200
    response, new_plaintext = create_token_via_ui(as_owner, "accounting software")
    assert response.status_code == 200
    assert new_plaintext and new_plaintext != plaintext
    with app.app_context():
        rows = db.session.execute(
            select(ApiToken.name, ApiToken.public_id, ApiToken.revoked_at).order_by(ApiToken.id)
        ).all()
    assert [(r.name, r.revoked_at is None) for r in rows] == [
        ("Accounting Software", False),
        ("accounting software", True),
    ]
    assert rows[0].public_id == public_id


def test_same_name_in_another_business_is_allowed(app, client, people):
    login(client, people["owner"])
    create_token_via_ui(client, "Accounting Software")
    client.post("/logout")
    login(client, people["other_owner"])
    response, plaintext = create_token_via_ui(client, "Accounting Software")
    assert response.status_code == 200
    assert plaintext
    assert count_tokens(app) == 2
