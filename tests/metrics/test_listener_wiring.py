"""Issue 4 wired into the running listener, on a real nats-server and the real DB:
Matrix alerts (a real local HTTP homeserver), /metrics, the usage rollups behind
/api/requests/*, and the listener state behind /api/health.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from collator.local_config import MatrixConfig
from metrics.alert_messages import OutageFacts, offline_content, online_content
from metrics.listener import NatsListener
from metrics.models import MemberEvent
from metrics.telemetry import FINALIZE_OUTCOMES, MESSAGES, ROWS_WRITTEN
from tests.collator.api_fixtures import get_json
from tests.fake_matrix import LOGIN, FakeMatrixServer
from tests.metrics.finalize_factory import finalize
from tests.metrics.nats_peers import ScriptedDnsNode, peer, usage_reply, wait_until, wait_until_db, with_listener
from tests.metrics.test_listener import publish_finalizes, record
from tests.nats_server import NatsServer

pytestmark = pytest.mark.django_db(transaction=True)

ROOM = "!alerts:fake.local"
FAST = {"telemetry_flush_seconds": 0.2, "state_flush_seconds": 0.2, "rollup_pause_seconds": 0.1}


@pytest.fixture
def homeserver(settings: Any) -> Iterator[FakeMatrixServer]:
    """The listener's Matrix block points at a local homeserver for this test."""
    with FakeMatrixServer() as server:
        settings.COLLATOR = dataclasses.replace(
            settings.COLLATOR,
            matrix=MatrixConfig(homeserver_url=server.url, username="ibp-bot", password="s3cret", room_id=ROOM),
        )
        yield server


def offline_then(message_id: str, online: bool, when: str) -> Any:
    return finalize(message_id, online=online, decided_at=when, error="<b>&</b>")


# --- Matrix -----------------------------------------------------------------------------------


def test_it_sends_one_offline_for_a_triple_finalize_and_edits_it_on_recovery(
    nats_server: NatsServer, homeserver: FakeMatrixServer
) -> None:
    """The same offline finalize from three monitors opens one row and sends one OFFLINE (its
    error escaped in the HTML); the online closes the row and edits that message in place."""
    offline = offline_then("p-1", False, "2025-03-01T01:00:00Z")

    async def body(listener: NatsListener) -> None:
        await publish_finalizes(nats_server.url, [(f"MONITOR-{i}", offline) for i in (1, 2, 3)])
        await wait_until(lambda: sum(listener.counters.finalize.values()) == 3)
        await asyncio.to_thread(homeserver.wait_for, 1)
        await publish_finalizes(nats_server.url, [("MONITOR-1", offline_then("p-2", True, "2025-03-01T01:10:00Z"))])
        await wait_until(lambda: listener.counters.finalize["closed"] == 1)

    asyncio.run(with_listener(nats_server.url, body))
    row = MemberEvent.objects.get()
    sent = homeserver.sent()
    assert len(sent) == 2
    assert sent[0].body == offline_content(OutageFacts.from_event(row), mentions=())
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in sent[0].body["formatted_body"]
    assert row.matrix_event_id and row.matrix_event_id.startswith("$")
    edit = sent[1].body
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": row.matrix_event_id}
    assert edit["m.new_content"] == online_content(OutageFacts.from_event(row))


def test_it_edits_on_recovery_after_a_listener_restart(nats_server: NatsServer, homeserver: FakeMatrixServer) -> None:
    """OFFLINE sent by one listener run; the ONLINE arrives in the next run and still edits
    the stored message, with the same Matrix login (one login in all)."""

    async def first(listener: NatsListener) -> None:
        await publish_finalizes(nats_server.url, [("MONITOR-1", offline_then("r-1", False, "2025-03-01T02:00:00Z"))])
        await wait_until(lambda: listener.counters.finalize["opened"] == 1)
        await asyncio.to_thread(homeserver.wait_for, 1)

    async def second(listener: NatsListener) -> None:
        await publish_finalizes(nats_server.url, [("MONITOR-2", offline_then("r-2", True, "2025-03-01T02:30:00Z"))])
        await wait_until(lambda: listener.counters.finalize["closed"] == 1)

    asyncio.run(with_listener(nats_server.url, first))
    announced = MemberEvent.objects.get().matrix_event_id
    asyncio.run(with_listener(nats_server.url, second))
    sent = homeserver.sent()
    assert len(sent) == 2
    assert sent[1].body["m.relates_to"] == {"rel_type": "m.replace", "event_id": announced}
    assert "ONLINE" in sent[1].body["body"]
    assert len(homeserver.requests(LOGIN)) == 1


def test_it_sends_no_online_for_a_close_that_closed_nothing(
    nats_server: NatsServer, homeserver: FakeMatrixServer
) -> None:
    """An online finalize with no open row is only remembered: no message at all."""

    async def body(listener: NatsListener) -> None:
        await publish_finalizes(nats_server.url, [("MONITOR-1", offline_then("n-1", True, "2025-03-01T03:00:00Z"))])
        await wait_until(lambda: listener.counters.finalize["remembered"] == 1)
        await asyncio.sleep(0.5)

    asyncio.run(with_listener(nats_server.url, body))
    assert homeserver.requests() == []
    assert MemberEvent.objects.count() == 0


