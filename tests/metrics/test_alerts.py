"""Outage alerts end to end: member_events rows in the real DB → the background sender →
a real local HTTP homeserver (tests/fake_matrix.py).

Each scenario runs on its own event loop (`asyncio.run`) as the listener would; rows are
written and changed from other threads, as the listener's DB writers do.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.db import connections

from collator.local_config import MatrixConfig
from members.models import ConfigSnapshot
from metrics import alerts
from metrics.alert_messages import (
    OutageFacts,
    burst_summary_content,
    mentions_for_member,
    offline_content,
    online_content,
)
from metrics.alerts import (
    alert_mentions_from_config,
    alert_outage_closed,
    alert_outage_opened,
    alerts_finalize_hook,
    alerts_start,
    alerts_stop,
)
from metrics.matrix import MatrixConfigError, RetryPolicy
from metrics.models import MemberEvent
from metrics.protocol import FinalizeMessage
from metrics.services import FinalizeOutcome, downtime_finalize
from metrics.telemetry import REGISTRY
from tests.fake_matrix import LOGIN, LOST, SEND, Delay, FakeMatrixServer
from tests.metrics.finalize_factory import finalize

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")
ROOM = "!alerts:fake.local"
FAST = RetryPolicy(backoff_initial=0.05, backoff_max=0.5, max_attempts=3, send_timeout=2.0, login_timeout=2.0)
MENTIONS = {"amforc": ["@tugytur:matrix.org"], "stakeplus": ["@will:matrix.org", "@tom:matrix.org"]}
T0 = datetime(2026, 3, 4, 9, 12, 45, tzinfo=UTC)


@pytest.fixture
def homeserver() -> Iterator[FakeMatrixServer]:
    with FakeMatrixServer() as server:
        yield server


def matrix_config(server: FakeMatrixServer) -> MatrixConfig:
    return MatrixConfig(homeserver_url=server.url, username="ibp-bot", password="s3cret", room_id=ROOM)


async def start(server: FakeMatrixServer, **overrides: Any) -> alerts.AlertSender:
    options: dict[str, Any] = {
        "policy": FAST,
        "burst_limit": 10,
        "burst_window": 60.0,
        "mentions_source": lambda: MENTIONS,
        "retry_initial": 0.1,
        "retry_max": 0.4,
        "sweep_interval": 3600.0,  # no sweep unless a test asks for one
    }
    options.update(overrides)
    sender = await alerts_start(config=matrix_config(server), **options)
    assert sender is not None
    return sender


async def until(check: Callable[[], bool], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.01)


async def in_thread(func: Callable[[], T]) -> T:
    """Run ORM code as the listener's writer threads do (own connection, closed after)."""

    def call() -> T:
        try:
            return func()
        finally:
            connections.close_all()

    return await asyncio.to_thread(call)


def outage(
    member: str = "Amforc", *, check_name: str = "wss", error: str | None = "Syncing or not enough peers", **kw: Any
) -> MemberEvent:
    fields: dict[str, Any] = {
        "check_type": "3",
        "check_name": check_name,
        "endpoint": "wss://rpc.dotters.network/kusama",
        "domain_name": "rpc.dotters.network",
        "member_name": member,
        "status": 0,
        "is_ipv6": 0,
        "start_time": T0,
        "error": error,
    }
    fields.update(kw)
    return MemberEvent.objects.create(**fields)


def close(event_id: int, *, at: datetime = T0 + timedelta(minutes=7)) -> MemberEvent:
    MemberEvent.objects.filter(pk=event_id).update(status=1, end_time=at)
    return MemberEvent.objects.get(pk=event_id)


def run_a_sweeping_process(homeserver: FakeMatrixServer, *, until_sent: int) -> None:
    """A listener start that is told nothing: only its sweep (every 0.2 s) finds work. It runs
    until the room holds `until_sent` messages, then four more sweeps, and stops."""

    async def process() -> None:
        await start(homeserver, sweep_interval=0.2, sweep_max_age=86400.0)
        await until(lambda: len(homeserver.sent()) == until_sent)
        await asyncio.sleep(0.8)
        await alerts_stop()

    asyncio.run(process())


def sent_value(kind: str) -> float:
    return REGISTRY.get_sample_value("collator_matrix_alerts_sent_total", {"kind": kind}) or 0.0


def failed_value(kind: str, reason: str) -> float:
    return REGISTRY.get_sample_value("collator_matrix_alerts_failed_total", {"kind": kind, "reason": reason}) or 0.0


# --- §11.4 content, exact ---------------------------------------------------------------------


AMFORC = OutageFacts(
    event_id=1,
    member_name="Amforc",
    check_type="endpoint",
    check_name="wss",
    domain_name="rpc.dotters.network",
    endpoint="wss://rpc.dotters.network/kusama",
    is_ipv6=False,
    error="Syncing or not enough peers",
)


