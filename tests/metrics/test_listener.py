"""The listener on a real nats-server and the real DB: outages, usage rounds, presence, rejects.

Peers are separate NATS connections publishing exactly what Go peers publish.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from datetime import UTC, date, datetime
from typing import Any

import pytest

from metrics.listener import NatsListener
from metrics.models import ClusterNode, MemberEvent, RequestStat
from metrics.protocol import SUBJECT_CLUSTER, SUBJECT_FINALIZE, SUBJECT_USAGE_DATA, FinalizeMessage
from tests.metrics.finalize_factory import finalize
from tests.metrics.nats_peers import (
    ScriptedDnsNode,
    SettableClock,
    peer,
    usage_reply,
    wait_until,
    wait_until_db,
    with_listener,
)
from tests.nats_server import NatsServer

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINT = "wss://rpc.dotters.network/kusama"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def event_rows() -> list[tuple[object, ...]]:
    return list(
        MemberEvent.objects.order_by("id").values_list(
            "check_type", "endpoint", "status", "start_time", "end_time", "proposal_id", "close_proposal_id"
        )
    )


async def publish_finalizes(url: str, messages: list[tuple[str, FinalizeMessage]]) -> None:
    """Each (monitor, message) from that monitor's own connection, in order."""
    connections: dict[str, Any] = {}
    for monitor, message in messages:
        if monitor not in connections:
            connections[monitor] = await peer(url, monitor)
        await connections[monitor].publish(SUBJECT_FINALIZE, message.to_json())
        await connections[monitor].flush()
    for nc in connections.values():
        await nc.drain()


def finalized(listener: NatsListener) -> int:
    return sum(listener.counters.finalize.values())


def test_it_writes_one_row_for_the_same_offline_finalize_from_three_monitors(nats_server: NatsServer) -> None:
    message = finalize("p-1", online=False, decided_at="2025-03-01T00:59:42.004931Z", error="i/o timeout")

    async def body(listener: NatsListener) -> None:
        await publish_finalizes(nats_server.url, [(f"MONITOR-{i}", message) for i in (1, 2, 3)])
        await wait_until(lambda: finalized(listener) == 3)
        assert dict(listener.counters.finalize) == {"opened": 1, "duplicate": 2}

    asyncio.run(with_listener(nats_server.url, body))
    assert event_rows() == [("3", ENDPOINT, 0, at("2025-03-01 00:59:42"), None, "p-1", None)]
    assert MemberEvent.objects.get().error == "i/o timeout"


def test_it_leaves_no_phantom_open_outage_when_the_online_comes_first(nats_server: NatsServer) -> None:
    async def body(listener: NatsListener) -> None:
        await publish_finalizes(
            nats_server.url,
            [
                ("MONITOR-1", finalize("on", online=True, decided_at="2025-03-01T01:05:00Z")),
                ("MONITOR-2", finalize("off", online=False, decided_at="2025-03-01T01:00:00Z")),
            ],
        )
        await wait_until(lambda: finalized(listener) == 2)

    asyncio.run(with_listener(nats_server.url, body))
    # Recorded closed from its offline to its online: nothing left open.
    assert event_rows() == [("3", ENDPOINT, 1, at("2025-03-01 01:00:00"), at("2025-03-01 01:05:00"), "off", "on")]
    assert MemberEvent.objects.filter(end_time__isnull=True).count() == 0


def test_it_writes_a_second_row_for_a_second_outage_and_keeps_the_first(nats_server: NatsServer) -> None:
    async def body(listener: NatsListener) -> None:
        await publish_finalizes(
            nats_server.url,
            [
                ("MONITOR-1", finalize("a", online=False, decided_at="2025-03-01T01:00:00.5Z")),
                ("MONITOR-1", finalize("b", online=True, decided_at="2025-03-01T01:20:00Z")),
                ("MONITOR-2", finalize("c", online=False, decided_at="2025-03-02T08:00:00Z")),
                ("MONITOR-2", finalize("d", online=True, decided_at="2025-03-02T08:03:10.999Z")),
            ],
        )
        await wait_until(lambda: finalized(listener) == 4)

    asyncio.run(with_listener(nats_server.url, body))
    assert event_rows() == [
        ("3", ENDPOINT, 1, at("2025-03-01 01:00:00"), at("2025-03-01 01:20:00"), "a", "b"),
        ("3", ENDPOINT, 1, at("2025-03-02 08:00:00"), at("2025-03-02 08:03:10"), "c", "d"),
    ]


