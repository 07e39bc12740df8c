"""The owner's audit log: events in plain words with their actor, newest first, exact times
in the business's timezone, filters, paging, and the CSV export."""

from __future__ import annotations

import csv
import io
import re

import pytest
from conftest import create_token_via_ui, login, make_config
from sqlalchemy import select

from vasbox_dash import audit
from vasbox_dash.activity import csv_safe
from vasbox_dash.extensions import db
from vasbox_dash.models import ApiToken, AuditEvent
from vasbox_dash.security import parse_token

HX = {"HX-Request": "true"}


@pytest.fixture
def app_config(database_url, clock) -> dict:
    return make_config(database_url, CLOCK=clock, SESSION_IDLE_SECONDS=6 * 3600)


def rows(body: str) -> list[list[str]]:
    """The audit table's rows as lists of cell texts."""
    table = body[body.index('id="audit-table"') :]
    table = table[table.index("<tbody>") : table.index("</tbody>")]
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S)
    ]


def unescape(text: str) -> str:
    return (
        text.replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .replace("&#34;", '"')
    )


def read_csv(response) -> list[dict]:
    text = response.get_data().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def add_event(app, clock, action: str, **fields) -> None:
    with app.app_context():
        db.session.add(AuditEvent(created_at=clock.now, action=action, **fields))
        db.session.commit()


@pytest.fixture
def history(app, client, people, clock):
    """A morning at Acme: sign-ins, a token made, renamed and revoked, support access."""
    login(client, people["owner"], password="wrong password!")
    clock.advance(minutes=1)
    login(client, people["owner"])
    clock.advance(minutes=1)
    _response, plaintext = create_token_via_ui(client, "Accounting Software")
    public_id = parse_token(plaintext).public_id
    clock.advance(minutes=1)
    client.post(f"/admin/api-tokens/{public_id}/rename", data={"name": "Xero Books"})
    clock.advance(minutes=1)
    _response, other = create_token_via_ui(client, "Reporting Script")
    clock.advance(minutes=1)
    client.post(f"/admin/api-tokens/{public_id}/revoke")
    clock.advance(minutes=1)
    code = re.search(
        r'id="support-code">([A-Z0-9-]+)<',
        client.post("/admin/support-access", headers=HX).get_data(as_text=True),
    ).group(1)
    agent = app.test_client()
    login(agent, people["support"])
    clock.advance(minutes=1)
    business_id = people["owner"].business_id
    agent.post(f"/support/businesses/{business_id}/access", data={"code": code})
    agent.get(f"/support/businesses/{business_id}/tokens")
    clock.advance(minutes=1)
    client.post("/admin/support-access/end")
    return {"public_id": public_id, "other": parse_token(other).public_id}


def test_audit_log_tells_the_story_newest_first_in_plain_words(client, history):
    response = client.get("/admin/audit-log")
    assert response.status_code == 200
    pid, other = history["public_id"], history["other"]
    got = [[unescape(cell) for cell in row] for row in rows(response.get_data(as_text=True))]
    assert [row[1:4] for row in got] == [
        ["Support access ended", "Olivia Owner", "Ended VasBox support access."],
        ["Support viewed", "Sam Support (VasBox support)", "Viewed the list of API tokens."],
        [
            "Support access started",
            "Sam Support (VasBox support)",
            "Entered the support code and started a read-only view.",
        ],
        [
            "Support access granted",
            "Olivia Owner",
            "Allowed VasBox support to view the API tokens, read-only until "
            "Thu 3 Dec 2026, 12:36 CAT (UTC+02:00).",
        ],
        ["Token revoked", "Olivia Owner", f"Revoked token “Xero Books” (vbx_{pid}…)."],
        ["Token created", "Olivia Owner", f"Created token “Reporting Script” (vbx_{other}…)."],
        [
            "Token renamed",
            "Olivia Owner",
            f"Renamed token vbx_{pid}… from “Accounting Software” to “Xero Books”.",
        ],
        ["Token created", "Olivia Owner", f"Created token “Accounting Software” (vbx_{pid}…)."],
        ["Signed in", "Olivia Owner", "Signed in."],
        ["Failed sign-in", "Someone signing in", "Failed sign-in as owner@acme.example."],
    ]


def test_times_are_exact_and_in_the_business_timezone(client, history):
    got = rows(client.get("/admin/audit-log").get_data(as_text=True))
    assert got[-1][0] == "Thu 3 Dec 2026, 12:00:00 CAT (UTC+02:00)"
    assert got[0][0] == "Thu 3 Dec 2026, 12:08:00 CAT (UTC+02:00)"
    assert got[-1][4] == "127.0.0.1"


def test_filter_by_token(client, history):
    body = client.get(f"/admin/audit-log?token={history['public_id']}").get_data(as_text=True)
    assert [row[1] for row in rows(body)] == ["Token revoked", "Token renamed", "Token created"]
    assert "3 events matching the filters" in body
    assert f'value="{history["public_id"]}" selected' in body
    assert "Clear filters" in body