def test_it_writes_the_offline_body_of_the_spec_example_exactly() -> None:
    content = offline_content(AMFORC, mentions=["@tugytur:matrix.org"])

    assert content["body"] == (
        "@tugytur:matrix.org\n⚠️  *OFFLINE*\n• Member: **Amforc**\n• Check:  endpoint / wss\n"
        "• Domain: rpc.dotters.network\n• Endpoint: wss://rpc.dotters.network/kusama\n• IPv6:   false\n"
        "• Error:  Syncing or not enough peers"
    )
    assert content["formatted_body"] == (
        "@tugytur:matrix.org<br/>\u26a0\ufe0f  <strong>OFFLINE</strong><br/>• Member: <strong>Amforc</strong><br/>"
        "• Check:  endpoint / wss<br/>• Domain: rpc.dotters.network<br/>"
        "• Endpoint: wss://rpc.dotters.network/kusama<br/>• IPv6:   false<br/>• Error:  Syncing or not enough peers"
    )
    assert (content["msgtype"], content["format"]) == ("m.text", "org.matrix.custom.html")
    assert list(content) == ["msgtype", "body", "format", "formatted_body"]


def test_it_writes_the_online_formatted_body_of_the_spec_example_exactly() -> None:
    content = online_content(AMFORC)

    assert content["formatted_body"] == (
        "✅  <strong>ONLINE</strong><br/>• Member: <strong>Amforc</strong><br/>• Check:  endpoint / wss<br/>"
        "• Domain: rpc.dotters.network<br/>• Endpoint: wss://rpc.dotters.network/kusama<br/>• IPv6:   false"
    )
    assert content["body"] == (
        "✅  *ONLINE*\n• Member: **Amforc**\n• Check:  endpoint / wss\n• Domain: rpc.dotters.network\n"
        "• Endpoint: wss://rpc.dotters.network/kusama\n• IPv6:   false"
    )


def test_it_leaves_out_the_mentions_line_when_nobody_is_mentioned() -> None:
    assert offline_content(AMFORC)["body"].startswith("⚠️  *OFFLINE*\n• Member: **Amforc**\n")


@pytest.mark.parametrize(
    ("member", "table", "expected"),
    [
        ("Amforc", {"Amforc": ["@exact:x"], "amforc": ["@lower:x"]}, ("@exact:x",)),
        ("Amforc", {"amforc": ["@lower:x"]}, ("@lower:x",)),
        ("Stake Plus", {"stakeplus": ["@will:x", "@will:x", "@tom:x"]}, ("@will:x", "@tom:x")),
        ("Rotko Networks", {"rotko": ["@r:x"]}, ()),  # no rule maps a display name to a shorter slug
        ("Gatotech", {}, ()),
    ],
)
def test_it_finds_mentions_by_exact_name_then_lower_case_then_slug(
    member: str, table: dict[str, list[str]], expected: tuple[str, ...]
) -> None:
    assert mentions_for_member(member, table) == expected


def test_it_reads_mentions_from_the_applied_config_snapshot(ibp_config_dir: Path) -> None:
    files = {
        key: {"source": str(ibp_config_dir / name), "text": (ibp_config_dir / name).read_text()}
        for key, name in {
            "MembersConfig": "members_professional.json",
            "ServicesConfig": "services_rpc.json",
            "IaasPricingConfig": "services_rpc_iaaspricing.json",
        }.items()
    }
    files["AlertsConfig"] = {
        "source": "alerts.json",
        "text": '{"matrix": {"room": "!x:y", "members": {"stakeplus": ["@will:matrix.org"]}}, "telegram": {}}',
    }
    ConfigSnapshot.objects.create(status="applied", files=files, fetched_at=T0, applied_at=T0)

    table = alert_mentions_from_config()

    assert dict(table) == {"stakeplus": ("@will:matrix.org",)}
    assert mentions_for_member("Stake Plus", table) == ("@will:matrix.org",)


# --- the sender, against the local homeserver --------------------------------------------------


def test_it_sends_the_exact_offline_alert_with_html_escaped_values(homeserver: FakeMatrixServer) -> None:
    row = outage(error="<b>&</b> not synced", domain_name="rpc.a&b.network")
    sent_before = sent_value("offline")

    async def scenario() -> None:
        await start(homeserver)
        assert alert_outage_opened(event=row) is True
        await until(lambda: len(homeserver.sent()) == 1)
        await alerts_stop()

    asyncio.run(scenario())

    (message,) = homeserver.sent()
    assert message.room_id == ROOM
    assert message.body == {
        "msgtype": "m.text",
        "body": "@tugytur:matrix.org\n⚠️  *OFFLINE*\n• Member: **Amforc**\n• Check:  endpoint / wss\n"
        "• Domain: rpc.a&b.network\n• Endpoint: wss://rpc.dotters.network/kusama\n• IPv6:   false\n"
        "• Error:  <b>&</b> not synced",
        "format": "org.matrix.custom.html",
        "formatted_body": "@tugytur:matrix.org<br/>⚠️  <strong>OFFLINE</strong><br/>• Member: <strong>Amforc</strong><br/>"
        "• Check:  endpoint / wss<br/>• Domain: rpc.a&amp;b.network<br/>"
        "• Endpoint: wss://rpc.dotters.network/kusama<br/>• IPv6:   false<br/>"
        "• Error:  &lt;b&gt;&amp;&lt;/b&gt; not synced",
    }
    (event_id,) = homeserver.state.events
    assert MemberEvent.objects.get(pk=row.pk).matrix_event_id == event_id
    assert sent_value("offline") - sent_before == 1