# --- /metrics ---------------------------------------------------------------------------------


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    values = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_it_moves_the_metrics_counters_when_messages_flow(nats_server: NatsServer) -> None:
    """Three copies of one offline finalize and one garbage message: /metrics shows +4
    messages on consensus.finalize, outcomes opened +1 and duplicate +2, one member_events
    row written, and the queue depth gauges at 0."""
    before = {
        "messages": MESSAGES.labels(subject="consensus.finalize")._value.get(),
        "opened": FINALIZE_OUTCOMES.labels(action="opened")._value.get(),
        "duplicate": FINALIZE_OUTCOMES.labels(action="duplicate")._value.get(),
        "rows": ROWS_WRITTEN.labels(table="member_events")._value.get(),
    }
    message = finalize("m-1", online=False, decided_at="2025-03-01T05:00:00Z")

    async def body(listener: NatsListener) -> None:
        await publish_finalizes(nats_server.url, [(f"MONITOR-{i}", message) for i in (1, 2, 3)])
        nc = await peer(nats_server.url, "MONITOR-X")
        await nc.publish("consensus.finalize", b"{not json")
        await nc.drain()
        await wait_until(lambda: listener.counters.messages["consensus.finalize"] == 4)

    asyncio.run(with_listener(nats_server.url, body, **FAST))
    values = scrape(Client())
    process = ("process", "COLLATOR-TEST")

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted([process, *labels.items()])))]

    assert value("collator_nats_messages_total", subject="consensus.finalize") - before["messages"] == 4
    assert value("collator_finalize_outcomes_total", action="opened") - before["opened"] == 1
    assert value("collator_finalize_outcomes_total", action="duplicate") - before["duplicate"] == 2
    assert value("collator_rows_written_total", table="member_events") - before["rows"] == 1
    assert value("collator_queue_depth", queue="db_retry_finalize") == 0
    assert value("collator_nats_rejects_total", reason="invalid_json") >= 1


# --- rollups behind /api/requests ----------------------------------------------------------------


def test_it_refreshes_the_requests_api_after_a_round(nats_server: NatsServer) -> None:
    """Before the round /api/requests/member has nothing for 2025-03-14; after one round of
    two nodes (1,520 + 480) it says 2,000 for Alpha Nodes, with no manual rebuild."""
    client = Client()
    span = {"start": "2025-03-14", "end": "2025-03-14"}
    assert get_json(client, "/api/requests/member", **span) == []
    nodes = [
        ScriptedDnsNode("DNS-01", lambda d: usage_reply("DNS-01", [record(1520)])),
        ScriptedDnsNode("DNS-02", lambda d: usage_reply("DNS-02", [record(480)])),
    ]

    async def body(listener: NatsListener) -> None:
        for node in nodes:
            await node.start(nats_server.url)
        await wait_until(lambda: listener.active_count("IBPDns") == 2)
        await listener.collect_usage(days=(date(2025, 3, 14),))
        await wait_until(lambda: listener.rollups.refreshed >= 1 and listener.rollups.depth == 0)
        for node in nodes:
            await node.stop()

    asyncio.run(with_listener(nats_server.url, body, **FAST))
    assert get_json(client, "/api/requests/member", **span) == [
        {"date": "2025-03-14", "member": "Alpha Nodes", "requests": 2000}
    ]


# --- listener state behind /api/health ------------------------------------------------------------


def test_it_reports_the_running_listener_in_health(nats_server: NatsServer) -> None:
    """While running: connected, a heartbeat, DNS-01's last collection, empty queues. After
    it stopped: its last save says not connected."""
    client = Client()
    node = ScriptedDnsNode("DNS-01", lambda d: usage_reply("DNS-01", [record(7)]))

    async def body(listener: NatsListener) -> dict[str, Any]:
        await node.start(nats_server.url)
        await wait_until(lambda: listener.active_count("IBPDns") == 1)
        await listener.collect_usage(days=(date(2025, 3, 14),))
        await wait_until_db(
            lambda: "DNS-01" in get_json(client, "/api/health")["nats_listener"].get("last_collection", {})
        )
        await node.stop()
        return await asyncio.to_thread(lambda: get_json(client, "/api/health")["nats_listener"])

    running = asyncio.run(with_listener(nats_server.url, body, **FAST))
    now = datetime.now(UTC)
    assert running["connected"] is True
    assert running["process"] == "ok"
    assert running["durable_finalize"] is False
    assert running["queue_depth"] == {"durable_in_hand": 0, "finalize": 0, "matrix_alerts": 0, "rollups": 0, "usage": 0}
    assert running["queue_dropped"] == {"finalize": 0, "usage": 0}
    collected = datetime.fromisoformat(running["last_collection"]["DNS-01"].replace("Z", "+00:00"))
    assert now - timedelta(seconds=60) < collected <= now
    assert running["last_heartbeat_sent"] is not None
    assert running["state"] == "ok"  # the heartbeat part, as before
    stopped = get_json(client, "/api/health")["nats_listener"]
    assert stopped["connected"] is False
