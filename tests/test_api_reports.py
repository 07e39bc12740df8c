"""The sales report: per day in the business's timezone, per branch, per currency; JSON or CSV."""

from __future__ import annotations

import csv
import io

import pytest
from live import bearer, issue_token_for, receipt_body

from vasbox_dash.accounts import create_business, create_user

PROBLEM = "application/problem+json"


def line(price: str, quantity: str = "1") -> dict:
    return {"description": "Item", "quantity": quantity, "unit_price": price}


@pytest.fixture
def token(app, people) -> str:
    return issue_token_for(app, people["manager"].id, "Reporting Script")


@pytest.fixture
def sell(client, token):
    def send(issued_at: str, price: str, branch: str = "Harare CBD", currency: str = "USD"):
        body = receipt_body(
            issued_at=issued_at, branch=branch, currency=currency, lines=[line(price)]
        )
        response = client.post("/api/v1/receipts", json=body, headers=bearer(token))
        assert response.status_code == 201, response.get_json()

    return send


def report(client, token, first: str, last: str, **headers):
    return client.get(
        f"/api/v1/reports/sales?from={first}&to={last}", headers={**bearer(token), **headers}
    )


def test_sales_are_totalled_per_local_day_branch_and_currency(client, token, sell):
    sell("2026-12-01T21:59:00Z", "1.10")  # 23:59 on the 1st in Harare (UTC+2)
    sell("2026-12-01T22:00:00Z", "2.20")  # 00:00 on the 2nd in Harare
    sell("2026-12-02T12:00:00Z", "3.30", branch="Avondale")
    sell("2026-12-02T13:00:00Z", "40.00", currency="ZWG")
    sell("2026-12-03T22:00:00Z", "9.99")  # the 4th in Harare: outside the range
    response = report(client, token, "2026-12-01", "2026-12-03")
    assert response.status_code == 200
    assert "Accept" in response.vary
    body = response.get_json()
    assert body["from"] == "2026-12-01" and body["to"] == "2026-12-03"
    assert body["timezone"] == "Africa/Harare"
    assert body["days"] == [
        {"date": "2026-12-01", "currency": "USD", "receipts": 1, "total": "1.10"},
        {"date": "2026-12-02", "currency": "USD", "receipts": 2, "total": "5.50"},
        {"date": "2026-12-02", "currency": "ZWG", "receipts": 1, "total": "40.00"},
    ]
    assert body["branches"] == [
        {"branch": "Avondale", "currency": "USD", "receipts": 1, "total": "3.30"},
        {"branch": "Harare CBD", "currency": "USD", "receipts": 2, "total": "3.30"},
        {"branch": "Harare CBD", "currency": "ZWG", "receipts": 1, "total": "40.00"},
    ]
    assert body["totals"] == [
        {"currency": "USD", "receipts": 3, "total": "6.60"},
        {"currency": "ZWG", "receipts": 1, "total": "40.00"},
    ]


def test_sums_of_many_cents_stay_exact(client, token, sell):
    for _ in range(30):
        sell("2026-12-02T10:00:00Z", "0.10")
    body = report(client, token, "2026-12-02", "2026-12-02").get_json()
    assert body["totals"] == [{"currency": "USD", "receipts": 30, "total": "3.00"}]


def test_days_follow_daylight_saving_time_in_the_business_timezone(app, client):
    with app.app_context():
        business = create_business("Brooklyn Bagels", "America/New_York")
        owner = create_user(
            business=business,
            email="owner@bagels.example",
            name="Bea",
            role="owner",
            password="correct horse battery staple",
        )
        owner_id = owner.id
    token = issue_token_for(app, owner_id)
    for issued_at in (
        "2026-11-01T03:30:00Z",  # 23:30 EDT on 31 October
        "2026-11-01T04:30:00Z",  # 00:30 EDT on 1 November (clocks go back at 02:00)
        "2026-11-02T04:30:00Z",  # 23:30 EST on 1 November
        "2026-11-02T05:30:00Z",  # 00:30 EST on 2 November
    ):
        body = receipt_body(issued_at=issued_at, lines=[line("1.00")])
        assert client.post("/api/v1/receipts", json=body, headers=bearer(token)).status_code == 201
    days = report(client, token, "2026-10-31", "2026-11-02").get_json()["days"]
    assert [(d["date"], d["receipts"]) for d in days] == [
        ("2026-10-31", 1),
        ("2026-11-01", 2),
        ("2026-11-02", 1),
    ]


def test_csv_is_sent_when_asked_for_one_row_per_day_branch_and_currency(client, token, sell):
    sell("2026-12-02T10:00:00Z", "2.50")
    sell("2026-12-02T11:00:00Z", "2.50")
    sell("2026-12-02T11:00:00Z", "1.00", branch="Avondale")
    response = report(client, token, "2026-12-02", "2026-12-02", Accept="text/csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "sales-2026-12-02-to-2026-12-02.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows == [
        ["date", "branch", "currency", "receipts", "total"],
        ["2026-12-02", "Avondale", "USD", "1", "1.00"],
        ["2026-12-02", "Harare CBD", "USD", "2", "5.00"],
    ]


def test_an_empty_range_gives_only_the_csv_header(client, token):
    response = report(client, token, "2026-12-02", "2026-12-02", Accept="text/csv")
    assert response.get_data(as_text=True) == "date,branch,currency,receipts,total\r\n"


def test_a_branch_name_cannot_become_a_spreadsheet_formula(client, token, sell):
    sell("2026-12-02T10:00:00Z", "1.00", branch='=HYPERLINK("http://evil.example")')
    text = report(client, token, "2026-12-02", "2026-12-02", Accept="text/csv").get_data(
        as_text=True
    )
    assert "'=HYPERLINK" in text
    assert "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text


@pytest.mark.parametrize(
    "accept, mimetype",
    [
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        ("text/csv;q=0.5, application/json", "application/json"),
        ("text/csv, application/json;q=0.9", "text/csv"),
        ("application/xml", "application/json"),
    ],
)
def test_json_is_the_default_and_csv_must_be_preferred(client, token, accept, mimetype):
    response = report(client, token, "2026-12-02", "2026-12-02", Accept=accept)
    assert response.status_code == 200 and response.mimetype == mimetype


@pytest.mark.parametrize(
    "query, parameters",
    [
        ("", {"from", "to"}),
        ("from=2026-12-01", {"to"}),
        ("from=2026-12-32&to=2026-12-01", {"from"}),
        ("from=2026-12-01T00:00:00Z&to=2026-12-02", {"from"}),
        ("from=2026-12-03&to=2026-12-01", {"to"}),
        ("from=2024-01-01&to=2025-01-01", {"to"}),
    ],
)
def test_bad_report_ranges_get_400_naming_each_parameter(client, token, query, parameters):
    response = client.get(f"/api/v1/reports/sales?{query}", headers=bearer(token))
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert {e["parameter"] for e in response.get_json()["errors"]} == parameters


def test_a_full_year_is_allowed(client, token):
    assert report(client, token, "2025-01-01", "2025-12-31").status_code == 200