def test_it_sends_one_offline_for_three_reports_of_the_same_outage(homeserver: FakeMatrixServer) -> None:
    row = outage()

    async def scenario() -> list[bool]:
        await start(homeserver)
        # Three monitors finalize the same outage; the listener may report each one.
        first = alert_outage_opened(event=row)
        again = await in_thread(lambda: MemberEvent.objects.get(pk=row.pk))
        second = alert_outage_opened(event=again)
        await until(lambda: len(homeserver.sent()) == 1)
        third = alert_outage_opened(event=await in_thread(lambda: MemberEvent.objects.get(pk=row.pk)))
        await asyncio.sleep(0.2)
        await alerts_stop()
        return [first, second, third]

    assert asyncio.run(scenario()) == [True, False, False]
    assert len(homeserver.requests(SEND)) == 1
    assert MemberEvent.objects.get(pk=row.pk).matrix_event_id == next(iter(homeserver.state.events))


def test_it_edits_the_offline_message_to_online_on_recovery(homeserver: FakeMatrixServer) -> None:
    row = outage()

    async def scenario() -> None:
        await start(homeserver)
        alert_outage_opened(event=row)
        await until(lambda: len(homeserver.sent()) == 1)
        closed = await in_thread(lambda: close(row.pk))
        assert alert_outage_closed(event=closed) is True
        await until(lambda: len(homeserver.sent()) == 2)
        await alerts_stop()

    asyncio.run(scenario())

    offline_event = MemberEvent.objects.get(pk=row.pk).matrix_event_id
    edit = homeserver.sent()[1].body
    online = {
        "msgtype": "m.text",
        "body": "✅  *ONLINE*\n• Member: **Amforc**\n• Check:  endpoint / wss\n• Domain: rpc.dotters.network\n"
        "• Endpoint: wss://rpc.dotters.network/kusama\n• IPv6:   false",
        "format": "org.matrix.custom.html",
        "formatted_body": "✅  <strong>ONLINE</strong><br/>• Member: <strong>Amforc</strong><br/>"
        "• Check:  endpoint / wss<br/>• Domain: rpc.dotters.network<br/>"
        "• Endpoint: wss://rpc.dotters.network/kusama<br/>• IPv6:   false",
    }
    assert edit == {
        **online,
        "m.new_content": online,
        "m.relates_to": {"rel_type": "m.replace", "event_id": offline_event},
    }
    # The edit's own id is kept, so no restart sends this ONLINE again.
    assert MemberEvent.objects.get(pk=row.pk).matrix_online_event_id == list(homeserver.state.events)[1]


def test_it_still_edits_after_a_restart_and_does_not_log_in_again(homeserver: FakeMatrixServer) -> None:
    row = outage(member="Stake Plus")

    async def before_restart() -> None:
        await start(homeserver)
        alert_outage_opened(event=row)
        await until(lambda: len(homeserver.sent()) == 1)
        await alerts_stop()

    asyncio.run(before_restart())
    stored = MemberEvent.objects.get(pk=row.pk).matrix_event_id
    closed = close(row.pk)
    reopened_report = MemberEvent.objects.get(pk=row.pk)

    async def after_restart() -> None:
        await start(homeserver)  # a new sender and a new client: nothing in memory
        assert alert_outage_opened(event=reopened_report) is False  # closed: refused
        alert_outage_closed(event=closed)
        await until(lambda: len(homeserver.sent()) == 2)
        await alerts_stop()

    asyncio.run(after_restart())

    offline, edit = homeserver.sent()
    assert offline.body["body"].startswith("@will:matrix.org @tom:matrix.org\n⚠️  *OFFLINE*\n• Member: **Stake Plus**")
    assert edit.body["m.relates_to"] == {"rel_type": "m.replace", "event_id": stored}
    assert edit.body["m.new_content"]["body"].startswith("✅  *ONLINE*\n• Member: **Stake Plus**")
    assert len(homeserver.requests(LOGIN)) == 1
    assert offline.token == edit.token


def test_it_does_not_announce_again_an_outage_announced_before_a_restart(homeserver: FakeMatrixServer) -> None:
    row = outage()

    async def run_once() -> None:
        await start(homeserver)
        alert_outage_opened(event=row)  # the caller's copy has no matrix_event_id: the DB is checked
        await asyncio.sleep(0.3)
        await alerts_stop()

    asyncio.run(run_once())
    asyncio.run(run_once())

    assert len(homeserver.requests(SEND)) == 1