def test_filter_by_kind_of_event(client, history):
    body = client.get("/admin/audit-log?kind=support").get_data(as_text=True)
    assert {row[1] for row in rows(body)} == {
        "Support access ended",
        "Support viewed",
        "Support access started",
        "Support access granted",
    }
    failed = client.get("/admin/audit-log?kind=sign-in-failed").get_data(as_text=True)
    assert [row[1] for row in rows(failed)] == ["Failed sign-in"]


def test_filters_combine(client, history):
    body = client.get(f"/admin/audit-log?token={history['public_id']}&kind=token.renamed").get_data(
        as_text=True
    )
    assert [row[1] for row in rows(body)] == ["Token renamed"]


def test_a_filter_that_matches_nothing_says_so(client, history):
    body = client.get(f"/admin/audit-log?token={history['other']}&kind=token.revoked").get_data(
        as_text=True
    )
    assert "No events match these filters." in body


def test_unknown_kind_is_ignored(client, history):
    body = client.get("/admin/audit-log?kind=nonsense").get_data(as_text=True)
    assert len(rows(body)) == 10


def test_filtering_by_another_business_token_is_404(app, client, people, history):
    other = app.test_client()
    login(other, people["other_owner"])
    response = other.get(f"/admin/audit-log?token={history['public_id']}")
    assert response.status_code == 404
    assert other.get(f"/admin/audit-log.csv?token={history['public_id']}").status_code == 404


def test_another_owner_sees_only_their_own_business_events(app, people, history):
    other = app.test_client()
    login(other, people["other_owner"])
    body = other.get("/admin/audit-log").get_data(as_text=True)
    assert [row[1:3] for row in rows(body)] == [["Signed in", "Oscar Other"]]
    assert "Xero Books" not in body and "Sam Support" not in body
    exported = read_csv(other.get("/admin/audit-log.csv"))
    assert [row["Actor"] for row in exported] == ["Oscar Other"]


def test_htmx_filtering_returns_only_the_results(client, history):
    response = client.get("/admin/audit-log?kind=support", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="audit-results"')
    assert "<html" not in body
    assert 'href="/admin/audit-log.csv?kind=support"' in body


def test_audit_log_pages_keep_the_filters(app, client, people, clock):
    login(client, people["owner"])
    business_id = people["owner"].business_id
    for number in range(60):
        clock.advance(seconds=1)
        add_event(
            app,
            clock,
            "auth.login_failed",
            business_id=business_id,
            details={"email": f"try{number:02d}@acme.example"},
        )
    first = client.get("/admin/audit-log?kind=sign-in-failed").get_data(as_text=True)
    got = rows(first)
    assert len(got) == 50
    assert "try59@" in got[0][3] and "try10@" in got[-1][3]
    assert 'href="/admin/audit-log?page=2&amp;kind=sign-in-failed"' in first
    second = client.get("/admin/audit-log?page=2&kind=sign-in-failed").get_data(as_text=True)
    got = rows(second)
    assert len(got) == 10
    assert "try09@" in got[0][3] and "try00@" in got[-1][3]
    assert "51–60 of 60" in second


def test_a_revoked_token_used_shows_with_the_tokens_name(app, client, people, clock):
    login(client, people["owner"])
    _response, plaintext = create_token_via_ui(client, "Old POS")
    public_id = parse_token(plaintext).public_id
    client.post(f"/admin/api-tokens/{public_id}/revoke")
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.public_id == public_id))
        token_id = token.id
    # Written the way the API's usage recorder writes it.
    add_event(
        app,
        clock,
        "token.revoked_used",
        business_id=people["owner"].business_id,
        actor_token_id=token_id,
        target_type="token",
        target_id=public_id,
        ip="198.51.100.9",
        details={"public_id": public_id, "method": "POST", "route": "/api/v1/receipts"},
    )
    body = client.get("/admin/audit-log?kind=token.revoked_used").get_data(as_text=True)
    assert [unescape(cell) for cell in rows(body)[0][1:]] == [
        "Revoked token used",
        "Someone using the revoked token",
        f"Someone used the revoked token “Old POS” (vbx_{public_id}…) (POST /api/v1/receipts);"
        " it was refused.",
        "198.51.100.9",
    ]
    assert len(rows(client.get(f"/admin/audit-log?token={public_id}").get_data(as_text=True))) == 3


def test_a_receipt_made_with_a_token_names_the_token_as_actor(app, client, people, clock):
    login(client, people["owner"])
    _response, plaintext = create_token_via_ui(client, "POS System - Branch 1")
    public_id = parse_token(plaintext).public_id
    with app.app_context():
        token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.public_id == public_id))
        audit.record(
            "receipt.created",
            business_id=people["owner"].business_id,
            actor_user_id=people["owner"].id,
            actor_token_id=token_id,
            target_type="receipt",
            target_id=41,
            details={
                "public_id": public_id,
                "branch": "Branch 1",
                "currency": "USD",
                "total": "12.50",
            },
        )
        db.session.commit()
    body = client.get(f"/admin/audit-log?token={public_id}&kind=receipt").get_data(as_text=True)
    assert [unescape(cell) for cell in rows(body)[0][1:4]] == [
        "Receipt created",
        f"Token “POS System - Branch 1” (vbx_{public_id}…)",
        f"Created receipt 41 (Branch 1, USD 12.50) with token “POS System - Branch 1” "
        f"(vbx_{public_id}…).",
    ]


