"""/api/health: database, NATS heartbeat, config, usage, statements, TLS, version."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import Client

from members.config_files import NetworkConfig
from members.services import config_sync
from metrics.models import ClusterNode
from tests.collator.api_fixtures import add_usage, api, get_json, network_config, utc  # noqa: F401
from tests.collator.tls_helpers import write_certificate

NOW = utc("2025-03-02T12:00:00Z")


@pytest.fixture
def frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def _heard(seconds_ago: int) -> None:
    ClusterNode.objects.create(
        node_id=settings.COLLATOR.nats.node_id,
        node_role="collator",
        first_seen=NOW - timedelta(days=1),
        last_heard=NOW - timedelta(seconds=seconds_ago),
    )


@pytest.mark.usefixtures("frozen")
def test_it_reports_every_part(api: Client, network_config: NetworkConfig) -> None:  # noqa: F811
    _heard(60)
    add_usage([{"date": date(2025, 3, 1), "domain_name": "polkadot.dotters.network", "hits": 1}])
    body = get_json(api, "/api/health")
    assert list(body) == sorted(body)
    assert body["status"] == "healthy"
    assert body["database"] == {"error": None, "ok": True}
    assert body["timestamp"] == "2025-03-02T12:00:00Z"
    assert body["version"] == settings.VERSION
    assert body["ssl"] == "disabled"
    assert body["last_usage_date"] == "2025-03-01"
    assert body["last_statement_run"] is None
    assert body["nats_listener"] == {
        "age_seconds": 60,
        "last_heard": "2025-03-02T11:59:00Z",
        "node_id": settings.COLLATOR.nats.node_id,
        "state": "ok",
    }
    assert body["config"]["last_good_load"] == "2025-03-02T12:00:00Z"
    assert body["config"]["last_error"] is None


@pytest.mark.usefixtures("frozen")
def test_it_flags_a_stale_heartbeat_and_a_failed_config_load(
    api: Client,  # noqa: F811
    network_config: NetworkConfig,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Three missed 90 s heartbeats make the listener stale; a reload of a missing file is
    a failure that health shows next to the last good load (DECISIONS 23)."""
    _heard(600)
    result = config_sync(urls={"MembersConfig": str(tmp_path / "missing.json")})
    assert result.status == "failed"
    body = get_json(api, "/api/health")
    assert body["nats_listener"]["state"] == "stale"
    assert body["config"]["last_good_load"] == "2025-03-02T12:00:00Z"
    assert "MembersConfig" in body["config"]["last_error"]
    assert body["config"]["last_error_at"] == "2025-03-02T12:00:00Z"


def test_it_says_unknown_without_a_heartbeat_or_data(api: Client) -> None:  # noqa: F811
    body = get_json(api, "/api/health")
    assert body["nats_listener"]["state"] == "unknown"
    assert body["last_usage_date"] is None
    assert body["config"]["last_good_load"] is None


def test_it_reports_the_tls_state(api: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    cert, key = write_certificate(tmp_path, "health-test")
    monkeypatch.setenv("SSL_CERT", str(cert))
    monkeypatch.setenv("SSL_KEY", str(key))
    assert get_json(api, "/api/health")["ssl"] == "enabled"
    key.write_text("not a key")
    assert get_json(api, "/api/health")["ssl"] == "error"


@pytest.mark.mysql_only  # SQLite's in-memory test database cannot be made unreachable
@pytest.mark.django_db(transaction=True)
def test_it_answers_503_when_the_database_is_unreachable(client: Client) -> None:
    """A real failed connection: the database settings point at nothing for this request."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = "1"
    try:
        response = client.get("/api/health")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    body: dict[str, Any] = response.json()
    assert response.status_code == 503
    assert body["status"] == "unhealthy"
    assert body["database"]["ok"] is False
    assert body["database"]["error"]