def test_it_sends_no_online_for_a_close_that_closed_nothing(homeserver: FakeMatrixServer) -> None:
    still_open = outage()

    async def scenario() -> bool:
        await start(homeserver)
        queued = alert_outage_closed(event=still_open)
        await asyncio.sleep(0.3)
        await alerts_stop()
        return queued

    assert asyncio.run(scenario()) is False
    assert homeserver.requests() == []


def test_it_sends_a_new_online_message_when_no_offline_was_stored(homeserver: FakeMatrixServer) -> None:
    row = outage()
    closed = close(row.pk)

    async def scenario() -> None:
        await start(homeserver)
        alert_outage_closed(event=closed)
        await until(lambda: len(homeserver.sent()) == 1)
        await alerts_stop()

    asyncio.run(scenario())

    (message,) = homeserver.sent()
    assert "m.relates_to" not in message.body
    assert message.body == online_content(OutageFacts.from_event(closed))


def test_it_sends_a_new_online_message_when_the_edit_is_refused(homeserver: FakeMatrixServer) -> None:
    row = outage()

    async def scenario() -> None:
        await start(homeserver)
        alert_outage_opened(event=row)
        await until(lambda: len(homeserver.sent()) == 1)
        homeserver.script(SEND, (400, {"errcode": "M_BAD_JSON", "error": "cannot edit"}))
        alert_outage_closed(event=await in_thread(lambda: close(row.pk)))
        await until(lambda: len(homeserver.sent()) == 2)
        await alerts_stop()

    asyncio.run(scenario())

    assert [r.status for r in homeserver.requests(SEND)] == [200, 400, 200]
    refused, new = homeserver.requests(SEND)[1:]
    assert refused.body["m.relates_to"]["rel_type"] == "m.replace"
    assert "m.relates_to" not in new.body
    assert new.body["body"].startswith("✅  *ONLINE*\n")


def test_it_waits_out_a_429_before_sending_the_alert(homeserver: FakeMatrixServer) -> None:
    homeserver.script(SEND, (429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 600}))
    row = outage()

    async def scenario() -> None:
        await start(homeserver)
        alert_outage_opened(event=row)
        await until(lambda: len(homeserver.sent()) == 1)
        await alerts_stop()

    asyncio.run(scenario())

    limited, accepted = homeserver.requests(SEND)
    assert (limited.status, accepted.status) == (429, 200)
    assert accepted.at - limited.at >= 0.6
    assert MemberEvent.objects.get(pk=row.pk).matrix_event_id is not None


def test_it_folds_a_burst_into_one_summary(homeserver: FakeMatrixServer) -> None:
    """Limit 3 per 1.5 s window; 5 outages open at once and one of them recovers.

    Messages: OFFLINE ×3 at once, then (1.5 s after the window opened) one summary of the other
    2 OFFLINE and the 1 ONLINE: 3 OFFLINE + 1 summary = 4 messages, not 6.
    """
    rows = [
        outage(member=name, check_name="wss") for name in ("Amforc", "Dwellir", "Gatotech", "Stake Plus", "Turboflakes")
    ]
    summaries_before = sent_value("summary")

    began: list[float] = []

    async def scenario() -> None:
        await start(homeserver, burst_limit=3, burst_window=1.5)
        began.append(time.monotonic())  # the window opens after this, at the first send
        for row in rows:
            alert_outage_opened(event=row)
        closed = await in_thread(lambda: close(rows[4].pk))
        alert_outage_closed(event=closed)
        await until(lambda: len(homeserver.sent()) == 4)
        await asyncio.sleep(0.2)
        await alerts_stop()

    asyncio.run(scenario())

    messages = homeserver.sent()
    assert len(messages) == 4
    assert [m.body["body"].split("\n")[-7:][1] for m in messages[:3]] == [
        "• Member: **Amforc**",
        "• Member: **Dwellir**",
        "• Member: **Gatotech**",
    ]
    summary = messages[3]
    assert summary.at - began[0] >= 1.5
    facts = {row.member_name: OutageFacts.from_event(row) for row in rows}
    assert summary.body == burst_summary_content(
        [("offline", facts["Stake Plus"]), ("offline", facts["Turboflakes"]), ("online", facts["Turboflakes"])],
        window_seconds=1.5,
        mentions=["@will:matrix.org", "@tom:matrix.org"],
    )
    assert summary.body["body"] == (
        "@will:matrix.org @tom:matrix.org\n"
        "⚠️  *ALERT BURST*: 3 more alerts within 1.5 s (2 OFFLINE, 1 ONLINE)\n"
        "• OFFLINE **Stake Plus**: endpoint / wss wss://rpc.dotters.network/kusama\n"
        "• OFFLINE **Turboflakes**: endpoint / wss wss://rpc.dotters.network/kusama\n"
        "• ONLINE **Turboflakes**: endpoint / wss wss://rpc.dotters.network/kusama"
    )
    summary_id = homeserver.state.txns[(homeserver.state.tokens[summary.token], summary.txn_id)]
    stored = dict(MemberEvent.objects.filter(pk__in=[r.pk for r in rows]).values_list("member_name", "matrix_event_id"))
    assert stored["Stake Plus"] == stored["Turboflakes"] == f"fold:{summary_id}"
    online = dict(
        MemberEvent.objects.filter(pk__in=[r.pk for r in rows]).values_list("member_name", "matrix_online_event_id")
    )
    assert online == {
        "Amforc": None,
        "Dwellir": None,
        "Gatotech": None,
        "Stake Plus": None,
        "Turboflakes": f"fold:{summary_id}",
    }
    assert all(stored[name].startswith("$event") for name in ("Amforc", "Dwellir", "Gatotech"))
    assert sent_value("summary") - summaries_before == 1


