"""The network simulator against the listener: real peers on a real nats-server, the real DB."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest

from metrics.listener import NatsListener
from metrics.models import MemberEvent, RequestStat
from metrics.simulator import NetworkShape, SimulatedNetwork, SimulatorOptions, day_fraction
from tests.metrics.nats_peers import SettableClock, wait_until, with_listener
from tests.nats_server import NatsServer

pytestmark = pytest.mark.django_db(transaction=True)

SHAPE = NetworkShape(
    members=("Alpha Nodes", "Beta Ops"),
    urls=("wss://rpc.dotters.network/kusama", "wss://rpc.ibp.network/polkadot", "https://eth.dotters.network/ethereum"),
)


def per_node_totals() -> dict[tuple[date, str], int]:
    totals: dict[tuple[date, str], int] = {}
    for day, node, hits in RequestStat.objects.values_list("date", "node_id", "hits"):
        totals[(day, node)] = totals.get((day, node), 0) + hits
    return totals


def test_it_gives_the_same_numbers_for_the_same_seed_and_date() -> None:
    options = SimulatorOptions(nats_url="nats://unused", dns_nodes=2, records_per_node=50, seed=7)
    first = SimulatedNetwork(options, SHAPE).dns_nodes[0]
    again = SimulatedNetwork(options, SHAPE).dns_nodes[0]
    day = date(2025, 3, 14)
    assert first.universe.keys == again.universe.keys and len(first.universe.keys) == 50
    assert first.day_totals(day) == again.day_totals(day)
    assert first.day_totals(day) != first.day_totals(date(2025, 3, 15))
    # A skewed spread: the heaviest record carries far more than the median one.
    totals = sorted(first.day_totals(day))
    assert totals[-1] > 10 * totals[len(totals) // 2]


def test_it_captures_yesterdays_last_hour_in_the_first_round_after_midnight(nats_server: NatsServer) -> None:
    """The 23:00 round of 14 March stores 14 March as of 22:55 (a node's 5-minute write lag):
    fraction (23 h − 5 min) / 24 h = 82,500 / 86,400. The round at 00:00:05 on 15 March asks
    for today AND yesterday, so 14 March is replaced with its totals as of 23:55:05
    (86,105 / 86,400: the 23:00–23:55 hour is in), and the 01:00 round, which asks for
    yesterday again, stores the full day."""
    options = SimulatorOptions(nats_url=nats_server.url, dns_nodes=2, monitors=0, records_per_node=40, seed=3)
    day = date(2025, 3, 14)
    clock = SettableClock(datetime(2025, 3, 14, 22, 59, 0, tzinfo=UTC))
    network = SimulatedNetwork(options, SHAPE, clock=clock)
    full = {node.node_id: sum(node.day_totals(day)) for node in network.dns_nodes}
    at_2300 = {
        node.node_id: sum(int(t * (82_500 / 86_400)) for t in node.day_totals(day)) for node in network.dns_nodes
    }
    at_0000 = {
        node.node_id: sum(int(t * (86_105 / 86_400)) for t in node.day_totals(day)) for node in network.dns_nodes
    }
    assert day_fraction(day, datetime(2025, 3, 14, 23, 0, tzinfo=UTC)) == 82_500 / 86_400

    async def body(listener: NatsListener) -> None:
        await network.start()
        await wait_until(lambda: listener.active_count("IBPDns") == 2)
        clock.now = datetime(2025, 3, 14, 23, 0, 0, tzinfo=UTC)
        late = await listener.collect_usage()
        assert late.days == (day, date(2025, 3, 13))
        stored_2300 = await asyncio.to_thread(per_node_totals)
        assert {node: hits for (d, node), hits in stored_2300.items() if d == day} == at_2300
        clock.now = datetime(2025, 3, 15, 0, 0, 5, tzinfo=UTC)
        # The nodes' heartbeats keep them live in the node table an hour later.
        await network.join_all()
        await wait_until(lambda: listener.active_count("IBPDns") == 2)
        first_after_midnight = await listener.collect_usage()
        assert first_after_midnight.days == (date(2025, 3, 15), day)
        assert first_after_midnight.dates == {day}  # 15 March has no traffic written yet
        stored_0000 = await asyncio.to_thread(per_node_totals)
        assert {node: hits for (d, node), hits in stored_0000.items() if d == day} == at_0000
        clock.now = datetime(2025, 3, 15, 1, 0, 5, tzinfo=UTC)
        await network.join_all()
        await wait_until(lambda: listener.active_count("IBPDns") == 2)
        await listener.collect_usage()
        await network.stop()

    asyncio.run(with_listener(nats_server.url, body, clock=clock))
    assert {node: hits for (d, node), hits in per_node_totals().items() if d == day} == full
    assert set(RequestStat.objects.values_list("date", flat=True)) == {day, date(2025, 3, 13), date(2025, 3, 15)}
    assert sum(at_2300.values()) < sum(at_0000.values()) < sum(full.values())


def test_it_backfills_a_month_of_outages_with_duplicates_and_crossed_messages(nats_server: NatsServer) -> None:
    options = SimulatorOptions(
        nats_url=nats_server.url, dns_nodes=0, monitors=3, seed=11, duplicate_share=0.6, out_of_order_share=0.3
    )
    network = SimulatedNetwork(options, SHAPE)

    async def body(listener: NatsListener) -> int:
        await network.start()
        published = await network.publish_backfill_month(2025, 2, per_day=1.0)
        copies = sum(o.copies * 2 for o in network.published)
        await wait_until(lambda: sum(listener.counters.finalize.values()) == copies, timeout=30)
        await network.stop()
        return published

    published = asyncio.run(with_listener(nats_server.url, body))
    assert published == len(network.published) > 10
    assert any(o.crossed for o in network.published) and any(o.copies > 1 for o in network.published)
    # Every published outage is one closed row with its own times (whole seconds), none open,
    # whatever the duplicates and the crossed order.
    expected = sorted(
        (o.target.member_name, o.target.check_name, o.start.replace(microsecond=0), o.end.replace(microsecond=0))
        for o in network.published
    )
    stored = sorted(
        MemberEvent.objects.values_list("member_name", "check_name", "start_time", "end_time").filter(status=1)
    )
    assert stored == expected
    assert MemberEvent.objects.filter(end_time__isnull=True).count() == 0


def test_it_ends_its_open_outages_when_it_stops(nats_server: NatsServer) -> None:
    """Live outages that would last an hour are still open when the simulator is stopped:
    each recovers then (an online finalize), so the listener holds no open row afterwards,
    and every outage it opened is closed."""
    options = SimulatorOptions(
        nats_url=nats_server.url,
        dns_nodes=0,
        monitors=3,
        seed=5,
        outages_per_hour=7200.0,  # one every half second on average
        outage_minutes=(60.0, 60.0),
        duplicate_share=0.0,
        out_of_order_share=0.0,
    )
    network = SimulatedNetwork(options, SHAPE)

    async def body(listener: NatsListener) -> tuple[int, int]:
        await network.start()
        live = asyncio.create_task(network.run_outages(duration=None))
        await wait_until(lambda: listener.counters.finalize.get("opened", 0) >= 2, timeout=20)
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)
        opened = listener.counters.finalize.get("opened", 0)
        await wait_until(lambda: listener.counters.finalize.get("closed", 0) == opened, timeout=20)
        await network.stop()
        return opened, listener.counters.finalize.get("closed", 0)

    opened, closed = asyncio.run(with_listener(nats_server.url, body))
    assert opened == closed >= 2
    assert MemberEvent.objects.filter(end_time__isnull=True).count() == 0
    assert MemberEvent.objects.count() == opened


def test_it_publishes_a_live_crossed_outage_once_it_is_over(nats_server: NatsServer) -> None:
    """Crossed live outages (online first) used to be published at their start, the online
    dated an hour ahead: the collator refuses that as decided_in_future, and the offline
    then opened a row nothing closed. Published when they end (here: at the stop), each is
    recorded closed."""
    options = SimulatorOptions(
        nats_url=nats_server.url,
        dns_nodes=0,
        monitors=3,
        seed=7,
        outages_per_hour=7200.0,
        outage_minutes=(60.0, 60.0),
        duplicate_share=0.0,
        out_of_order_share=1.0,
    )
    network = SimulatedNetwork(options, SHAPE)

    async def body(listener: NatsListener) -> dict[str, int]:
        await network.start()
        live = asyncio.create_task(network.run_outages(duration=None))
        await asyncio.sleep(1.5)
        assert listener.counters.finalize == {}  # nothing decided while the outages last
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)
        await wait_until(lambda: listener.counters.finalize.get("recorded_closed", 0) == len(network.published))
        await network.stop()
        return dict(listener.counters.rejects)

    assert asyncio.run(with_listener(nats_server.url, body)) == {}
    assert len(network.published) >= 1
    assert MemberEvent.objects.filter(end_time__isnull=True).count() == 0
    assert MemberEvent.objects.count() == len(network.published)
