"""The wire format against Go's encoding/json: table-driven, no DB."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import metrics.protocol as protocol_module
from metrics.protocol import (
    ClusterMessage,
    FinalizeMessage,
    GoTime,
    Proposal,
    ProtocolError,
    UsageRequest,
    UsageResponse,
    Vote,
    decode_usage_reply,
    go_float,
    go_json,
    go_string,
    parse_usage_date,
    usage_reply_fold,
)

# A finalize as a Go monitor (NEW) writes it: nanoseconds, a +02:00 zone (Go keeps the zone
# the time was parsed in), Data with nested numbers re-encoded by Go (sorted keys, whole
# floats without ".0", an exponent below 1e-6), and HTML-escaped text.
GO_FINALIZE = (
    b'{"Proposal":{"ID":"5b0c6f7e-2d0a-4c1e-9a53-2f7d8f1c9b10","SenderNodeID":"MONITOR-EU-1",'
    b'"CheckType":"endpoint","CheckName":"ethrpc","MemberName":"Alpha \\u0026 Nodes",'
    b'"DomainName":"rpc.dotters.network","Endpoint":"https://rpc.dotters.network/ethereum",'
    b'"ProposedStatus":false,"ErrorText":"IP=203.0.113.10 =\\u003e \\u003cb\\u003etimeout\\u003c/b\\u003e",'
    b'"Data":{"blockNumber":21000000,"latency":{"p50":0.25,"p99":1.5e-7,"samples":[1,2.5,-0]},'
    b'"network":"Ethereum","syncing":false},"IsIPv6":true,"Timestamp":"2025-03-01T02:59:41.118204123+02:00"},'
    b'"SenderNodeID":"MONITOR-US-2","Passed":true,"DecidedAt":"2025-03-01T00:59:42.00493Z"}'
)


def test_it_round_trips_a_go_formatted_finalize_byte_for_byte() -> None:
    message = FinalizeMessage.from_json(GO_FINALIZE)
    assert message.to_json() == GO_FINALIZE
    assert message.proposal.member_name == "Alpha & Nodes"
    assert message.proposal.timestamp.utc == datetime(2025, 3, 1, 0, 59, 41, 118204, tzinfo=UTC)
    assert message.proposal.timestamp.nanosecond == 118204123
    assert message.decided_at.utc == datetime(2025, 3, 1, 0, 59, 42, 4930, tzinfo=UTC)
    assert message.proposal.data == {
        "blockNumber": 21000000.0,
        "latency": {"p50": 0.25, "p99": 1.5e-7, "samples": [1.0, 2.5, -0.0]},
        "network": "Ethereum",
        "syncing": False,
    }
    assert message.decider == "MONITOR-US-2"


SPEC_EXAMPLES = [
    (
        ClusterMessage,
        b'{"type":"join","sender":{"NodeID":"COLLATOR-01","PublicAddress":"","ListenAddress":"0.0.0.0",'
        b'"ListenPort":"0","NodeRole":"IBPCollator","LastHeard":"2025-03-14T09:00:02.417305121Z"},"members":null}',
    ),
    (
        Proposal,
        b'{"ID":"0f1e2d3c-4b5a-4697-8877-665544332211","SenderNodeID":"MONITOR-EU-1","CheckType":"site",'
        b'"CheckName":"ping","MemberName":"Alpha Nodes","DomainName":"","Endpoint":"","ProposedStatus":false,'
        b'"ErrorText":"PingCheck: avgRtt=912ms, loss=40%","Data":{"AvgRtt":912,"MaxRtt":1544,"MinRtt":301,'
        b'"PacketLoss":40,"StdDevRtt":210},"IsIPv6":false,"Timestamp":"2025-02-28T22:59:58Z"}',
    ),
    (
        Vote,
        b'{"ProposalID":"5b0c6f7e-2d0a-4c1e-9a53-2f7d8f1c9b10","SenderNodeID":"MONITOR-US-2",'
        b'"NodeID":"MONITOR-US-2","Agree":true,"Timestamp":"2025-03-01T00:59:41.52Z"}',
    ),
    (
        FinalizeMessage,
        b'{"Proposal":{"ID":"5b0c6f7e-2d0a-4c1e-9a53-2f7d8f1c9b10","SenderNodeID":"MONITOR-EU-1",'
        b'"CheckType":"endpoint","CheckName":"wss","MemberName":"Alpha Nodes","DomainName":"rpc.dotters.network",'
        b'"Endpoint":"wss://rpc.dotters.network/kusama","ProposedStatus":false,"ErrorText":"Failed to connect on '
        b'IP=203.0.113.10 =\\u003e dial tcp 203.0.113.10:443: i/o timeout","Data":null,"IsIPv6":false,'
        b'"Timestamp":"2025-03-01T00:59:41.118204Z"},"Passed":true,"DecidedAt":"2025-03-01T00:59:42.004931Z"}',
    ),
    (UsageRequest, b'{"startDate":"2025-03-14","endDate":"2025-03-14","domain":"","memberName":"","country":""}'),
    (
        UsageResponse,
        b'{"nodeID":"DNS-01","usageRecords":[{"nodeid":"","date":"2025-03-14T00:00:00Z","domain":"rpc.dotters.network",'
        b'"memberName":"Alpha Nodes","countryCode":"DE","asn":"AS3320","networkName":"Deutsche Telekom AG",'
        b'"countryName":"Germany","hits":1520,"isIPv6":false}]}',
    ),
    (UsageResponse, b'{"nodeID":"DNS-02","usageRecords":null}'),
    (
        UsageResponse,
        b'{"nodeID":"DNS-03","usageRecords":[],"error":"StartDate must be before or equal to EndDate"}',
    ),
]


@pytest.mark.parametrize(("kind", "wire"), SPEC_EXAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_it_round_trips_the_spec_examples(kind: type, wire: bytes) -> None:
    assert kind.from_json(wire).to_json() == wire


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (850.0, "850"),
        (0.1, "0.1"),
        (-0.0, "-0"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (123456789.125, "123456789.125"),
        (2.0**64, "18446744073709552000"),
        (5e-324, "5e-324"),
    ],
)
def test_it_formats_floats_as_go_does(number: float, text: str) -> None:
    assert go_float(number) == text


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a<b>&c", '"a\\u003cb\\u003e\\u0026c"'),
        ('quote " and \\', '"quote \\" and \\\\"'),
        ("\n\r\t\b\f\x01\x1f", '"\\n\\r\\t\\b\\f\\u0001\\u001f"'),
        ("\u2028\u2029", '"\\u2028\\u2029"'),
        ("Türk é 東京", '"Türk é 東京"'),
    ],
)
def test_it_escapes_strings_as_go_does(text: str, escaped: str) -> None:
    assert go_string(text) == escaped


def test_it_sorts_map_keys_by_bytes() -> None:
    assert go_json({"b": 1, "B": 2.0, "a": None, "é": True}) == '{"B":2,"a":null,"b":1,"é":true}'


@pytest.mark.parametrize(
    ("text", "utc", "nanos", "formatted"),
    [
        ("2025-03-01T00:00:00Z", datetime(2025, 3, 1, tzinfo=UTC), 0, "2025-03-01T00:00:00Z"),
        (
            "2025-03-01T01:00:00.12Z",
            datetime(2025, 3, 1, 1, 0, 0, 120000, tzinfo=UTC),
            120000000,
            "2025-03-01T01:00:00.12Z",
        ),
        (
            "2025-03-01T01:00:00.100000000Z",
            datetime(2025, 3, 1, 1, 0, 0, 100000, tzinfo=UTC),
            100000000,
            "2025-03-01T01:00:00.1Z",
        ),
        (
            "2025-03-01T02:30:00.000000001+02:30",
            datetime(2025, 3, 1, 0, 0, tzinfo=UTC),
            1,
            "2025-03-01T02:30:00.000000001+02:30",
        ),
        ("2025-02-28T19:00:00-05:00", datetime(2025, 3, 1, 0, 0, tzinfo=UTC), 0, "2025-02-28T19:00:00-05:00"),
        ("2025-03-01T00:00:00+00:00", datetime(2025, 3, 1, tzinfo=UTC), 0, "2025-03-01T00:00:00Z"),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC), 0, "0001-01-01T00:00:00Z"),
        # The edges of what a datetime holds in UTC, from either side.
        ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, 1, tzinfo=UTC), 0, "0001-01-01T00:00:00-01:00"),
        (
            "9999-12-31T23:59:59.999999999Z",
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            999999999,
            "9999-12-31T23:59:59.999999999Z",
        ),
        ("9999-12-31T23:59:59+01:00", datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC), 0, "9999-12-31T23:59:59+01:00"),
    ],
)
def test_it_parses_and_formats_go_times(text: str, utc: datetime, nanos: int, formatted: str) -> None:
    parsed = GoTime.parse(text)
    assert (parsed.utc, parsed.nanosecond, parsed.format()) == (utc, nanos, formatted)


@pytest.mark.parametrize(
    "text",
    [
        "2025-03-01 00:00:00Z",
        "2025-03-01T00:00:00",
        "2025-03-01T00:00:00.Z",
        "2025-03-01T00:00:00.1234567891Z",
        "2025-02-30T00:00:00Z",
        "2025-03-01T00:00:00+24:00",
        # Digits of other scripts (here Arabic-Indic) are not digits to Go.
        "\u0662\u0660\u0662\u0666-12-04T08:00:00Z",
        "2026-12-04T08:00:00.\u0661Z",
        "2026-12-04T08:00:00+\u0660\u0661:00",
        # Out of range once in UTC (year 10000, year 0): they were an OverflowError, later.
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_it_refuses_times_go_refuses(text: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        GoTime.parse(text)
    assert raised.value.reason == "invalid_time"


def test_it_formats_a_time_in_its_own_zone() -> None:
    moment = datetime(2025, 3, 1, 1, 0, 0, 500000, tzinfo=timezone(timedelta(hours=1)))
    assert GoTime.from_datetime(moment).format() == "2025-03-01T01:00:00.5+01:00"


def test_it_matches_keys_case_insensitively_ignores_unknown_ones_and_reads_null_as_empty() -> None:
    vote = Vote.from_json(
        b'{"proposalid":"p","SENDERNODEID":"m","nodeId":null,"Agree":true,"Extra":[1],"Timestamp":null}'
    )
    assert vote == Vote(proposal_id="p", sender_node_id="m", node_id="", agree=True)
    assert vote.timestamp.is_zero
    reply = decode_usage_reply(b'{"NODEID":"DNS-01","UsageRecords":[{"NodeID":"","Hits":5,"DATE":"2025-03-14"}]}')
    assert (reply.node_id, reply.records) == ("DNS-01", [("", "2025-03-14", "", "", "", "", "", "", 5, False)])


@pytest.mark.parametrize(
    ("kind", "wire", "reason"),
    [
        (FinalizeMessage, b"not json", "invalid_json"),
        (FinalizeMessage, b'{"Passed":true', "invalid_json"),
        (FinalizeMessage, b"[]", "wrong_type"),
        (FinalizeMessage, b'{"Passed":"true"}', "wrong_type"),
        (FinalizeMessage, b'{"Proposal":{"ProposedStatus":"false"}}', "wrong_type"),
        (FinalizeMessage, b'{"Proposal":{"ID":5}}', "wrong_type"),
        (FinalizeMessage, b'{"Proposal":{"Data":[1]}}', "wrong_type"),
        (FinalizeMessage, b'{"DecidedAt":"yesterday"}', "invalid_time"),
        (FinalizeMessage, b'{"DecidedAt":"9999-12-31T23:59:59-01:00"}', "invalid_time"),
        (FinalizeMessage, b'{"Proposal":{"Timestamp":"0001-01-01T00:00:00+01:00"}}', "invalid_time"),
        (FinalizeMessage, '{"DecidedAt":"\u0662\u0660\u0662\u0666-12-04T08:00:00Z"}'.encode(), "invalid_time"),
        (FinalizeMessage, b'{"DecidedAt":1700000000}', "wrong_type"),
        (FinalizeMessage, b'{"Proposal":{"Data":{"x":NaN}}}', "invalid_json"),
        (FinalizeMessage, b'{"Proposal":{"Data":{"x":1e999}}}', "invalid_json"),
        (ClusterMessage, b'{"type":"join","sender":{"ListenPort":0}}', "wrong_type"),
        (UsageResponse, b'{"nodeID":"D","usageRecords":[{"hits":"5"}]}', "wrong_type"),
        (UsageResponse, b'{"nodeID":"D","usageRecords":[{"hits":5.5}]}', "wrong_type"),
        (UsageResponse, b'{"nodeID":"D","usageRecords":[{"isIPv6":"false"}]}', "wrong_type"),
        (UsageResponse, b'{"nodeID":"D","usageRecords":{}}', "wrong_type"),
        (UsageResponse, b'{"nodeID":"D","usageRecords":[5]}', "wrong_type"),
        (UsageResponse, b'{"nodeID":7,"usageRecords":[]}', "wrong_type"),
        (UsageResponse, b'"DNS-01"', "wrong_type"),
    ],
)
def test_it_rejects_what_go_rejects(kind: type, wire: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        kind.from_json(wire)
    assert raised.value.reason == reason


def test_it_accepts_a_whole_float_for_hits_and_counts_it() -> None:
    reply = decode_usage_reply(b'{"nodeID":"D","usageRecords":[{"date":"2025-03-14","hits":5.0}]}')
    assert (reply.records[0][8], reply.float_hits) == (5, 1)


GO_RECORD = (
    b'{"nodeid":"","date":"2025-03-14T00:00:00Z","domain":"rpc.dotters.network","memberName":"Alpha \\u0026 Nodes",'
    b'"countryCode":"DE","asn":"AS3320","networkName":"Deutsche Telekom","countryName":"Germany","hits":1520,'
    b'"isIPv6":true}'
)
GO_ROW = (
    "",
    "2025-03-14T00:00:00Z",
    "rpc.dotters.network",
    "Alpha & Nodes",
    "DE",
    "AS3320",
    "Deutsche Telekom",
    "Germany",
    1520,
    True,
)
# Replies the fast path must hand back to the exact decoder (its result, or its rejection):
# keys in another case, nulls, a whole float, a lone surrogate, invalid UTF-8, a null record,
# a bad record after good ones, an unknown key, garbage, and the reject table's usage cases.
FOLD_CASES = [
    b'{"nodeID":"DNS-01","usageRecords":[' + GO_RECORD + b"]}",
    b'{"nodeID":"DNS-01","usageRecords":[' + GO_RECORD + b"," + GO_RECORD + b'],"error":""}',
    b'{"nodeID":"DNS-02","usageRecords":null}',
    b'{"nodeID":"DNS-02"}',
    b"{}",
    b'{"nodeID":"DNS-03","usageRecords":[],"error":"StartDate must be before or equal to EndDate"}',
    b'{"NODEID":"DNS-01","UsageRecords":[{"NodeID":"","Hits":5,"DATE":"2025-03-14"}]}',
    b'{"nodeID":"D","usageRecords":[' + GO_RECORD + b',{"date":"2025-03-14","Hits":7,"hits":8}]}',
    b'{"nodeID":"D","usageRecords":[' + GO_RECORD + b',{"date":"2025-03-14","hits":5.0}]}',
    b'{"nodeID":"D","usageRecords":[' + GO_RECORD + b',{"date":null,"domain":"x","hits":3}]}',
    b'{"nodeID":"D","usageRecords":[' + GO_RECORD + b",null]}",
    b'{"nodeID":"D","usageRecords":[' + GO_RECORD + b',{"domain":"\\ud800","hits":1}]}',
    b'{"nodeID":"D","usageRecords":[{"domain":"caf\xe9","hits":1}]}',
    b'{"nodeID":"D","usageRecords":[{"domain":"x","hits":1,"extra":[1,{"a":null}]}]}',
    b'{"nodeID":"D","usageRecords":[{"hits":1,"hits":2}]}',
    b'{"nodeID":"D","usageRecords":[{"hits":18446744073709551616}]}',
    b'{"nodeID":"D","nodeid":"E","usageRecords":[]}',
    b'{"nodeID":"D","usageRecords":[' + GO_RECORD + b',{"hits":"5"}]}',
    b'{"nodeID":"D","usageRecords":[' + GO_RECORD + b',{"isIPv6":1}]}',
    b'{"nodeID":"D","usageRecords":[' + GO_RECORD + b",5]}",
    b'{"nodeID":"D","usageRecords":{}}',
    b'{"nodeID":7,"usageRecords":[]}',
    b'{"nodeID":"D","error":null,"usageRecords":[]}',
    b'{"nodeID":"D","usageRecords":[{"hits":NaN}]}',
    b'{"nodeID":"D","usageRecords":[' + GO_RECORD,
    b'{"nodeID":"D","usageRecords":[]} trailing',
    b'\xef\xbb\xbf{"nodeID":"D","usageRecords":[]}',
    b'"DNS-01"',
    b"",
]


def _fold_or_reason(data: bytes) -> tuple[Any, ...]:
    def fold(reply: Any, records: Iterable[tuple[Any, ...]]) -> tuple[Any, ...]:
        return (reply.node_id, reply.error, list(records), reply.float_hits)

    try:
        return usage_reply_fold(data, fold)
    except ProtocolError as exc:
        return ("rejected", exc.reason)


def _exact_or_reason(data: bytes) -> tuple[Any, ...]:
    try:
        reply = decode_usage_reply(data)
    except ProtocolError as exc:
        return ("rejected", exc.reason)
    return (reply.node_id, reply.error, reply.records or [], reply.float_hits)


@pytest.mark.parametrize("wire", FOLD_CASES)
def test_it_folds_a_usage_reply_exactly_as_the_exact_decoder_reads_it(wire: bytes) -> None:
    assert _fold_or_reason(wire) == _exact_or_reason(wire)


@pytest.mark.parametrize("wire", FOLD_CASES)
def test_it_folds_the_same_without_msgspec(wire: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol_module, "msgspec", None)
    assert _fold_or_reason(wire) == _exact_or_reason(wire)


def test_it_takes_a_go_shaped_reply_on_the_fast_path_and_restarts_the_fold_on_a_miss() -> None:
    """A Go-shaped reply folds once; a reply whose third record says `Hits` folds twice,
    the second time from the start, so the result holds each record once."""
    calls: list[int] = []

    def fold(reply: Any, records: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        calls.append(1)
        return list(records)

    go_shaped = b'{"nodeID":"DNS-01","usageRecords":[' + GO_RECORD + b"," + GO_RECORD + b"]}"
    assert usage_reply_fold(go_shaped, fold) == [GO_ROW, GO_ROW]
    assert len(calls) == 1
    calls.clear()
    mixed = b'{"nodeID":"DNS-01","usageRecords":[' + GO_RECORD + b"," + GO_RECORD + b',{"Hits":9}]}'
    assert usage_reply_fold(mixed, fold) == [GO_ROW, GO_ROW, ("", "", "", "", "", "", "", "", 9, False)]
    assert len(calls) == 2


@pytest.mark.parametrize(
    "text", ["2025-03-14T00:00:00Z", "2025-03-14", "2025-03-14 00:00:00", "2025-03-14T00:00:00+02:00"]
)
def test_it_parses_the_three_usage_date_forms(text: str) -> None:
    assert parse_usage_date(text).isoformat() == "2025-03-14"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "14/03/2025",
        "2025-3-14",
        "2025-02-30",
        "\u0662\u0660\u0662\u0665-03-14",
        # The time part was matched with Unicode `\d` and then not looked at again.
        "2025-03-14 \u0660\u0660:\u0660\u0660:\u0660\u0660",
        "9999-12-31T23:00:00-01:00",  # year 10000 in UTC
    ],
)
def test_it_refuses_other_usage_dates(text: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_usage_date(text)
    assert raised.value.reason == "invalid_date"


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (rb'"x\ud800y"', "x\ufffdy"),  # a lone high surrogate
        (rb'"\udc00"', "\ufffd"),  # a lone low one
        (rb'"a\ud83d"', "a\ufffd"),  # a high one at the end
        (rb'"\ud800\ud800\udc00"', "\ufffd\U00010000"),  # a lone high, then a pair
        (rb'"\ud83d\ude00"', "\U0001f600"),  # a pair: one character, kept
        (rb'"\uD83D\uDE00"', "\U0001f600"),
        (rb'"\\ud800"', "\\ud800"),  # an escaped backslash: text, not an escape
        (rb'"\\\ud800"', "\\\ufffd"),  # a backslash, then an escape
    ],
)
def test_it_reads_a_lone_surrogate_escape_as_the_replacement_character(wire: bytes, text: str) -> None:
    """As Go does; Python would give a str that no utf8mb4 column can store."""
    decoded = protocol_module._loads(b'{"ErrorText":' + wire + b"}", numbers_as_float=True)["ErrorText"]

    assert decoded == text
    decoded.encode("utf-8")  # storable


def test_it_compiles_every_pattern_of_the_parser_ascii_only() -> None:
    patterns = {name: value for name, value in vars(protocol_module).items() if isinstance(value, re.Pattern)}
    assert sorted(patterns) == [
        "_DATE_ONLY",
        "_DATE_TIME",
        "_LONE_SURROGATE_ESCAPE",
        "_NEEDS_ESCAPE",
        "_SURROGATE_ESCAPE",
        "_TIME_RE",
    ]
    assert [name for name, pattern in sorted(patterns.items()) if not pattern.flags & re.ASCII] == []


def test_it_writes_the_collator_join_as_the_reference_does() -> None:
    join = ClusterMessage.join(
        node_id="COLLATOR-01", role="IBPCollator", at=datetime(2025, 3, 14, 9, 0, 2, 417305, tzinfo=UTC)
    )
    assert join.to_json() == (
        b'{"type":"join","sender":{"NodeID":"COLLATOR-01","PublicAddress":"","ListenAddress":"0.0.0.0",'
        b'"ListenPort":"0","NodeRole":"IBPCollator","LastHeard":"2025-03-14T09:00:02.417305Z"},"members":null}'
    )