def test_it_sends_the_online_of_a_folded_outage_as_a_new_message(homeserver: FakeMatrixServer) -> None:
    row = outage()
    MemberEvent.objects.filter(pk=row.pk).update(matrix_event_id="fold:$summary1:fake.local")
    closed = close(row.pk)

    async def scenario() -> None:
        await start(homeserver)
        alert_outage_closed(event=closed)
        await until(lambda: len(homeserver.sent()) == 1)
        await alerts_stop()

    asyncio.run(scenario())

    (message,) = homeserver.sent()
    assert "m.relates_to" not in message.body
    assert message.body["body"].startswith("✅  *ONLINE*\n")
    assert MemberEvent.objects.get(pk=row.pk).matrix_online_event_id == next(iter(homeserver.state.events))


def test_it_never_blocks_the_caller_and_counts_what_it_drops(homeserver: FakeMatrixServer) -> None:
    """Queue of 2, homeserver answering slowly: 5 alerts queued in one go → 2 kept, 3 dropped."""
    homeserver.script(SEND, Delay(0.5, 200, {"event_id": "$slow:fake.local"}))
    rows = [outage(check_name=f"check{i}") for i in range(5)]
    dropped_before = failed_value("offline", "queue_full")

    async def scenario() -> tuple[list[bool], float]:
        await start(homeserver, queue_size=2)
        began = time.monotonic()
        queued = [alert_outage_opened(event=row) for row in rows]
        elapsed = time.monotonic() - began
        await until(lambda: len(homeserver.sent()) == 2)
        await alerts_stop()
        return queued, elapsed

    queued, elapsed = asyncio.run(scenario())

    assert queued == [True, True, False, False, False]
    assert elapsed < 0.5  # shorter than one homeserver answer: nothing waited for Matrix
    assert failed_value("offline", "queue_full") - dropped_before == 3


def test_it_accepts_alerts_from_another_thread(homeserver: FakeMatrixServer) -> None:
    row = outage()

    async def scenario() -> None:
        await start(homeserver)
        worker = threading.Thread(target=lambda: alert_outage_opened(event=row))
        worker.start()
        worker.join()
        await until(lambda: len(homeserver.sent()) == 1)
        await alerts_stop()

    asyncio.run(scenario())

    assert homeserver.sent()[0].body["body"].startswith("@tugytur:matrix.org\n⚠️  *OFFLINE*")


def test_it_counts_a_failed_round_and_sends_the_alert_on_the_next_one(homeserver: FakeMatrixServer) -> None:
    """Three 500s use up the client's 3 quick tries: the round is counted as failed, the
    alert is kept, and the next round (after retry_initial) sends it with the same txn id."""
    homeserver.script(SEND, *[(500, {})] * 3)
    row = outage()
    failed_before = failed_value("offline", "MatrixUnavailableError")

    def announced() -> bool:
        return MemberEvent.objects.filter(pk=row.pk, matrix_event_id__isnull=False).exists()

    async def scenario() -> None:
        await start(homeserver)
        alert_outage_opened(event=row)
        await until(lambda: len(homeserver.sent()) == 1)
        # Stopped once the message is sent and its id stored (a stop half-way through a
        # send is test_it_stores_the_event_id_of_a_send_a_stop_cut_short).
        deadline = time.monotonic() + 10
        while not await in_thread(announced):
            assert time.monotonic() < deadline, "the Matrix event id was never stored"
            await asyncio.sleep(0.01)
        await alerts_stop()

    asyncio.run(scenario())

    requests = homeserver.requests(SEND)
    assert [r.status for r in requests] == [500, 500, 500, 200]
    assert len({r.txn_id for r in requests}) == 1
    assert failed_value("offline", "MatrixUnavailableError") - failed_before == 1
    assert MemberEvent.objects.get(pk=row.pk).matrix_event_id == next(iter(homeserver.state.events))


def test_it_stores_the_event_id_of_a_send_a_stop_cut_short(homeserver: FakeMatrixServer) -> None:
    """The listener stops while its OFFLINE is on the wire (or its id on its way to the row):
    the message is in the room once, and its id is on the row, so the next start's sweep
    does not announce the outage again. A send that is tried again reuses its txn id."""
    row = outage()

    async def scenario() -> None:
        await start(homeserver)
        alert_outage_opened(event=row)
        await until(lambda: len(homeserver.requests(SEND)) >= 1)
        await alerts_stop()

    asyncio.run(scenario())

    requests = homeserver.requests(SEND)
    assert len({r.txn_id for r in requests}) == 1
    assert len(homeserver.state.events) == 1
    assert MemberEvent.objects.get(pk=row.pk).matrix_event_id == next(iter(homeserver.state.events))