def test_it_closes_a_legacy_endpoint_text_row_with_a_numeric_identity(nats_server: NatsServer) -> None:
    MemberEvent.objects.create(
        check_type="endpoint",
        check_name="wss",
        endpoint=ENDPOINT,
        domain_name="rpc.dotters.network",
        member_name="Alpha Nodes",
        is_ipv6=0,
        status=0,
        start_time=at("2025-02-27 10:00:00"),
    )

    async def body(listener: NatsListener) -> None:
        await publish_finalizes(
            nats_server.url, [("MONITOR-1", finalize("up", online=True, decided_at="2025-03-01T01:00:00Z"))]
        )
        await wait_until(lambda: finalized(listener) == 1)
        assert dict(listener.counters.finalize) == {"closed": 1}

    asyncio.run(with_listener(nats_server.url, body))
    assert event_rows() == [("endpoint", ENDPOINT, 1, at("2025-02-27 10:00:00"), at("2025-03-01 01:00:00"), None, "up")]


def test_it_stores_votes_seen_before_the_finalize(nats_server: NatsServer) -> None:
    message = finalize("v-1", online=False, decided_at="2025-03-01T00:00:00Z")

    async def body(listener: NatsListener) -> None:
        nc = await peer(nats_server.url, "MONITOR-EU-1")
        await nc.publish("consensus.propose", message.proposal.to_json())
        for voter, agree in (("MONITOR-EU-1", True), ("MONITOR-US-2", True), ("MONITOR-AS-3", False)):
            vote = {
                "ProposalID": "v-1",
                "SenderNodeID": voter,
                "NodeID": voter,
                "Agree": agree,
                "Timestamp": "2025-03-01T00:00:00Z",
            }
            await nc.publish("consensus.vote", json.dumps(vote).encode())
        await nc.publish(SUBJECT_FINALIZE, message.to_json())
        await nc.drain()
        await wait_until(lambda: finalized(listener) == 1)

    asyncio.run(with_listener(nats_server.url, body))
    assert MemberEvent.objects.get().vote_data == {"MONITOR-AS-3": False, "MONITOR-EU-1": True, "MONITOR-US-2": True}


# --- presence --------------------------------------------------------------------------------


def test_it_joins_answers_a_newcomer_and_persists_the_node_table(nats_server: NatsServer) -> None:
    async def body(listener: NatsListener) -> list[dict[str, Any]]:
        nc = await peer(nats_server.url, "OBSERVER")
        joins: list[dict[str, Any]] = []

        async def on_join(msg: Any) -> None:
            joins.append(json.loads(msg.data))

        await nc.subscribe(SUBJECT_CLUSTER, cb=on_join)
        await nc.flush()
        newcomer = {
            "type": "join",
            "sender": {
                "NodeID": "node-7",
                "PublicAddress": "198.51.100.7",
                "ListenAddress": "0.0.0.0",
                "ListenPort": "0",
                "NodeRole": "IBPDns",
                "LastHeard": "2025-03-14T09:00:02.417305121Z",
            },
            "members": None,
        }
        await nc.publish(SUBJECT_CLUSTER, json.dumps(newcomer).encode())
        await nc.flush()
        await wait_until(lambda: any(j["sender"]["NodeID"] == "COLLATOR-TEST" for j in joins))
        await wait_until_db(lambda: ClusterNode.objects.filter(node_id="node-7").exists())
        assert listener.active_count("IBPDns") == 1
        await nc.drain()
        return joins

    joins = asyncio.run(with_listener(nats_server.url, body))
    reply = next(j for j in joins if j["sender"]["NodeID"] == "COLLATOR-TEST")
    assert reply["type"] == "join" and reply["members"] is None
    assert {k: v for k, v in reply["sender"].items() if k != "LastHeard"} == {
        "NodeID": "COLLATOR-TEST",
        "PublicAddress": "",
        "ListenAddress": "0.0.0.0",
        "ListenPort": "0",
        "NodeRole": "IBPCollator",
    }
    node = ClusterNode.objects.get(node_id="node-7")
    assert (node.node_role, node.public_address, node.announced_last_heard) == (
        "IBPDns",
        "198.51.100.7",
        at("2025-03-14 09:00:02"),
    )


