"""Receipts through the API: exact totals, validation, idempotent retries, listing."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from conftest import make_config
from live import bearer, issue_token_for, receipt_body
from sqlalchemy import func, select

from vasbox_dash import audit
from vasbox_dash.extensions import db
from vasbox_dash.models import AuditEvent, Receipt, ReceiptLine

PROBLEM = "application/problem+json"


@pytest.fixture
def token(app, people) -> str:
    return issue_token_for(app, people["cashier"].id, "Till 1")


@pytest.fixture
def post(client, token):
    def send(body=None, key=None, as_token=None, **kwargs):
        headers = bearer(as_token or token)
        if key is not None:
            headers["Idempotency-Key"] = key
        if "data" not in kwargs:
            kwargs["json"] = receipt_body() if body is None else body
        return client.post("/api/v1/receipts", headers=headers, **kwargs)

    return send


def stored_receipts(app) -> list[Receipt]:
    with app.app_context():
        rows = db.session.scalars(select(Receipt).order_by(Receipt.id)).all()
        for row in rows:
            _ = row.lines
        db.session.expunge_all()
        return rows


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def errors_of(response) -> dict[str, str]:
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    return {e["pointer"]: e["detail"] for e in response.get_json()["errors"]}


def test_creating_a_receipt_stores_it_with_server_computed_totals(app, people, post):
    body = receipt_body(
        lines=[
            {"description": "Sweets", "quantity": "3", "unit_price": "0.10"},
            {"description": "Rice (kg)", "quantity": "0.333", "unit_price": "3.00"},
            {"description": "Gum", "quantity": "2.5", "unit_price": "0.01"},
        ]
    )
    response = post(body)
    assert response.status_code == 201
    created = response.get_json()
    assert response.headers["Location"] == f"/api/v1/receipts/{created['id']}"
    assert "Idempotent-Replayed" not in response.headers
    # 0.999 and 0.025 round half up to cents; floats would give 0.30000000000000004.
    assert [line["line_total"] for line in created["lines"]] == ["0.30", "1.00", "0.03"]
    assert created["total"] == "1.33"
    assert created["issued_at"] == "2026-12-03T08:00:00Z"
    assert created["lines"][1]["quantity"] == "0.333"

    (receipt,) = stored_receipts(app)
    assert receipt.total == Decimal("1.33")
    assert receipt.business_id == people["cashier"].business_id
    assert receipt.created_by_id == people["cashier"].id
    assert [line.line_total for line in receipt.lines] == [
        Decimal("0.30"),
        Decimal("1.00"),
        Decimal("0.03"),
    ]


def test_a_receipt_and_its_audit_row_commit_together(app, people, post):
    response = post()
    receipt_id = response.get_json()["id"]
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "receipt.created"))
        assert event.target_id == str(receipt_id)
        assert event.actor_user_id == people["cashier"].id
        assert event.actor_token_id is not None
        assert event.business_id == people["cashier"].business_id
        assert event.details["total"] == "4.90"


def test_when_the_audit_row_fails_no_receipt_is_stored(app, post, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("audit storage failed")

    monkeypatch.setattr(audit, "record", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = post()
    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    assert count(app, Receipt) == 0
    assert count(app, ReceiptLine) == 0


@pytest.mark.parametrize(
    "change, pointer, message",
    [
        ({"branch": ""}, "/branch", "1 to 80"),
        ({"branch": "x" * 81}, "/branch", "1 to 80"),
        ({"branch": "   "}, "/branch", "visible text"),
        ({"branch": "Main\nStreet"}, "/branch", "control characters"),
        ({"branch": 7}, "/branch", "must be a string"),
        ({"currency": "usd"}, "/currency", "ISO 4217"),
        ({"currency": "XYZ"}, "/currency", "ISO 4217"),
        ({"payment_method": "cheque"}, "/payment_method", "one of cash"),
        ({"issued_at": "2026-12-03T10:00:00"}, "/issued_at", "offset"),
        ({"issued_at": "yesterday"}, "/issued_at", "RFC 3339"),
        ({"issued_at": "1999-12-31T23:59:59Z"}, "/issued_at", "year 2000"),
        ({"issued_at": "2026-12-05T10:00:00Z"}, "/issued_at", "future"),
        ({"lines": []}, "/lines", "at least one line"),
        ({"lines": "bread"}, "/lines", "array"),
        ({"lines": ["bread"]}, "/lines/0", "object"),
        ({"tip": "1.00"}, "/tip", "Unknown field"),
    ],
)
def test_invalid_field_gets_422_naming_it(app, post, change, pointer, message):
    response = post(receipt_body(**change))
    errors = errors_of(response)
    assert pointer in errors and message in errors[pointer]
    assert response.get_json()["type"].endswith("/validation-error")
    assert count(app, Receipt) == 0


@pytest.mark.parametrize(
    "line, pointer, message",
    [
        ({"quantity": "0"}, "/lines/0/quantity", "above 0"),
        ({"quantity": "-1"}, "/lines/0/quantity", "above 0"),
        ({"quantity": "1.2345"}, "/lines/0/quantity", "3 decimals"),
        ({"quantity": "1000000000"}, "/lines/0/quantity", "below 10^9"),
        ({"quantity": 2}, "/lines/0/quantity", "decimal string"),
        ({"quantity": 0.5}, "/lines/0/quantity", "decimal string"),
        ({"unit_price": "1.005"}, "/lines/0/unit_price", "2 decimals"),
        ({"unit_price": "-0.50"}, "/lines/0/unit_price", "from 0"),
        ({"unit_price": "1e3"}, "/lines/0/unit_price", "decimal string"),
        ({"unit_price": True}, "/lines/0/unit_price", "decimal string"),
        ({"description": ""}, "/lines/0/description", "1 to 200"),
        ({"colour": "red"}, "/lines/0/colour", "Unknown field"),
    ],
)
def test_invalid_line_gets_422_pointing_at_the_line_field(post, line, pointer, message):
    item = {"description": "Bread", "quantity": "1", "unit_price": "1.00", **line}
    errors = errors_of(post(receipt_body(lines=[item])))
    assert pointer in errors and message in errors[pointer]


def test_every_bad_field_is_listed_not_just_the_first(post):
    body = {
        "branch": "",
        "currency": "usd",
        "lines": [
            {"description": "Bread", "quantity": "1", "unit_price": "1.00"},
            {"quantity": "0", "unit_price": "x"},
        ],
    }
    errors = errors_of(post(body))
    assert set(errors) == {
        "/branch",
        "/currency",
        "/payment_method",
        "/issued_at",
        "/lines/1/description",
        "/lines/1/quantity",
        "/lines/1/unit_price",
    }


def test_a_total_too_large_to_store_is_refused(post):
    line = {"description": "Gold", "quantity": "999999999", "unit_price": "999999999999.99"}
    errors = errors_of(post(receipt_body(lines=[line])))
    assert "too large" in errors["/lines/0"]


@pytest.mark.parametrize(
    "kwargs, status, words",
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": '{"a": NaN}', "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": "branch=x", "content_type": "text/plain"}, 415, "application/json"),
        ({"data": "[" * 100_000, "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": b"x" * (1024 * 1024 + 1), "content_type": "application/json"}, 413, ""),
    ],
    ids=["broken json", "nan", "not json", "deeply nested", "too large"],
)
def test_a_body_that_is_not_a_json_object_is_refused(app, post, kwargs, status, words):
    response = post(**kwargs)
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    assert words in response.get_json()["detail"]
    assert count(app, Receipt) == 0


def test_a_json_array_body_is_a_validation_error(post):
    errors = errors_of(post([receipt_body()]))
    assert "JSON object" in errors[""]


def test_a_retry_with_the_same_key_and_body_returns_the_original(app, post):
    first = post(key="pos1-000123")
    again = post(key="pos1-000123")
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(app, Receipt) == 1
    assert count(app, AuditEvent, AuditEvent.action == "receipt.created") == 1


def test_an_equivalent_body_counts_as_the_same_request(app, post):
    first = post(key="k-1")
    same_meaning = receipt_body(
        issued_at="2026-12-03T08:00:00Z",
        lines=[
            {"unit_price": "1.2", "quantity": "2.000", "description": "White loaf"},
            {"description": "Meat pie", "quantity": "1", "unit_price": "2.50"},
        ],
    )
    again = post(same_meaning, key="k-1")
    assert again.status_code == 201 and again.get_json()["id"] == first.get_json()["id"]
    assert count(app, Receipt) == 1


def test_the_same_key_with_a_different_body_is_a_conflict(app, post):
    first = post(key="k-1")
    response = post(receipt_body(branch="Avondale"), key="k-1")
    assert response.status_code == 409
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["type"].endswith("/idempotency-key-reused")
    assert body["receipt_id"] == first.get_json()["id"]
    assert count(app, Receipt) == 1


def test_without_a_key_each_post_is_a_new_receipt(app, post):
    assert post().get_json()["id"] != post().get_json()["id"]
    assert count(app, Receipt) == 2


def test_keys_belong_to_their_token(app, people, post):
    other_till = issue_token_for(app, people["cashier"].id, "Till 2")
    first = post(key="shared-key")
    second = post(key="shared-key", as_token=other_till)
    assert second.status_code == 201
    assert second.get_json()["id"] != first.get_json()["id"]
    assert "Idempotent-Replayed" not in second.headers


@pytest.mark.parametrize("key", ["", "has space", "é-accent", "x" * 256, "tab\there"])
def test_a_malformed_idempotency_key_is_refused(app, post, key):
    response = post(key=key)
    assert response.status_code == 400
    assert response.get_json()["type"].endswith("/invalid-idempotency-key")
    assert count(app, Receipt) == 0


def test_simultaneous_retries_store_exactly_one_receipt(app, token):
    barrier = threading.Barrier(5)
    results = []

    def send():
        client = app.test_client()
        barrier.wait()
        response = client.post(
            "/api/v1/receipts",
            json=receipt_body(),
            headers={**bearer(token), "Idempotency-Key": "burst-1"},
        )
        results.append((response.status_code, response.get_json()["id"]))

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 5
    assert {status for status, _ in results} == {201}
    assert len({receipt_id for _, receipt_id in results}) == 1
    assert count(app, Receipt) == 1


def make_receipts(post, times: list[str], branch: str = "Harare CBD") -> list[int]:
    return [post(receipt_body(issued_at=t, branch=branch)).get_json()["id"] for t in times]


def test_receipts_are_listed_newest_first_a_page_at_a_time(client, token, post):
    ids = make_receipts(
        post,
        [
            "2026-12-01T08:00:00Z",
            "2026-12-03T08:00:00Z",
            "2026-12-02T08:00:00Z",
            "2026-12-03T08:00:00Z",
            "2026-11-30T08:00:00Z",
        ],
    )
    expected = [ids[3], ids[1], ids[2], ids[0], ids[4]]  # ties broken by newest id
    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get("/api/v1/receipts" + query, headers=bearer(token)).get_json()
        seen += [r["id"] for r in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and pages == 3


def test_receipts_are_filtered_by_local_days_instants_and_branch(client, token, post):
    # Harare is UTC+2: 21:59Z is 23:59 on the 1st there, 22:30Z is 00:30 on the 2nd.
    late_first = make_receipts(post, ["2026-12-01T21:59:00Z"])[0]
    early_second = make_receipts(post, ["2026-12-01T22:30:00Z"])[0]
    avondale = make_receipts(post, ["2026-12-02T10:00:00Z"], branch="Avondale")[0]

    def ids(query):
        response = client.get("/api/v1/receipts?" + query, headers=bearer(token))
        assert response.status_code == 200
        return {r["id"] for r in response.get_json()["data"]}

    assert ids("from=2026-12-02&to=2026-12-02") == {early_second, avondale}
    assert ids("from=2026-12-01&to=2026-12-01") == {late_first}
    assert ids("from=2026-12-01T22:00:00Z") == {early_second, avondale}
    assert ids("from=2026-12-02T00:00:00%2B02:00") == {early_second, avondale}
    assert ids("to=2026-12-01T22:30:00Z") == {late_first}
    assert ids("branch=Avondale") == {avondale}
    assert ids("branch=avondale") == set()
    assert ids("from=2026-12-03&to=2026-12-01") == set()


@pytest.mark.parametrize(
    "query, parameters",
    [
        ("limit=0", {"limit"}),
        ("limit=abc", {"limit"}),
        ("limit=101", {"limit"}),
        ("cursor=not-a-cursor", {"cursor"}),
        ("from=2026-13-01&to=tomorrow", {"from", "to"}),
        ("from=2026-12-01T10:00:00", {"from"}),
        ("branch=" + "x" * 81, {"branch"}),
    ],
)
def test_bad_list_parameters_get_400_naming_each(client, token, query, parameters):
    response = client.get("/api/v1/receipts?" + query, headers=bearer(token))
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["type"].endswith("/invalid-parameters")
    assert {e["parameter"] for e in body["errors"]} == parameters


def test_one_receipt_is_returned_by_id(client, token, post):
    created = post().get_json()
    response = client.get(f"/api/v1/receipts/{created['id']}", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == created


def test_an_unknown_receipt_is_404(client, token):
    response = client.get("/api/v1/receipts/424242", headers=bearer(token))
    assert response.status_code == 404
    assert response.mimetype == PROBLEM


class TestFutureWindow:
    """issued_at may run up to a day ahead of the server clock (a POS with a fast clock)."""

    @pytest.fixture
    def app_config(self, database_url, clock):
        return make_config(database_url, CLOCK=clock)

    def test_a_receipt_a_little_ahead_of_the_clock_is_accepted(self, post, clock):
        ahead = (clock.now.replace(microsecond=0)).isoformat().replace("+00:00", "Z")
        assert post(receipt_body(issued_at=ahead)).status_code == 201