def test_it_writes_an_event_id_whose_write_a_stop_cancelled_before_it_ran(homeserver: FakeMatrixServer) -> None:
    """The id's write waits behind other DB work of the sender when the stop cancels it: the
    write is still done before the sender stops. (White-box: the sender's one DB thread is
    held busy, so that the write is cancelled before it starts, which a stop can do.)"""
    row = outage()

    async def scenario() -> None:
        sender = await start(homeserver)
        gate = threading.Event()
        sender._executor.submit(gate.wait)
        write = asyncio.create_task(sender._store_matrix_id([row.pk], "$sent:fake.local"))
        await asyncio.sleep(0.05)
        write.cancel()
        gate.set()
        await alerts_stop()

    asyncio.run(scenario())
    assert MemberEvent.objects.get(pk=row.pk).matrix_event_id == "$sent:fake.local"


# --- a homeserver outage longer than the client's retries ----------------------------------------

# FAST gives up after 3 tries 0.05 s and 0.1 s apart: about 0.15 s. The outages below last
# ten times that, and before the fix every alert sent during them was lost.
OLD_RETRY_BUDGET_SECONDS = 0.15


def test_it_sends_the_offline_and_its_online_edit_after_a_long_homeserver_outage(
    homeserver: FakeMatrixServer,
) -> None:
    """Rows A and B open, then A closes, while the homeserver refuses connections for 1.5 s.
    Once it is back, in that order: OFFLINE A, OFFLINE B, then the ONLINE edit of A's message
    (not a lone ONLINE), each once; queueing them never waited for the homeserver."""
    first = outage(member="Amforc")
    second = outage(member="Dwellir", check_name="https")
    deferred_before = failed_value("offline", "MatrixUnavailableError")
    homeserver.go_down()

    async def scenario() -> float:
        await start(homeserver)
        began = time.monotonic()
        assert alert_outage_opened(event=first) is True
        assert alert_outage_opened(event=second) is True
        closed = await in_thread(lambda: close(first.pk))
        assert alert_outage_closed(event=closed) is True
        enqueue_seconds = time.monotonic() - began
        await asyncio.sleep(10 * OLD_RETRY_BUDGET_SECONDS)
        assert homeserver.requests() == []  # nothing got through while it was down
        homeserver.come_back()
        await until(lambda: len(homeserver.sent()) == 3)
        await asyncio.sleep(0.3)
        await alerts_stop()
        return enqueue_seconds

    enqueue_seconds = asyncio.run(scenario())

    assert enqueue_seconds < 0.05
    assert failed_value("offline", "MatrixUnavailableError") - deferred_before >= 2  # rounds past the budget
    offline_a, offline_b, edit_a = homeserver.sent()
    assert len(homeserver.requests(SEND)) == 3
    assert len(homeserver.requests(LOGIN)) == 1
    rows = {row.pk: row for row in MemberEvent.objects.all()}
    event_ids = list(homeserver.state.events)
    assert offline_a.body == offline_content(OutageFacts.from_event(rows[first.pk]), mentions=["@tugytur:matrix.org"])
    assert edit_a.body == {
        **online_content(OutageFacts.from_event(rows[first.pk])),
        "m.new_content": online_content(OutageFacts.from_event(rows[first.pk])),
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_ids[0]},
    }
    assert offline_b.body == offline_content(OutageFacts.from_event(rows[second.pk]))
    assert rows[first.pk].matrix_event_id == event_ids[0]
    assert rows[second.pk].matrix_event_id == event_ids[1]
    assert alerts.alerts_queue_depth() == 0


def test_it_never_posts_twice_when_the_answers_are_lost(homeserver: FakeMatrixServer) -> None:
    """The homeserver posts the message but the answer never arrives, three times: the client
    gives up, the alert waits, and its next round reuses the transaction id, so the
    homeserver answers with the first event instead of posting a second one."""
    homeserver.script(SEND, LOST, LOST, LOST)
    row = outage()

    async def scenario() -> None:
        await start(homeserver)
        alert_outage_opened(event=row)
        await until(lambda: len(homeserver.requests(SEND)) == 4)
        await asyncio.sleep(0.2)  # the id is stored after the answer
        await alerts_stop()

    asyncio.run(scenario())

    requests = homeserver.requests(SEND)
    assert len({r.txn_id for r in requests}) == 1
    (event_id,) = homeserver.state.events
    assert MemberEvent.objects.get(pk=row.pk).matrix_event_id == event_id


