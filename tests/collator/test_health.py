"""/api/health: database, NATS heartbeat, config, usage, statements, TLS, version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import Client

from billing.services import billing_run_lock, billing_run_unlock
from members.config_files import NetworkConfig
from members.models import ConfigSnapshot
from members.services import config_sync
from metrics.listener_state import listener_state_save
from metrics.models import ClusterNode
from metrics.telemetry import telemetry_queue_depth_set, telemetry_snapshot_save
from tests.collator.api_fixtures import CONFIG_FILES, add_usage, api, get_json, network_config, utc  # noqa: F401
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


def test_it_reports_the_last_billing_run_even_when_it_wrote_no_statement(api: Client) -> None:  # noqa: F811
    """January's run changed statements at 10:00; February's re-run at 11:00 was unchanged
    (no Statement written) and its run at 11:30 failed (nothing written): health shows the
    failed run. No Statement row exists at all, which is what the old report read."""
    runs = [
        (date(2025, 1, 1), "2025-03-02T10:00:00Z", "changed", ""),
        (date(2025, 2, 1), "2025-03-02T11:00:00Z", "unchanged", ""),
        (date(2025, 2, 1), "2025-03-02T11:30:00Z", "failed", "ValueError: no config in force for 2025-02"),
    ]
    for month, finished, outcome, error in runs:
        with time_machine.travel(utc(finished), tick=False):
            token = billing_run_lock(month=month)
            billing_run_unlock(month=month, token=token, outcome=outcome, summary={}, error=error)

    assert get_json(api, "/api/health")["last_statement_run"] == {
        "error": "ValueError: no config in force for 2025-02",
        "finished_at": "2025-03-02T11:30:00Z",
        "month": "2025-02",
        "outcome": "failed",
    }


def test_it_reports_an_unchanged_successful_billing_run_without_an_error(api: Client) -> None:  # noqa: F811
    with time_machine.travel(utc("2025-03-01T00:05:00Z"), tick=False):
        token = billing_run_lock(month=date(2025, 2, 1))
        billing_run_unlock(month=date(2025, 2, 1), token=token, outcome="unchanged", summary={})

    assert get_json(api, "/api/health")["last_statement_run"] == {
        "error": None,
        "finished_at": "2025-03-01T00:05:00Z",
        "month": "2025-02",
        "outcome": "unchanged",
    }


def test_it_stops_showing_a_config_error_once_an_unchanged_reload_finds_the_config_good(
    api: Client,  # noqa: F811
    ibp_config_dir: Path,
    tmp_path: Path,
) -> None:
    """Applied at 10:00, a reload of a missing file fails at 11:00, and the 12:00 reload finds
    the same good files again: it writes no new snapshot, yet the 11:00 error is over."""
    good = {key: str(ibp_config_dir / name) if name else "" for key, name in CONFIG_FILES.items()}
    with time_machine.travel(utc("2025-03-02T10:00:00Z"), tick=False):
        assert config_sync(urls=good).status == "applied"
    with time_machine.travel(utc("2025-03-02T11:00:00Z"), tick=False):
        assert config_sync(urls={**good, "MembersConfig": str(tmp_path / "missing.json")}).status == "failed"
        failing = get_json(api, "/api/health")["config"]
    with time_machine.travel(utc("2025-03-02T12:00:00Z"), tick=False):
        assert config_sync(urls=good).status == "unchanged"
        recovered = get_json(api, "/api/health")["config"]

    applied = ConfigSnapshot.objects.get(status="applied")
    assert failing["last_good_check"] == "2025-03-02T10:00:00Z"
    assert failing["last_error_at"] == "2025-03-02T11:00:00Z"
    assert "MembersConfig" in failing["last_error"]
    assert recovered == {
        "last_error": None,
        "last_error_at": None,
        "last_good_check": "2025-03-02T12:00:00Z",
        "last_good_load": "2025-03-02T10:00:00Z",
        "snapshot_id": applied.pk,
    }
    assert applied.last_checked_at == utc("2025-03-02T12:00:00Z")
    assert ConfigSnapshot.objects.count() == 2  # the unchanged reload added no row


@pytest.mark.usefixtures("frozen")
def test_it_counts_the_matrix_alerts_waiting_in_the_listener_queue_depth(api: Client) -> None:  # noqa: F811
    """The alert sender publishes its depth as a gauge and the listener saves its samples:
    3 alerts waiting for the homeserver show next to the DB queues."""
    node_id = settings.COLLATOR.nats.node_id
    listener_state_save(
        node_id=node_id,
        connected=True,
        last_heartbeat_sent=NOW,
        last_collection={},
        queue_depths={"finalize": 2, "usage": 0},
        queue_dropped={"finalize": 0, "usage": 0},
        durable_finalize=False,
        started_at=NOW,
        now=NOW,
    )
    telemetry_queue_depth_set(queue="matrix_alerts", depth=3)
    try:
        telemetry_snapshot_save(process=node_id)
    finally:
        telemetry_queue_depth_set(queue="matrix_alerts", depth=0)

    queue_depth = get_json(api, "/api/health")["nats_listener"]["queue_depth"]

    assert queue_depth == {"finalize": 2, "matrix_alerts": 3, "usage": 0}


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


def test_it_shows_a_membership_time_out_of_range_as_the_last_config_error(
    api: Client,  # noqa: F811
    ibp_config_dir: Path,
    tmp_path: Path,
) -> None:
    """`Joined: 10**20` crashed the sync with an OverflowError: no failed snapshot, health unchanged."""
    good = {key: str(ibp_config_dir / name) if name else "" for key, name in CONFIG_FILES.items()}
    members = json.loads((ibp_config_dir / "members_professional.json").read_text())
    members["Amforc"]["Membership"]["Joined"] = 10**20
    broken = tmp_path / "members_professional.json"
    broken.write_text(json.dumps(members))
    with time_machine.travel(utc("2025-03-02T10:00:00Z"), tick=False):
        assert config_sync(urls=good).status == "applied"
    with time_machine.travel(utc("2025-03-02T11:00:00Z"), tick=False):
        assert config_sync(urls={**good, "MembersConfig": str(broken)}).status == "failed"
        config = get_json(api, "/api/health")["config"]

    assert config["last_error"] == (
        f"MembersConfig ({broken}): field Amforc.Membership.Joined: Unix time 100000000000000000000 is after "
        "9999-12-31T23:59:59Z, the last time the registry holds"
    )
    assert config["last_error_at"] == "2025-03-02T11:00:00Z"
    assert config["last_good_load"] == "2025-03-02T10:00:00Z"


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
