"""The management commands, against a simulated network on a real nats-server and the real DB."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from datetime import date

import pytest
from django.core.management import call_command

from metrics.models import RequestStat
from metrics.rollup_models import RequestDailyMember
from metrics.simulator import NetworkShape, SimulatedNetwork, SimulatorOptions
from tests.nats_server import NatsServer

pytestmark = pytest.mark.django_db(transaction=True)

SHAPE = NetworkShape(
    members=("Alpha Nodes",), urls=("wss://rpc.dotters.network/kusama", "wss://rpc.ibp.network/polkadot")
)


@pytest.fixture
def simulated(nats_server: NatsServer) -> Iterator[SimulatedNetwork]:
    """Two simulated DNS nodes on their own event loop in a thread, while the command runs."""
    network = SimulatedNetwork(
        SimulatorOptions(nats_url=nats_server.url, dns_nodes=2, monitors=0, records_per_node=30, seed=5), SHAPE
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(network.start(), loop).result(timeout=10)
    try:
        yield network
    finally:
        asyncio.run_coroutine_threadsafe(network.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def test_it_backfills_given_dates_per_node_and_a_rerun_writes_nothing(
    simulated: SimulatedNetwork, nats_server: NatsServer
) -> None:
    days = [date(2025, 2, 27), date(2025, 2, 28)]
    args = [
        "--date",
        "2025-02-27",
        "--date",
        "2025-02-28",
        "--nats-url",
        nats_server.url,
        "--expected",
        "2",
        "--timeout",
        "5",
    ]
    out = io.StringIO()
    call_command("collect_usage", *args, stdout=out)
    # Past days: every node reports its full-day totals, one row per record and node.
    expected = {(day, node.node_id): sum(node.day_totals(day)) for day in days for node in simulated.dns_nodes}
    stored: dict[tuple[date, str], int] = {}
    for day, node_id, hits in RequestStat.objects.values_list("date", "node_id", "hits"):
        stored[(day, node_id)] = stored.get((day, node_id), 0) + hits
    assert stored == expected
    assert RequestStat.objects.count() == 2 * 2 * 30
    assert "2025-02-27: 2 node(s) replied" in out.getvalue()
    # The API's rollups hold the same day totals, summed over the two nodes.
    rollup: dict[date, int] = {}
    for day, hits in RequestDailyMember.objects.values_list("date", "hits"):
        rollup[day] = rollup.get(day, 0) + hits
    assert rollup == {day: sum(expected[(day, node.node_id)] for node in simulated.dns_nodes) for day in days}
    again = io.StringIO()
    call_command("collect_usage", *args, stdout=again)
    assert "written 0, unchanged 120" in again.getvalue()
    assert RequestStat.objects.count() == 120