# --- usage -----------------------------------------------------------------------------------

DAY = "2025-03-14"


def record(hits: int, **fields: Any) -> dict[str, Any]:
    base = {
        "date": f"{DAY}T00:00:00Z",
        "domain": "rpc.dotters.network",
        "member": "Alpha Nodes",
        "code": "DE",
        "asn": "AS3320",
        "network": "Deutsche Telekom AG",
        "country": "Germany",
    }
    base.update(fields)
    return {**base, "hits": hits}


def usage_rows() -> list[tuple[object, ...]]:
    return list(
        RequestStat.objects.order_by("date", "node_id", "domain_name", "network_asn", "is_ipv6").values_list(
            "date",
            "node_id",
            "domain_name",
            "member_name",
            "network_asn",
            "network_name",
            "country_code",
            "is_ipv6",
            "hits",
        )
    )


async def round_with(url: str, nodes: list[ScriptedDnsNode], rounds: int = 1, **overrides: Any) -> list[Any]:
    async def body(listener: NatsListener) -> list[Any]:
        for node in nodes:
            await node.start(url)
        await wait_until(lambda: listener.active_count("IBPDns") == len(nodes))
        results = []
        for _ in range(rounds):
            results.append(await listener.collect_usage(days=(date.fromisoformat(DAY),)))
        for node in nodes:
            await node.stop()
        return results

    return await with_listener(url, body, **overrides)


def test_it_keeps_one_row_per_node_and_the_sum_is_their_total(nats_server: NatsServer) -> None:
    nodes = [
        ScriptedDnsNode("DNS-01", lambda day: usage_reply("DNS-01", [record(1520)])),
        ScriptedDnsNode("DNS-02", lambda day: usage_reply("DNS-02", [record(480)])),
    ]
    [result] = asyncio.run(round_with(nats_server.url, nodes))
    assert (result.dates, result.nodes) == ({date(2025, 3, 14)}, {"DNS-01", "DNS-02"})
    d = date(2025, 3, 14)
    assert usage_rows() == [
        (d, "DNS-01", "rpc.dotters.network", "Alpha Nodes", "AS3320", "Deutsche Telekom AG", "DE", 0, 1520),
        (d, "DNS-02", "rpc.dotters.network", "Alpha Nodes", "AS3320", "Deutsche Telekom AG", "DE", 0, 480),
    ]
    # 1520 + 480 = 2000 queries for the day.
    assert sum(r[-1] for r in usage_rows()) == 2000


def test_it_replaces_on_a_repeated_round_and_never_adds(nats_server: NatsServer) -> None:
    answers = iter(
        [
            [record(10), record(3, domain="polkadot.dotters.network")],
            [record(15), record(3, domain="polkadot.dotters.network")],
        ]
    )
    node = ScriptedDnsNode("DNS-01", lambda day: usage_reply("DNS-01", next(answers)))
    first, second = asyncio.run(round_with(nats_server.url, [node], rounds=2))
    assert (first.stored.rows_written, second.stored.rows_written, second.stored.rows_unchanged) == (2, 1, 1)
    assert [(r[2], r[-1]) for r in usage_rows()] == [("polkadot.dotters.network", 3), ("rpc.dotters.network", 15)]


def test_it_stores_an_empty_asn_as_empty_and_repeated_rounds_keep_one_row(nats_server: NatsServer) -> None:
    hits = iter([7, 7, 9])
    node = ScriptedDnsNode(
        "DNS-01",
        lambda day: usage_reply(
            "DNS-01",
            [
                record(
                    next(hits),
                    domain="Polkadot.Dotters.Network.",
                    member="(none)",
                    code="??",
                    asn="",
                    network="",
                    country="Unknown",
                    ipv6=True,
                )
            ],
        ),
    )
    asyncio.run(round_with(nats_server.url, [node], rounds=3))
    assert usage_rows() == [(date(2025, 3, 14), "DNS-01", "polkadot.dotters.network", "(none)", "", "", "??", 1, 9)]
    assert RequestStat.objects.get().country_name == "Unknown"


