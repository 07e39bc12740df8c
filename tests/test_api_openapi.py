"""The OpenAPI document: valid OpenAPI 3.1, covering exactly the routes the API serves, and
honoured by the implementation (schemathesis, in-process, no 5xx and no schema mismatch)."""

from __future__ import annotations

import re

import pytest
import schemathesis
from conftest import make_config
from hypothesis import HealthCheck, settings
from live import bearer, issue_token_for
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import positive_data_acceptance

from vasbox_dash.openapi import openapi_document


@pytest.fixture
def app_config(database_url, clock):
    # Generated requests must not trip the rate limits; those have their own tests.
    return make_config(
        database_url,
        API_RATE_LIMIT="1000000 per minute",
        API_AUTH_FAILURE_LIMIT="1000000 per minute",
    )


def test_the_served_document_is_valid_openapi_3_1(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def _flask_api_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operations.add((method.lower(), path))
    return operations


def test_the_document_describes_exactly_the_routes_served(app):
    documented = {
        (method, path) for path, item in openapi_document()["paths"].items() for method in item
    }
    assert documented == _flask_api_operations(app)


def test_the_permission_table_is_in_the_description():
    description = openapi_document()["info"]["description"]
    assert "| cashier | create and read receipts |" in description


@pytest.fixture
def api_token(app, people) -> str:
    return issue_token_for(app, people["owner"].id, "Schemathesis")


@pytest.fixture
def seeded(app, api_token):
    """A few receipts, so reads and reports return data, not only empty lists."""
    client = app.test_client()
    for branch in ("Harare CBD", "Avondale"):
        client.post(
            "/api/v1/receipts",
            json={
                "branch": branch,
                "currency": "USD",
                "payment_method": "cash",
                "issued_at": "2026-12-02T09:00:00Z",
                "lines": [{"description": "Bread", "quantity": "2", "unit_price": "1.20"}],
            },
            headers=bearer(api_token),
        )
    return app


# The document is static, so schemathesis reads it straight from the code; the served copy
# is the same object (see test_the_served_document_is_valid_openapi_3_1).
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_honours_its_openapi_document(case, seeded, api_token):
    # Every check runs except "positive data is accepted": an opaque cursor, the issued_at
    # window around now, the receipt total limit and from <= to in reports are rules the
    # document cannot express, so a schema-valid request may rightly get 400 or 422.

    case.operation.schema.app = seeded  # this test's app, for the checks' own probes too
    case.call_and_validate(
        app=seeded, headers=bearer(api_token), excluded_checks=[positive_data_acceptance]
    )