def test_csv_export_has_the_same_rows_and_filters(client, history):
    response = client.get(f"/admin/audit-log.csv?token={history['public_id']}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="audit-log-2026-12-03.csv"'
    )
    assert response.get_data().startswith(b"\xef\xbb\xbf")
    exported = read_csv(response)
    assert list(exported[0]) == [
        "Time (UTC)",
        "Time (Africa/Harare)",
        "Event",
        "Actor",
        "Details",
        "Token",
        "Token name",
        "IP address",
    ]
    assert [row["Event"] for row in exported] == [
        "Token revoked",
        "Token renamed",
        "Token created",
    ]
    created = exported[-1]
    assert created["Time (UTC)"] == "2026-12-03T10:02:00Z"
    assert created["Time (Africa/Harare)"] == "Thu 3 Dec 2026, 12:02:00 CAT (UTC+02:00)"
    assert created["Actor"] == "Olivia Owner"
    assert created["Token"] == f"vbx_{history['public_id']}…"
    assert created["Token name"] == "Accounting Software"
    assert created["IP address"] == "127.0.0.1"
    everything = read_csv(client.get("/admin/audit-log.csv"))
    assert len(everything) == 10
    support_only = read_csv(client.get("/admin/audit-log.csv?kind=support"))
    assert {row["Event"] for row in support_only} == {
        "Support access ended",
        "Support viewed",
        "Support access started",
        "Support access granted",
    }


@pytest.mark.parametrize(
    "name",
    ['=HYPERLINK("http://x.example","Click")', "+1+2", "-2+3", "@SUM(A1:A2)", " =1+1"],
)
def test_csv_neutralises_names_that_look_like_formulas(client, people, name):
    login(client, people["owner"])
    create_token_via_ui(client, name)
    exported = read_csv(client.get("/admin/audit-log.csv?kind=token.created"))
    assert exported[0]["Token name"] == "'" + name.strip()


def test_csv_keeps_html_in_names_as_plain_text(client, people):
    login(client, people["owner"])
    create_token_via_ui(client, "<b>Bold</b> & <script>x</script>")
    exported = read_csv(client.get("/admin/audit-log.csv?kind=token.created"))
    assert exported[0]["Token name"] == "<b>Bold</b> & <script>x</script>"
    assert "&lt;" not in exported[0]["Details"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+44 20", "'+44 20"),
        ("-5", "'-5"),
        ("@cmd", "'@cmd"),
        ("\tTabbed", "'\tTabbed"),
        ("\rReturn", "'\rReturn"),
        ("  =padded", "'  =padded"),
        ("Plain name", "Plain name"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
    ],
)
def test_csv_cells_that_start_like_formulas_get_a_leading_quote(value, expected):
    assert csv_safe(value) == expected


def test_audit_log_is_in_the_owners_navigation(client, people):
    login(client, people["owner"])
    body = client.get("/admin/audit-log").get_data(as_text=True)
    assert '<a href="/admin/audit-log" aria-current="page">Audit log</a>' in body
    client.post("/logout")
    login(client, people["manager"])
    assert "/admin/audit-log" not in client.get("/").get_data(as_text=True)


def test_failed_sign_in_for_an_unknown_email_is_not_in_any_business_log(app, client, people, clock):
    login(client, people["owner"], password="wrong password!")
    client.post("/login", data={"email": "nobody@nowhere.example", "password": "x" * 12})
    login(client, people["owner"])
    clock.advance(seconds=1)
    body = client.get("/admin/audit-log?kind=sign-in-failed").get_data(as_text=True)
    assert "nobody@nowhere.example" not in body
    assert len(rows(body)) == 1


def test_csv_exports_every_event_across_batches_without_repeats(app, client, people, clock):
    login(client, people["owner"])
    business_id = people["owner"].business_id
    with app.app_context():
        # Many events share one timestamp, so the export must page on (time, id), not time.
        db.session.add_all(
            AuditEvent(
                created_at=clock.now,
                business_id=business_id,
                action="auth.login_failed",
                details={"email": f"try{number:04d}@acme.example"},
            )
            for number in range(1100)
        )
        db.session.commit()
    exported = read_csv(client.get("/admin/audit-log.csv?kind=sign-in-failed"))
    details = [row["Details"] for row in exported]
    assert len(details) == 1100 == len(set(details))
    assert details[0] == "Failed sign-in as try1099@acme.example."
    assert details[-1] == "Failed sign-in as try0000@acme.example."