def test_it_normalises_asn_country_code_and_domain(nats_server: NatsServer) -> None:
    node = ScriptedDnsNode(
        "DNS-01",
        lambda day: usage_reply(
            "DNS-01",
            [
                record(5, domain="RPC.dotters.network:443", asn="as3320", code="de"),
                record(6, domain="rpc.dotters.network.", asn="3320"),
            ],
        ),
    )
    asyncio.run(round_with(nats_server.url, [node]))
    # Both spell the same key once normalised: the node's two counters add up, 5 + 6 = 11.
    assert usage_rows() == [
        (
            date(2025, 3, 14),
            "DNS-01",
            "rpc.dotters.network",
            "Alpha Nodes",
            "AS3320",
            "Deutsche Telekom AG",
            "DE",
            0,
            11,
        )
    ]


def test_it_rejects_garbage_wrong_types_and_a_2_mib_reply_and_keeps_going(nats_server_large: NatsServer) -> None:
    url = nats_server_large.url
    huge = usage_reply("DNS-HUGE", [record(i, domain=f"d{i}.example.net") for i in range(12_000)])
    assert len(huge) > 2 * 1024 * 1024
    nodes = [
        ScriptedDnsNode("DNS-GARBAGE", lambda day: b'{"nodeID":"DNS-GARBAGE","usageRecords":[{"hits":'),
        ScriptedDnsNode(
            "DNS-TYPES", lambda day: b'{"nodeID":"DNS-TYPES","usageRecords":[{"date":"2025-03-14","hits":"12"}]}'
        ),
        ScriptedDnsNode("DNS-HUGE", lambda day: huge),
        ScriptedDnsNode(
            "DNS-ERROR",
            lambda day: b'{"nodeID":"DNS-ERROR","usageRecords":[],"error":"StartDate must be before or equal to EndDate"}',
        ),
        ScriptedDnsNode("DNS-GOOD", lambda day: usage_reply("DNS-GOOD", [record(42)])),
    ]

    async def body(listener: NatsListener) -> None:
        for node in nodes:
            await node.start(url)
        await wait_until(lambda: listener.active_count("IBPDns") == 5)
        result = await listener.collect_usage(days=(date(2025, 3, 14),))
        assert sorted(result.replied[date(2025, 3, 14)]) == ["DNS-ERROR", "DNS-GOOD"]
        assert result.node_errors == {"DNS-ERROR": "StartDate must be before or equal to EndDate"}
        # Garbage on the consensus subjects too; then a good finalize is still applied.
        nc = await peer(url, "MONITOR-1")
        await nc.publish(SUBJECT_FINALIZE, b"\x00not json")
        await nc.publish(SUBJECT_FINALIZE, b'{"Proposal":{"ID":"x","ProposedStatus":"false"},"Passed":true}')
        await nc.publish(SUBJECT_USAGE_DATA, b"[1,2,3]")
        await nc.publish(SUBJECT_FINALIZE, finalize("ok", online=False, decided_at="2025-03-01T00:00:00Z").to_json())
        await nc.drain()
        await wait_until(lambda: finalized(listener) == 1)
        assert dict(listener.counters.rejects) == {
            "invalid_json": 2,
            "wrong_type": 3,
            "oversized": 1,
            "node_error": 1,
        }
        for node in nodes:
            await node.stop()

    asyncio.run(with_listener(url, body, reply_timeout=2.0))
    assert usage_rows() == [
        (
            date(2025, 3, 14),
            "DNS-GOOD",
            "rpc.dotters.network",
            "Alpha Nodes",
            "AS3320",
            "Deutsche Telekom AG",
            "DE",
            0,
            42,
        )
    ]
    assert event_rows() == [("3", ENDPOINT, 0, at("2025-03-01 00:00:00"), None, "ok", None)]


def test_it_stores_unsolicited_usage_data(nats_server: NatsServer) -> None:
    async def body(listener: NatsListener) -> None:
        nc = await peer(nats_server.url, "DNS-09")
        await nc.publish(SUBJECT_USAGE_DATA, usage_reply("DNS-09", [record(77)]))
        await nc.drain()
        await wait_until_db(lambda: RequestStat.objects.exists())

    asyncio.run(with_listener(nats_server.url, body))
    assert [(r[1], r[-1]) for r in usage_rows()] == [("DNS-09", 77)]


