"""Writes held while the database is unreachable, through the running listener.

The database stays real (the machine's MariaDB, which other engineers' tests also use, is
never stopped): the listener reaches it through a real TCP proxy (tests/tcp_proxy.py) that
the test cuts and restores, so only the route from the listener goes down.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any

import pytest

from metrics.durability import RETRY_DROPPED
from metrics.listener import NatsListener
from metrics.models import FinalizeApplied, MemberEvent, RequestDaily, RequestStat
from tests.metrics.finalize_factory import finalize
from tests.metrics.nats_peers import ScriptedDnsNode, usage_reply, wait_until, with_listener
from tests.metrics.test_listener import publish_finalizes, record
from tests.nats_server import NatsServer
from tests.tcp_proxy import database_through_proxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mysql_only]

FAST_RETRY = {"db_retry_base_seconds": 0.05, "db_retry_max_seconds": 0.4, "rollup_pause_seconds": 0.1}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def endpoint(i: int) -> str:
    return f"wss://rpc.dotters.network/chain-{i:04d}"


def applied(listener: NatsListener) -> int:
    return sum(listener.counters.finalize.values())


def test_it_applies_all_1000_outages_exactly_once_when_the_db_goes_away_during_the_burst(
    nats_server: NatsServer,
) -> None:
    """1,000 offline finalizes for 1,000 different endpoints: 200 while the DB is reachable,
    then the route to it is cut and 800 more arrive. After it is restored, there are exactly
    1,000 open rows (one per endpoint, each with its own proposal ID) and 1,000
    `finalize_applied` rows. A write whose commit landed just as the route was cut comes back
    as a `duplicate` on retry, never as a second row, so opened + duplicate = 1,000."""
    messages = [
        finalize(f"p-{i:04d}", online=False, decided_at="2025-03-01T01:00:00Z", endpoint=endpoint(i))
        for i in range(1000)
    ]

    with database_through_proxy() as proxy:

        async def body(listener: NatsListener) -> dict[str, int]:
            await publish_finalizes(nats_server.url, [("MONITOR-1", m) for m in messages[:200]])
            proxy.cut()
            await publish_finalizes(nats_server.url, [("MONITOR-1", m) for m in messages[200:]])
            await wait_until(lambda: listener.counters.messages["consensus.finalize"] == 1000, timeout=30)
            await wait_until(lambda: listener.finalize_queue.depth > 0)
            await asyncio.sleep(1.0)  # several failed retries while the DB is away
            held_while_cut = listener.finalize_queue.depth
            assert proxy.refused > 0
            assert applied(listener) < 1000
            proxy.restore()
            await wait_until(lambda: applied(listener) == 1000, timeout=60)
            assert listener.finalize_queue.depth == 0
            assert held_while_cut >= 1
            return dict(listener.counters.finalize)

        outcomes = asyncio.run(with_listener(nats_server.url, body, **FAST_RETRY))

    assert set(outcomes) <= {"opened", "duplicate"}
    assert outcomes.get("opened", 0) + outcomes.get("duplicate", 0) == 1000
    assert MemberEvent.objects.count() == 1000
    assert MemberEvent.objects.filter(end_time__isnull=True, status=0).count() == 1000
    assert sorted(MemberEvent.objects.values_list("proposal_id", flat=True)) == [f"p-{i:04d}" for i in range(1000)]
    assert sorted(MemberEvent.objects.values_list("endpoint", flat=True)) == [endpoint(i) for i in range(1000)]
    assert set(MemberEvent.objects.values_list("start_time", flat=True)) == {at("2025-03-01 01:00:00")}
    assert FinalizeApplied.objects.count() == 1000


def test_it_keeps_the_order_of_one_identity_through_the_retry(nats_server: NatsServer) -> None:
    """Offline a (01:00), online b (01:20), offline c (02:00) for one endpoint, all while the
    DB is away. Written in that order: a is a closed outage 01:00–01:20 and c a new open one.
    (Out of order, c before b, c would merge into a's open row and b would close it: one row.)"""
    sequence = [
        finalize("a", online=False, decided_at="2025-03-01T01:00:00Z"),
        finalize("b", online=True, decided_at="2025-03-01T01:20:00Z"),
        finalize("c", online=False, decided_at="2025-03-01T02:00:00Z"),
    ]
    with database_through_proxy() as proxy:

        async def body(listener: NatsListener) -> None:
            proxy.cut()
            await publish_finalizes(nats_server.url, [("MONITOR-1", m) for m in sequence])
            await wait_until(lambda: listener.finalize_queue.depth == 3)
            await asyncio.sleep(0.5)
            proxy.restore()
            await wait_until(lambda: applied(listener) == 3, timeout=30)
            assert dict(listener.counters.finalize) == {"opened": 2, "closed": 1}

        asyncio.run(with_listener(nats_server.url, body, **FAST_RETRY))

    assert list(MemberEvent.objects.order_by("id").values_list("proposal_id", "status", "start_time", "end_time")) == [
        ("a", 1, at("2025-03-01 01:00:00"), at("2025-03-01 01:20:00")),
        ("c", 0, at("2025-03-01 02:00:00"), None),
    ]


def test_it_refuses_the_newest_finalize_when_the_queue_is_full_and_counts_it(nats_server: NatsServer) -> None:
    """A bound of 5 and 8 finalizes while the DB is away: the first 5 are held (in order) and
    written later; the last 3 are refused, logged and counted (8 − 5 = 3), never silently."""
    before = RETRY_DROPPED.labels(queue="finalize")._value.get()
    messages = [
        finalize(f"q-{i}", online=False, decided_at="2025-03-01T01:00:00Z", endpoint=endpoint(i)) for i in range(8)
    ]
    with database_through_proxy() as proxy:

        async def body(listener: NatsListener) -> tuple[int, int]:
            proxy.cut()
            await publish_finalizes(nats_server.url, [("MONITOR-1", m) for m in messages])
            await wait_until(lambda: listener.counters.messages["consensus.finalize"] == 8)
            await wait_until(lambda: listener.finalize_queue.dropped == 3)
            proxy.restore()
            await wait_until(lambda: applied(listener) == 5, timeout=30)
            return listener.counters.rejects["queue_full"], listener.finalize_queue.dropped

        rejects, dropped = asyncio.run(with_listener(nats_server.url, body, finalize_queue_max=5, **FAST_RETRY))

    assert (rejects, dropped) == (3, 3)
    assert RETRY_DROPPED.labels(queue="finalize")._value.get() - before == 3
    assert sorted(MemberEvent.objects.values_list("proposal_id", flat=True)) == [f"q-{i}" for i in range(5)]


def test_it_holds_a_usage_round_while_the_db_is_away_and_refreshes_the_rollups_after(
    nats_server: NatsServer,
) -> None:
    """Two nodes answer a round while the DB is away: both replies are held. Once it is back
    they are written (1,520 + 480 = 2,000 hits for 2025-03-14) and the day's rollup is
    rebuilt from them (one `requests_daily` row of 2,000)."""
    day = date(2025, 3, 14)
    nodes = [
        ScriptedDnsNode("DNS-01", lambda d: usage_reply("DNS-01", [record(1520)])),
        ScriptedDnsNode("DNS-02", lambda d: usage_reply("DNS-02", [record(480)])),
    ]
    with database_through_proxy() as proxy:

        async def body(listener: NatsListener) -> Any:
            for node in nodes:
                await node.start(nats_server.url)
            await wait_until(lambda: listener.active_count("IBPDns") == 2)
            proxy.cut()
            result = await listener.collect_usage(days=(day,))
            assert result.stored.rows_written == 0
            assert listener.usage_queue.depth == 2
            proxy.restore()
            await wait_until(lambda: listener.usage_queue.depth == 0, timeout=30)
            await wait_until(lambda: listener.rollups.refreshed >= 1 and listener.rollups.depth == 0, timeout=30)
            for node in nodes:
                await node.stop()
            return sorted(listener.last_collection)

        nodes_seen = asyncio.run(with_listener(nats_server.url, body, **FAST_RETRY))

    assert nodes_seen == ["DNS-01", "DNS-02"]
    assert sorted(RequestStat.objects.values_list("node_id", "hits")) == [("DNS-01", 1520), ("DNS-02", 480)]
    assert list(RequestDaily.objects.values_list("date", "hits")) == [(day, 2000)]


def test_it_drops_the_oldest_usage_reply_when_the_usage_queue_is_full_and_counts_it(
    nats_server: NatsServer,
) -> None:
    """A bound of 1 and two replies while the DB is away: one is dropped (logged and counted,
    2 − 1 = 1), the other is written once the DB is back (1 row). The dropped node loses
    nothing for good: its next reply carries its whole day total again."""
    before = RETRY_DROPPED.labels(queue="usage")._value.get()
    day = date(2025, 3, 14)
    nodes = [
        ScriptedDnsNode("DNS-01", lambda d: usage_reply("DNS-01", [record(1520)])),
        ScriptedDnsNode("DNS-02", lambda d: usage_reply("DNS-02", [record(480)])),
    ]
    with database_through_proxy() as proxy:

        async def body(listener: NatsListener) -> tuple[int, int]:
            for node in nodes:
                await node.start(nats_server.url)
            await wait_until(lambda: listener.active_count("IBPDns") == 2)
            proxy.cut()
            await listener.collect_usage(days=(day,))
            dropped = listener.usage_queue.dropped
            proxy.restore()
            await wait_until(lambda: listener.usage_queue.depth == 0, timeout=30)
            for node in nodes:
                await node.stop()
            return dropped, listener.counters.rejects["queue_full"]

        dropped, rejects = asyncio.run(with_listener(nats_server.url, body, usage_queue_max=1, **FAST_RETRY))

    assert (dropped, rejects) == (1, 1)
    assert RETRY_DROPPED.labels(queue="usage")._value.get() - before == 1
    assert RequestStat.objects.count() == 1
