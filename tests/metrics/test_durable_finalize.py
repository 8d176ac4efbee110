"""NATS_DURABLE_FINALIZE: consensus.finalize through a JetStream stream and durable consumer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import nats
import pytest

from metrics.durable_finalize import DurableFinalizeConfig
from metrics.listener import NatsListener
from metrics.models import FinalizeApplied, MemberEvent
from tests.metrics.finalize_factory import finalize
from tests.metrics.nats_peers import SettableClock, wait_until, with_listener
from tests.metrics.test_listener import publish_finalizes
from tests.nats_server import NatsServer
from tests.tcp_proxy import database_through_proxy

pytestmark = pytest.mark.django_db(transaction=True)

STREAM = DurableFinalizeConfig(stream="TEST_FINALIZE", retention="limits", max_age_seconds=3600, ack_wait_seconds=5)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def applied(listener: NatsListener) -> int:
    return sum(listener.counters.finalize.values())


def rows() -> list[tuple[Any, ...]]:
    return list(MemberEvent.objects.order_by("id").values_list("proposal_id", "status", "start_time", "end_time"))


async def stream_state(url: str) -> tuple[Any, Any]:
    nc = await nats.connect(servers=[url])
    try:
        js = nc.jetstream()
        info = await js.stream_info("TEST_FINALIZE")
        consumer = await js.consumer_info("TEST_FINALIZE", "COLLATOR-TEST_finalize")
        return info, consumer
    finally:
        await nc.close()


def test_it_applies_finalizes_published_while_the_listener_was_stopped_once(nats_server: NatsServer) -> None:
    """Start (creates the stream and the consumer), stop, then monitors publish: offline a
    (01:00) from three monitors, online b (01:30). The next start applies them: one row
    01:00–01:30 (the two copies of a are duplicates). A third start applies nothing again:
    every message was acknowledged after its commit (0 pending, 0 waiting for an ack)."""

    async def idle(listener: NatsListener) -> None:
        assert listener.durable is not None

    asyncio.run(with_listener(nats_server.url, idle, durable_finalize=True, durable=STREAM))

    offline = finalize("a", online=False, decided_at="2025-03-01T01:00:00Z")
    online = finalize("b", online=True, decided_at="2025-03-01T01:30:00Z")
    asyncio.run(
        publish_finalizes(
            nats_server.url,
            [("MONITOR-1", offline), ("MONITOR-2", offline), ("MONITOR-3", offline), ("MONITOR-1", online)],
        )
    )
    assert rows() == []

    async def catch_up(listener: NatsListener) -> dict[str, int]:
        await wait_until(lambda: applied(listener) == 4, timeout=20)
        return dict(listener.counters.finalize)

    outcomes = asyncio.run(with_listener(nats_server.url, catch_up, durable_finalize=True, durable=STREAM))
    assert outcomes == {"opened": 1, "duplicate": 2, "closed": 1}
    assert rows() == [("a", 1, at("2025-03-01 01:00:00"), at("2025-03-01 01:30:00"))]

    async def again(listener: NatsListener) -> int:
        await asyncio.sleep(2.0)
        return applied(listener)

    assert asyncio.run(with_listener(nats_server.url, again, durable_finalize=True, durable=STREAM)) == 0
    info, consumer = asyncio.run(stream_state(nats_server.url))
    assert (info.config.subjects, str(info.config.retention), info.config.max_age) == (
        ["consensus.finalize"],
        "limits",
        3600.0,
    )
    assert info.state.messages == 4
    assert (consumer.num_pending, consumer.num_ack_pending, consumer.delivered.stream_seq) == (0, 0, 4)
    assert FinalizeApplied.objects.count() == 2


def test_it_applies_a_replayed_finalize_from_the_past_and_refuses_one_from_the_future_for_good(
    nats_server: NatsServer,
) -> None:
    """Published while the listener was stopped, replayed a week later by its clock: the
    real outage of 4 December is applied (only the future is refused); the one dated 2030
    is refused as decided_in_future and acknowledged, so it is never delivered again."""
    clock = SettableClock(at("2026-12-04 06:00:00"))

    async def idle(listener: NatsListener) -> None:
        assert listener.durable is not None

    asyncio.run(with_listener(nats_server.url, idle, clock=clock, durable_finalize=True, durable=STREAM))
    messages = [
        finalize("evil", online=False, decided_at="2030-01-01T00:00:00Z"),
        finalize("off", online=False, decided_at="2026-12-04T06:00:00Z"),
        finalize("on", online=True, decided_at="2026-12-04T06:30:00Z"),
    ]
    asyncio.run(publish_finalizes(nats_server.url, [("MONITOR-1", m) for m in messages]))
    clock.now = at("2026-12-11 06:00:00")

    async def catch_up(listener: NatsListener) -> dict[str, int]:
        await wait_until(lambda: applied(listener) == 2, timeout=20)
        await asyncio.sleep(0.3)
        return dict(listener.counters.rejects)

    rejects = asyncio.run(with_listener(nats_server.url, catch_up, clock=clock, durable_finalize=True, durable=STREAM))
    assert rejects == {"decided_in_future": 1}
    assert rows() == [("off", 1, at("2026-12-04 06:00:00"), at("2026-12-04 06:30:00"))]
    _, consumer = asyncio.run(stream_state(nats_server.url))
    assert (consumer.num_pending, consumer.num_ack_pending, consumer.delivered.stream_seq) == (0, 0, 3)


@pytest.mark.mysql_only
def test_it_acknowledges_a_durable_finalize_only_after_the_db_write(nats_server: NatsServer) -> None:
    """While the DB is away the message is held unacknowledged (1 waiting for an ack); once
    the row is written it is acknowledged (0), and the row exists once."""
    with database_through_proxy() as proxy:

        async def body(listener: NatsListener) -> tuple[int, int]:
            proxy.cut()
            await publish_finalizes(
                nats_server.url, [("MONITOR-1", finalize("h", online=False, decided_at="2025-03-01T03:00:00Z"))]
            )
            await wait_until(lambda: listener.finalize_queue.depth == 1)
            _, held = await stream_state(nats_server.url)
            proxy.restore()
            await wait_until(lambda: applied(listener) == 1, timeout=30)
            await asyncio.sleep(0.3)
            _, settled = await stream_state(nats_server.url)
            return held.num_ack_pending, settled.num_ack_pending

        pending = asyncio.run(
            with_listener(
                nats_server.url,
                body,
                durable_finalize=True,
                durable=STREAM,
                db_retry_base_seconds=0.05,
                db_retry_max_seconds=0.3,
            )
        )
    assert pending == (1, 0)
    assert rows() == [("h", 0, at("2025-03-01 03:00:00"), None)]


def test_it_falls_back_to_the_core_subscription_without_jetstream(caplog: pytest.LogCaptureFixture) -> None:
    """A server without JetStream: the option is logged as unavailable and finalizes still
    arrive through the core subscription."""
    server = NatsServer.start(jetstream=False)
    try:

        async def body(listener: NatsListener) -> None:
            assert listener.durable is None
            await publish_finalizes(
                server.url, [("MONITOR-1", finalize("f", online=False, decided_at="2025-03-01T04:00:00Z"))]
            )
            await wait_until(lambda: applied(listener) == 1)

        with caplog.at_level("WARNING", logger="metrics.durable_finalize"):
            asyncio.run(with_listener(server.url, body, durable_finalize=True, durable=STREAM))
    finally:
        server.stop()
    assert any("event=durable_finalize_unavailable" in r.getMessage() for r in caplog.records)
    assert rows() == [("f", 0, at("2025-03-01 04:00:00"), None)]