def test_it_stores_the_rest_of_a_reply_and_counts_each_refused_record(nats_server: NatsServer) -> None:
    """The tester's EVIL-DNS reply: a record dated 9999-12-31 was stored (and became
    /api/health's last usage date); `AUT` was stored as `AU`, Australia, next to Austria."""
    clock = SettableClock(at("2025-03-14 12:00:00"))
    reply = usage_reply(
        "EVIL-DNS",
        [
            record(1, date="9999-12-31"),
            record(2, date="2025-03-16T00:00:00Z"),
            record(3, code="AUT", country="Austria"),
            record(4, member="m" * 129),
            record(5),
        ],
    )

    async def body(listener: NatsListener) -> None:
        nc = await peer(nats_server.url, "EVIL-DNS")
        await nc.publish(SUBJECT_USAGE_DATA, reply)
        await nc.drain()
        await wait_until_db(lambda: RequestStat.objects.exists())
        await wait_until(lambda: sum(listener.counters.rejects.values()) == 4)
        assert dict(listener.counters.rejects) == {
            "date_in_future": 2,
            "invalid_country_code": 1,
            "member_name_too_long": 1,
        }

    asyncio.run(with_listener(nats_server.url, body, clock=clock))
    assert [(r[1], r[-1]) for r in usage_rows()] == [("EVIL-DNS", 5)]


def test_it_rejects_and_counts_a_finalize_without_decided_at_and_keeps_going(nats_server: NatsServer) -> None:
    """A missing DecidedAt decodes to Go's zero time; it must not open an outage at 0001-01-01."""
    good = finalize("good", online=False, decided_at="2025-03-01T00:00:00Z")
    undated = finalize("undated", online=False, decided_at="2025-03-01T00:00:00Z").to_json()
    undated = undated.replace(b',"DecidedAt":"2025-03-01T00:00:00Z"', b"")
    assert b"DecidedAt" not in undated

    async def body(listener: NatsListener) -> None:
        nc = await peer(nats_server.url, "MONITOR-1")
        await nc.publish(SUBJECT_FINALIZE, undated)
        await nc.publish(SUBJECT_FINALIZE, good.to_json())
        await nc.drain()
        await wait_until(lambda: finalized(listener) == 1)
        assert dict(listener.counters.rejects) == {"missing_decided_at": 1}
        assert dict(listener.counters.finalize) == {"opened": 1}

    asyncio.run(with_listener(nats_server.url, body))
    assert event_rows() == [("3", ENDPOINT, 0, at("2025-03-01 00:00:00"), None, "good", None)]


def test_it_refuses_and_counts_a_finalize_decided_in_the_future_and_keeps_the_real_outage(
    nats_server: NatsServer,
) -> None:
    """An offline dated 2030 used to open a row that swallowed the real 06:00–06:30 outage."""
    clock = SettableClock(at("2026-12-04 06:45:00"))
    messages = [
        finalize("evil", online=False, decided_at="2030-01-01T00:00:00Z"),
        finalize("off", online=False, decided_at="2026-12-04T06:00:00Z"),
        finalize("on", online=True, decided_at="2026-12-04T06:30:00Z"),
    ]

    async def body(listener: NatsListener) -> None:
        await publish_finalizes(nats_server.url, [("MONITOR-1", m) for m in messages])
        await wait_until(lambda: finalized(listener) == 2)
        assert dict(listener.counters.rejects) == {"decided_in_future": 1}
        assert dict(listener.counters.finalize) == {"opened": 1, "closed": 1}

    asyncio.run(with_listener(nats_server.url, body, clock=clock))
    assert event_rows() == [("3", ENDPOINT, 1, at("2026-12-04 06:00:00"), at("2026-12-04 06:30:00"), "off", "on")]