def test_it_announces_after_a_restart_the_open_outage_the_last_process_could_not_send(
    homeserver: FakeMatrixServer,
) -> None:
    """The first process stops while the homeserver is down, with the OFFLINE still waiting.
    The next one is never told about the row: its sweep finds the open row without a Matrix
    id and announces it once, and leaves alone the rows that must stay quiet."""
    target = outage(member="Amforc")
    outage(member="Dwellir", end_time=T0 + timedelta(minutes=5), status=1)  # closed, never announced
    outage(member="Gatotech", matrix_event_id="$announced:fake.local")  # announced before
    outage(member="Turboflakes", start_time=datetime.now(UTC) - timedelta(days=2))  # older than max age
    outage(member="Stake Plus", status=1)  # status 1 without an end: not an outage (DECISIONS 2)
    MemberEvent.objects.filter(pk=target.pk).update(start_time=datetime.now(UTC) - timedelta(hours=1))
    homeserver.go_down()

    async def first_process() -> None:
        await start(homeserver)
        alert_outage_opened(event=target)
        await asyncio.sleep(0.3)
        await alerts_stop(drain_timeout=0.3)

    asyncio.run(first_process())
    assert MemberEvent.objects.get(pk=target.pk).matrix_event_id is None
    homeserver.come_back()

    run_a_sweeping_process(homeserver, until_sent=1)

    (message,) = homeserver.sent()
    assert len(homeserver.requests(SEND)) == 1
    row = MemberEvent.objects.get(pk=target.pk)
    assert message.body == offline_content(OutageFacts.from_event(row), mentions=["@tugytur:matrix.org"])
    assert row.matrix_event_id == next(iter(homeserver.state.events))


def test_it_sends_after_a_restart_the_online_the_last_process_could_not_send(
    homeserver: FakeMatrixServer,
) -> None:
    """The OFFLINE went out; the homeserver then goes away, the outage closes and the
    listener stops with its ONLINE still waiting. The next process is never told: its sweep
    finds the closed row announced OFFLINE but not ONLINE, and edits the message once. It
    leaves alone the closed rows that must stay quiet."""
    target = outage(member="Amforc")
    recent = datetime.now(UTC) - timedelta(minutes=30)
    quiet = {
        "never announced": outage(member="Dwellir", start_time=recent, end_time=recent, status=1),
        "online sent": outage(
            member="Gatotech",
            start_time=recent,
            end_time=recent,
            status=1,
            matrix_event_id="$off:fake.local",
            matrix_online_event_id="$on:fake.local",
        ),
        "closed long ago": outage(
            member="Turboflakes",
            start_time=recent - timedelta(days=3),
            end_time=recent - timedelta(days=2),
            status=1,
            matrix_event_id="$old:fake.local",
        ),
        "upgraded": outage(
            member="Stake Plus",
            start_time=recent,
            end_time=recent,
            status=1,
            matrix_event_id="$before:fake.local",
            matrix_online_event_id="untracked",
        ),
    }
    MemberEvent.objects.filter(pk=target.pk).update(start_time=recent)
    target.refresh_from_db()

    async def first_process() -> None:
        await start(homeserver)
        alert_outage_opened(event=target)
        await until(lambda: len(homeserver.sent()) == 1)
        await asyncio.sleep(0.1)  # the OFFLINE id reaches the row
        homeserver.go_down()
        closed = await in_thread(lambda: close(target.pk, at=recent + timedelta(minutes=7)))
        assert alert_outage_closed(event=closed) is True
        await asyncio.sleep(0.3)
        await alerts_stop(drain_timeout=0.3)

    asyncio.run(first_process())
    offline_id = MemberEvent.objects.get(pk=target.pk).matrix_event_id
    assert offline_id == next(iter(homeserver.state.events))
    assert MemberEvent.objects.get(pk=target.pk).matrix_online_event_id is None
    homeserver.come_back()

    run_a_sweeping_process(homeserver, until_sent=2)

    offline, edit = homeserver.sent()
    row = MemberEvent.objects.get(pk=target.pk)
    assert edit.body["m.relates_to"] == {"rel_type": "m.replace", "event_id": offline_id}
    assert edit.body["m.new_content"] == online_content(OutageFacts.from_event(row))
    assert row.matrix_online_event_id == list(homeserver.state.events)[1]
    for name, quiet_row in quiet.items():
        assert MemberEvent.objects.get(pk=quiet_row.pk).matrix_online_event_id == quiet_row.matrix_online_event_id, name


def test_it_marks_rows_closed_before_the_upgrade_as_untracked() -> None:
    """The 0008 data step: a closed row that was announced gets `untracked` (its ONLINE may
    have gone out); an open row and a closed row never announced keep NULL."""
    from importlib import import_module

    from django.apps import apps

    step = import_module("metrics.migrations.0008_matrix_online_event_id").mark_closed_rows_untracked
    announced = outage(member="Amforc", end_time=T0 + timedelta(minutes=3), status=1, matrix_event_id="$a:fake.local")
    still_open = outage(member="Dwellir", matrix_event_id="$b:fake.local")
    unannounced = outage(member="Gatotech", end_time=T0 + timedelta(minutes=3), status=1)

    step(apps, None)

    online = dict(MemberEvent.objects.values_list("pk", "matrix_online_event_id"))
    assert online == {announced.pk: "untracked", still_open.pk: None, unannounced.pk: None}


