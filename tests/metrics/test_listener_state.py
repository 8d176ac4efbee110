"""The listener state row (metrics/listener_state.py) and how /api/health reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.test import Client

from metrics.listener_state import listener_state_save
from metrics.listener_state_models import ListenerState
from tests.collator.api_fixtures import get_json

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)


def save(*, updated: datetime, connected: bool = True) -> ListenerState:
    return listener_state_save(
        node_id=settings.COLLATOR.nats.node_id,
        connected=connected,
        last_heartbeat_sent=updated - timedelta(seconds=30),
        last_collection={"DNS-02": NOW - timedelta(hours=1), "DNS-01": NOW - timedelta(minutes=59, seconds=58)},
        queue_depths={"usage": 0, "finalize": 12},
        queue_dropped={"finalize": 0, "usage": 0},
        durable_finalize=True,
        started_at=NOW - timedelta(days=1),
        now=updated,
    )


def test_it_keeps_one_row_per_node_and_updates_it() -> None:
    save(updated=NOW - timedelta(seconds=10))
    save(updated=NOW - timedelta(seconds=5), connected=False)
    row = ListenerState.objects.get()
    assert (row.connected, row.updated_at) == (False, NOW - timedelta(seconds=5))
    assert row.last_collection == {"DNS-01": "2025-03-02T11:00:02Z", "DNS-02": "2025-03-02T11:00:00Z"}
    assert row.queue_depths == {"finalize": 12, "usage": 0}


def test_it_reports_the_saved_state_in_health() -> None:
    """Saved 10 s ago: ok and connected; 12 finalizes held; per-node collection times."""
    save(updated=NOW - timedelta(seconds=10))
    with time_machine.travel(NOW, tick=False):
        part = get_json(Client(), "/api/health")["nats_listener"]
    assert {k: v for k, v in part.items() if k not in {"last_heard", "node_id", "state"}} == {
        "connected": True,
        "durable_finalize": True,
        "last_collection": {"DNS-01": "2025-03-02T11:00:02Z", "DNS-02": "2025-03-02T11:00:00Z"},
        "last_heartbeat_sent": "2025-03-02T11:59:20Z",
        "process": "ok",
        "process_updated_at": "2025-03-02T11:59:50Z",
        "queue_depth": {"finalize": 12, "matrix_alerts": 0, "usage": 0},
        "queue_dropped": {"finalize": 0, "usage": 0},
    }


def test_it_reports_a_listener_that_stopped_saving_as_stale_and_not_connected() -> None:
    """Last save 61 s ago (the limit is 60 s): stale, and its `connected` is no longer believed."""
    save(updated=NOW - timedelta(seconds=61))
    with time_machine.travel(NOW, tick=False):
        part = get_json(Client(), "/api/health")["nats_listener"]
    assert (part["process"], part["connected"]) == ("stale", False)