def test_it_keeps_an_outage_whose_error_text_is_longer_than_the_column(nats_server: NatsServer) -> None:
    """100,000 bytes of ErrorText were a db_error (Data too long) and the outage was lost;
    a finalize of 70,000 emoji (280,000 bytes of UTF-8) went past the 256 KiB cap of the
    consensus subjects and was refused as oversized. Both outages are kept, the text cut to fit."""
    offline = finalize("big", online=False, decided_at="2025-03-01T00:00:00Z", error="e" * 100_000)
    emoji = finalize(
        "emoji", online=False, decided_at="2025-03-01T00:00:00Z", member="Beta", error="\U0001f600" * 70_000
    )
    assert 256 * 1024 < len(emoji.to_json()) < 1024 * 1024

    async def body(listener: NatsListener) -> None:
        await publish_finalizes(nats_server.url, [("MONITOR-1", offline), ("MONITOR-1", emoji)])
        await wait_until(lambda: finalized(listener) == 2)
        assert dict(listener.counters.rejects) == {}
        assert dict(listener.counters.finalize) == {"opened": 2}

    asyncio.run(with_listener(nats_server.url, body))
    errors = dict(MemberEvent.objects.values_list("member_name", "error"))
    assert sorted(errors) == ["Alpha Nodes", "Beta"]
    assert (len(errors["Alpha Nodes"].encode()), errors["Alpha Nodes"][-2:]) == (65_535, "e…")
    # 16,383 emoji are 65,532 bytes; with the 3-byte mark, 65,535.
    assert (len(errors["Beta"].encode()), errors["Beta"]) == (65_535, "\U0001f600" * 16_383 + "…")


