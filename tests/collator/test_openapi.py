"""The OpenAPI schema at /api/schema describes every endpoint truthfully.

A bounded schemathesis run over the WSGI app, with real config, usage and outage rows in
the database: no 500, and every answer (200s, 400s, 404s) matches the documented schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client, override_settings
from hypothesis import HealthCheck, settings

from members.config_files import NetworkConfig
from tests.collator.api_fixtures import add_event, add_usage, api, network_config, utc  # noqa: F401

EXPECTED_PATHS = {
    "/api/requests/country",
    "/api/requests/asn",
    "/api/requests/service",
    "/api/requests/member",
    "/api/requests/summary",
    "/api/downtime/events",
    "/api/downtime/current",
    "/api/downtime/summary",
    "/api/members",
    "/api/members/stats",
    "/api/services",
    "/api/services/summary",
    "/api/health",
    "/api/billing/breakdown",
    "/api/billing/summary",
    "/api/billing/pdfs",
    "/api/billing/pdfs/download",
}


def test_it_documents_every_endpoint_without_trailing_slashes(api: Client) -> None:  # noqa: F811
    response = api.get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) >= EXPECTED_PATHS
    assert all(set(operations) == {"get"} for operations in schema["paths"].values())


def test_it_serves_a_browsable_docs_page(api: Client) -> None:  # noqa: F811
    response = api.get("/api/docs")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


SIDECAR = "/static/drf_spectacular_sidecar/swagger-ui-dist/"


def test_it_serves_the_docs_page_assets_itself_so_it_works_offline(api: Client) -> None:  # noqa: F811
    """Every asset of /api/docs comes from this server (drf-spectacular-sidecar), none from a CDN."""
    page = api.get("/api/docs").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)

    assert assets == [
        f"{SIDECAR}favicon-32x32.png",
        f"{SIDECAR}swagger-ui.css",
        f"{SIDECAR}swagger-ui-bundle.js",
        f"{SIDECAR}swagger-ui-standalone-preset.js",
    ]
    assert "cdn." not in page and "jsdelivr" not in page and "unpkg" not in page
    bundle = api.get(f"{SIDECAR}swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert b"SwaggerUIBundle" in b"".join(bundle.streaming_content)


BILLING_PATHS = {"/api/billing/breakdown", "/api/billing/summary", "/api/billing/pdfs", "/api/billing/pdfs/download"}


def _schema(client: Client) -> dict[str, Any]:
    response = client.get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    return dict(json.loads(response.content))


def test_it_declares_the_bearer_scheme_on_the_billing_endpoints_when_they_need_a_token(api: Client) -> None:  # noqa: F811
    with override_settings(API_BILLING_REQUIRES_TOKEN=True):
        schema = _schema(api)

    assert schema["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API token made in the admin"}
    }
    security = {path: operations["get"].get("security") for path, operations in schema["paths"].items()}
    assert {path: security[path] for path in BILLING_PATHS} == {path: [{"bearerAuth": []}] for path in BILLING_PATHS}
    assert all(security[path] != [{"bearerAuth": []}] for path in set(security) - BILLING_PATHS)


def test_it_declares_no_token_while_the_billing_endpoints_are_public(api: Client) -> None:  # noqa: F811
    """DECISIONS 20's default: no authenticator runs, so none is documented."""
    schema = _schema(api)

    assert "securitySchemes" not in schema.get("components", {})
    assert all(schema["paths"][path]["get"].get("security") is None for path in BILLING_PATHS)


@pytest.fixture
def wsgi_app_in_test_transaction() -> Iterator[Any]:
    """The real WSGI app, minus closing the DB connection after each request (which would
    end the test's transaction), exactly as Django's own test client does."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(
    network_config: NetworkConfig,  # noqa: F811
    api: Client,  # noqa: F811
    wsgi_app_in_test_transaction: Any,
    settings: Any,
    tmp_path: Path,
) -> Any:
    # A billing folder with one month's files, so that listing and download answer 200s too.
    settings.WORK_DIR = tmp_path
    folder = tmp_path / "tmp" / "2025-03"
    folder.mkdir(parents=True)
    (folder / "2025_03-Monthly_Overview.pdf").write_bytes(b"%PDF-1.4 overview")
    (folder / "2025_03-IBP-Service_Stake_Plus.pdf").write_bytes(b"%PDF-1.4 statement")
    add_usage(
        [
            {
                "date": date.today(),
                "domain_name": "polkadot.dotters.network",
                "member_name": "Stake Plus",
                "network_asn": "AS24940",
                "network_name": "Hetzner",
                "country_code": "DE",
                "country_name": "Germany",
                "hits": 10,
            },
            {"date": date.today(), "domain_name": "kusama.ibp.network", "member_name": "Amforc", "hits": 3},
        ]
    )
    add_event(start_time=utc("2025-03-01T10:00:00Z"), end_time=utc("2025-03-01T11:00:00Z"), status=1)
    add_event(
        member_name="Amforc",
        check_type="3",
        endpoint="wss://kusama.dotters.network",
        start_time=utc("2025-03-01T10:00:00Z"),
    )
    return schemathesis.openapi.from_wsgi("/api/schema?format=json", wsgi_app_in_test_transaction)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_it_keeps_to_its_schema(case: Any) -> None:
    response = case.call()
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.status_code_conformance,
            schemathesis.checks.content_type_conformance,
            schemathesis.checks.response_schema_conformance,
        ],
    )