def test_it_is_off_when_matrix_is_not_configured() -> None:
    row = outage()

    async def scenario() -> tuple[Any, bool, bool]:
        sender = await alerts_start(config=MatrixConfig())
        return sender, alerts.alerts_enabled(), alert_outage_opened(event=row)

    assert asyncio.run(scenario()) == (None, False, False)


def test_it_refuses_to_start_with_a_set_me_value(homeserver: FakeMatrixServer) -> None:
    config = MatrixConfig(homeserver_url=homeserver.url, username="ibp-bot", password="__SET_ME__", room_id=ROOM)

    with pytest.raises(MatrixConfigError, match="Matrix.password is still __SET_ME__"):
        asyncio.run(alerts_start(config=config))
    assert homeserver.requests() == []


# --- through the listener's seam: real downtime_finalize outcomes → alerts_finalize_hook ---------


async def apply(message: FinalizeMessage) -> FinalizeOutcome:
    """What NatsListener.finalize_apply does: the write on a DB thread, then the hooks.

    Each decision arrives as it is made: the clock reads its DecidedAt (a DecidedAt ahead of
    the clock is refused as decided_in_future)."""
    now = message.decided_at.utc
    outcome = await in_thread(lambda: downtime_finalize(message=message, now=now, votes={}))
    alerts_finalize_hook(message, outcome)
    return outcome


def test_it_sends_one_offline_for_a_triple_finalize_and_edits_it_on_recovery(homeserver: FakeMatrixServer) -> None:
    """Monitors EU-1, US-2 and AS-3 each deliver the offline decision; a fourth decision under
    another proposal id merges into the open row. One row, one OFFLINE; the online decision
    closes the row and edits that OFFLINE in place."""
    offline = [
        finalize("p-1", online=False, decided_at="2026-03-04T09:12:45Z", member="Amforc", error="<b>&</b>", sender=s)
        for s in ("MONITOR-EU-1", "MONITOR-US-2", "MONITOR-AS-3")
    ]
    offline.append(finalize("p-2", online=False, decided_at="2026-03-04T09:13:05Z", member="Amforc"))
    online = finalize("p-3", online=True, decided_at="2026-03-04T09:19:45Z", member="Amforc")

    async def scenario() -> list[str]:
        await start(homeserver)
        actions = [(await apply(message)).action for message in offline]
        await until(lambda: len(homeserver.sent()) == 1)
        actions.append((await apply(online)).action)
        await until(lambda: len(homeserver.sent()) == 2)
        await asyncio.sleep(0.2)
        await alerts_stop()
        return actions

    assert asyncio.run(scenario()) == ["opened", "duplicate", "duplicate", "merged", "closed"]
    (row,) = MemberEvent.objects.all()
    first, edit = homeserver.sent()
    assert len(homeserver.requests(SEND)) == 2
    assert first.body["body"].endswith("• IPv6:   false\n• Error:  <b>&</b>")
    assert first.body["formatted_body"].endswith("• IPv6:   false<br/>• Error:  &lt;b&gt;&amp;&lt;/b&gt;")
    assert row.matrix_event_id == next(iter(homeserver.state.events))
    assert edit.body["m.relates_to"] == {"rel_type": "m.replace", "event_id": row.matrix_event_id}
    assert edit.body["m.new_content"] == online_content(OutageFacts.from_event(row))


def test_it_edits_after_a_listener_restart_through_the_hook(homeserver: FakeMatrixServer) -> None:
    async def before() -> None:
        await start(homeserver)
        await apply(finalize("p-1", online=False, decided_at="2026-03-04T09:12:45Z", member="Dwellir"))
        await until(lambda: len(homeserver.sent()) == 1)
        await alerts_stop()

    async def after() -> None:
        await start(homeserver)
        await apply(finalize("p-2", online=True, decided_at="2026-03-04T09:30:00Z", member="Dwellir"))
        await until(lambda: len(homeserver.sent()) == 2)
        await alerts_stop()

    asyncio.run(before())
    asyncio.run(after())

    (row,) = MemberEvent.objects.all()
    assert row.end_time == datetime(2026, 3, 4, 9, 30, tzinfo=UTC)
    edit = homeserver.sent()[1]
    assert edit.body["m.relates_to"] == {"rel_type": "m.replace", "event_id": row.matrix_event_id}
    assert len(homeserver.requests(LOGIN)) == 1


def test_it_sends_nothing_for_an_online_finalize_that_closed_nothing(homeserver: FakeMatrixServer) -> None:
    """A monitor restart re-sends online decisions for checks that were never down (§7)."""

    async def scenario() -> list[str]:
        await start(homeserver)
        actions = [
            (await apply(finalize(f"p-{i}", online=True, decided_at="2026-03-04T09:12:45Z", check_name=name))).action
            for i, name in enumerate(("wss", "https", "ssl"))
        ]
        await asyncio.sleep(0.3)
        await alerts_stop()
        return actions

    assert asyncio.run(scenario()) == ["remembered", "remembered", "remembered"]
    assert homeserver.requests() == []
    assert MemberEvent.objects.count() == 0