def test_it_counts_over_long_identity_fields_as_rejects_not_db_errors(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    long_fields = [
        finalize("c", online=False, decided_at="2025-03-01T00:00:00Z", check_name="c" * 65),
        finalize("m", online=False, decided_at="2025-03-01T00:00:00Z", member="m" * 129),
        finalize("d", online=False, decided_at="2025-03-01T00:00:00Z", domain="d" * 129),
        finalize("e", online=False, decided_at="2025-03-01T00:00:00Z", endpoint="wss://x/" + "k" * 249),
    ]
    good = finalize("good", online=False, decided_at="2025-03-01T00:00:00Z")

    async def body(listener: NatsListener) -> None:
        await publish_finalizes(nats_server.url, [("MONITOR-1", m) for m in [*long_fields, good]])
        await wait_until(lambda: finalized(listener) == 1)
        assert dict(listener.counters.rejects) == {
            "check_name_too_long": 1,
            "member_name_too_long": 1,
            "domain_name_too_long": 1,
            "endpoint_too_long": 1,
        }

    with caplog.at_level(logging.WARNING):
        asyncio.run(with_listener(nats_server.url, body))
    assert event_rows() == [("3", ENDPOINT, 0, at("2025-03-01 00:00:00"), None, "good", None)]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_it_counts_a_decided_at_out_of_range_in_utc_as_invalid_time(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Year 10000 and year 0 in UTC were an OverflowError, counted as db_error at ERROR level;
    Arabic-Indic digits were read as 2026."""
    good = finalize("good", online=False, decided_at="2025-03-01T00:00:00Z")
    wire = good.to_json()
    out_of_range = [
        wire.replace(b'"DecidedAt":"2025-03-01T00:00:00Z"', f'"DecidedAt":"{text}"'.encode())
        for text in (
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "\u0662\u0660\u0662\u0666-12-04T08:00:00Z",
        )
    ]
    assert all(message.count(b"2025-03-01T00:00:00Z") == 1 for message in out_of_range)  # the Timestamp

    async def body(listener: NatsListener) -> None:
        nc = await peer(nats_server.url, "MONITOR-1")
        for message in [*out_of_range, wire]:
            await nc.publish(SUBJECT_FINALIZE, message)
        await nc.drain()
        await wait_until(lambda: finalized(listener) == 1)
        assert dict(listener.counters.rejects) == {"invalid_time": 3}

    with caplog.at_level(logging.WARNING):
        asyncio.run(with_listener(nats_server.url, body))
    assert event_rows() == [("3", ENDPOINT, 0, at("2025-03-01 00:00:00"), None, "good", None)]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def collator_join(last_heard: str) -> bytes:
    """The collator's join byte for byte, as nats-protocol §5.1 shows it."""
    return (
        '{"type":"join","sender":{"NodeID":"COLLATOR-TEST","PublicAddress":"","ListenAddress":"0.0.0.0",'
        f'"ListenPort":"0","NodeRole":"IBPCollator","LastHeard":"{last_heard}"}},"members":null}}'
    ).encode()


def test_it_joins_at_start_up_and_then_on_every_heartbeat(nats_server: NatsServer) -> None:
    clock = SettableClock(datetime(2025, 3, 14, 9, 0, 2, 417305, tzinfo=UTC))
    heard: list[tuple[float, bytes]] = []

    async def run() -> None:
        observer = await peer(nats_server.url, "OBSERVER")

        async def on_cluster(msg: Any) -> None:
            heard.append((time.monotonic(), msg.data))

        await observer.subscribe(SUBJECT_CLUSTER, cb=on_cluster)
        await observer.flush()

        async def body(listener: NatsListener) -> None:
            await wait_until(lambda: len(heard) == 1)
            clock.now = datetime(2025, 3, 14, 9, 1, 32, tzinfo=UTC)
            await wait_until(lambda: len(heard) >= 3)

        await with_listener(nats_server.url, body, clock=clock, heartbeat_seconds=0.5)
        await observer.drain()

    asyncio.run(run())
    # The join at start-up carries the start time; each heartbeat the time it was sent.
    assert [data for _, data in heard[:3]] == [
        collator_join("2025-03-14T09:00:02.417305Z"),
        collator_join("2025-03-14T09:01:32Z"),
        collator_join("2025-03-14T09:01:32Z"),
    ]
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(heard[:3])]
    assert all(0.4 < gap < 1.5 for gap in gaps), gaps


def test_it_warns_when_its_node_id_looks_like_another_role(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Peers guess roles from IDs (nats-protocol §3, §6.2): `dns` or `monitor` in ours misleads them."""

    async def body(listener: NatsListener) -> None:
        return None

    with caplog.at_level(logging.WARNING, logger="metrics.listener"):
        asyncio.run(with_listener(nats_server.url, body, node_id="Collator-DNS-Monitor-1"))
        asyncio.run(with_listener(nats_server.url, body, node_id="COLLATOR-02"))

    warnings = [r.getMessage() for r in caplog.records if "event=node_id_warning" in r.getMessage()]
    assert warnings == [
        "event=node_id_warning node_id=Collator-DNS-Monitor-1 contains=monitor reason=peers_guess_roles_from_node_ids",
        "event=node_id_warning node_id=Collator-DNS-Monitor-1 contains=dns reason=peers_guess_roles_from_node_ids",
    ]


class _RunningClock:
    """Our clock, started at `start` and running at the real pace."""

    def __init__(self, start: datetime) -> None:
        self.start, self.started = start, time.monotonic()

    def __call__(self) -> datetime:
        from datetime import timedelta

        return self.start + timedelta(seconds=time.monotonic() - self.started)


def test_it_collects_usage_on_the_hour_for_today_and_yesterday(nats_server: NatsServer) -> None:
    """The listener starts at 00:59:59.2 on 15 March: nothing is asked at start-up, and at
    01:00:00 one round asks for 15 March and 14 March, each its own request."""
    clock = _RunningClock(at("2025-03-15 00:59:59.2"))
    node = ScriptedDnsNode("DNS-01", lambda day: usage_reply("DNS-01", [record(7, date=f"{day}T00:00:00Z")]))

    async def body(listener: NatsListener) -> tuple[list[str], list[tuple[date, ...]]]:
        await node.start(nats_server.url)
        await wait_until(lambda: listener.active_count("IBPDns") == 1)
        assert node.requests == []  # not at start-up
        await wait_until(lambda: len(listener.last_rounds) == 1, timeout=5)
        await asyncio.sleep(0.5)  # and only once for this hour
        await node.nc.drain()
        return sorted(node.requests), [r.days for r in listener.last_rounds]

    requests, rounds = asyncio.run(with_listener(nats_server.url, body, clock=clock, collect_usage_hourly=True))
    assert requests == ["2025-03-14", "2025-03-15"]
    assert rounds == [(date(2025, 3, 15), date(2025, 3, 14))]
    assert sorted(RequestStat.objects.values_list("date", "hits")) == [(date(2025, 3, 14), 7), (date(2025, 3, 15), 7)]
