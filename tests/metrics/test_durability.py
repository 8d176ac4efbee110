"""Writes held while the database is unreachable, through the running listener.

The database stays real (the machine's MariaDB, which other engineers' tests also use, is
never stopped): the listener reaches it through a real TCP proxy (tests/tcp_proxy.py) that
the test cuts and restores, so only the route from the listener goes down.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.db import DatabaseError, InterfaceError, OperationalError, connection, connections, transaction

from metrics.durability import (
    DROP_NEWEST,
    FAILED,
    QUEUED,
    RETRY_DROPPED,
    WRITE_FAILED,
    OrderedRetryQueue,
    db_error_number,
    db_unavailable,
)
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


# --- which errors are worth retrying (by MySQL error number, not by exception class) ----------


def _raised(sql: str) -> DatabaseError:
    """Run `sql` on the real server and return the error it raises."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS durability_probe (moment DATETIME NOT NULL, amount INT NOT NULL)"
            " ENGINE=InnoDB"
        )
        try:
            cursor.execute(sql)
        except DatabaseError as exc:
            return exc
    raise AssertionError(f"{sql!r} did not fail")


@pytest.mark.parametrize(
    ("sql", "errno"),
    [
        ("SELECT no_such_column FROM member_events", 1054),
        ("INSERT INTO durability_probe (moment, amount) VALUES ('2025-13-45 00:00:00', 1)", 1292),
        ("INSERT INTO durability_probe (moment, amount) VALUES ('2025-03-01 00:00:00', 'many')", 1366),
        ("SELECT CAST(0 AS UNSIGNED) - 1", 1690),
    ],
)
def test_it_does_not_retry_an_error_the_server_will_give_again(sql: str, errno: int) -> None:
    """mysqlclient raises most of these as OperationalError; they are failures all the same."""
    error = _raised(sql)

    assert db_error_number(error) == errno
    assert db_unavailable(error) is False


@pytest.mark.parametrize("errno", [2002, 2003, 2006, 2013, 2055, 1040, 1053, 1205, 1213, 4031])
def test_it_retries_the_connection_level_errors(errno: int) -> None:
    assert db_unavailable(OperationalError(errno, "connection-level")) is True


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (InterfaceError(0, ""), True),
        (InterfaceError("connection already closed"), True),
        (OperationalError(1054, "Unknown column"), False),
        (OperationalError("no error number"), False),
        # SQLite (the embedded default) has no numbers: another process holding the lock is "not now".
        (OperationalError("database is locked"), True),
        (OperationalError("no such table: member_events"), False),
        (ValueError("not a DB error"), False),
    ],
)
def test_it_classifies_errors_without_a_known_number(error: Exception, transient: bool) -> None:
    assert db_unavailable(error) is transient


@pytest.fixture
def probe_row() -> Iterator[int]:
    row = MemberEvent.objects.create(member_name="Probe", start_time=at("2025-03-01 00:00:00"), error="initial")
    yield row.pk


def _hold_row_lock(row_id: int) -> tuple[threading.Event, threading.Thread]:
    """Lock the row from another connection until the returned event is set."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(MemberEvent.objects.select_for_update().filter(pk=row_id))
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold, name="row-lock-holder")
    thread.start()
    assert locked.wait(10)
    return release, thread


def test_it_drops_a_permanently_bad_write_and_moves_on_while_a_lock_wait_is_retried(probe_row: int) -> None:
    """Three writes in order: `locked` meets a row lock (1205: held and retried), `bad` names a
    column that does not exist (1054: OperationalError, logged, counted and dropped), `good`
    is fine. Once the lock is gone: `locked` and `good` are written, in order, and `bad` was
    handed to on_failed. Before, `bad` was retried for ever and `good` never written."""
    statements = {
        "locked": "UPDATE member_events SET error = 'locked' WHERE id = %s",
        "bad": "UPDATE member_events SET no_such_column = 'bad' WHERE id = %s",
        "good": "UPDATE member_events SET check_name = 'good' WHERE id = %s",
    }
    written: list[str] = []
    failed: list[tuple[str, int | None]] = []
    failed_before = WRITE_FAILED.labels(queue="probe")._value.get()
    release, holder = _hold_row_lock(probe_row)

    def write_sync(item: str) -> str:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
                cursor.execute(statements[item], [probe_row])
            return item
        finally:
            connections.close_all()

    async def scenario() -> tuple[list[str], int]:
        pool = ThreadPoolExecutor(max_workers=1)

        async def write(item: str) -> str:
            return await asyncio.get_running_loop().run_in_executor(pool, write_sync, item)

        queue: OrderedRetryQueue[str] = OrderedRetryQueue(
            name="probe",
            write=write,
            on_written=lambda item, result: written.append(result),
            on_failed=lambda item, exc: failed.append((item, db_error_number(exc))),
            max_items=10,
            overflow=DROP_NEWEST,
            base_delay=0.05,
            max_delay=0.2,
        )
        statuses = [(await queue.submit(item)).status for item in ("locked", "bad", "good")]
        await asyncio.sleep(0.5)
        release.set()
        emptied = await queue.wait_empty(timeout=15)
        await queue.close(drain_timeout=0.1)
        pool.shutdown(wait=True)
        assert emptied, "the queue stalled behind the bad write"
        return statuses, queue.depth

    try:
        statuses, depth = asyncio.run(scenario())
    finally:
        release.set()
        holder.join(10)

    assert statuses == [QUEUED, QUEUED, QUEUED]
    assert written == ["locked", "good"]
    assert failed == [("bad", 1054)]
    assert depth == 0
    assert WRITE_FAILED.labels(queue="probe")._value.get() - failed_before == 1
    assert MemberEvent.objects.filter(pk=probe_row).values_list("error", "check_name").get() == ("locked", "good")


def test_it_answers_failed_at_once_for_a_bad_write_when_nothing_is_held(probe_row: int) -> None:
    """Nothing held, a 1054: the caller gets FAILED straight away and nothing is held."""

    def write_sync() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("UPDATE member_events SET amount = 'x' WHERE id = %s", [probe_row])
        finally:
            connections.close_all()

    async def scenario() -> tuple[str, int | None, int]:
        queue: OrderedRetryQueue[str] = OrderedRetryQueue(
            name="probe_direct",
            write=lambda item: asyncio.to_thread(write_sync),
            on_written=_never,
            on_failed=_never,
            max_items=10,
            overflow=DROP_NEWEST,
        )
        submitted = await queue.submit("bad")
        return submitted.status, db_error_number(submitted.error) if submitted.error else None, queue.depth

    assert asyncio.run(scenario()) == (FAILED, 1054, 0)


def _never(*args: Any) -> None:
    raise AssertionError(f"unexpected callback {args!r}")
