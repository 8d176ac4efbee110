"""downtime_finalize (nats-protocol §8.6 with DECISIONS 1) and the identity normal forms, on the real DB.

Times in the rows are whole seconds: DecidedAt 00:59:42.004931 is stored as 00:59:42.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from metrics.models import FinalizeApplied, MemberEvent, PendingRecovery
from metrics.protocol import FinalizeMessage
from metrics.services import (
    ERROR_TEXT_MAX_BYTES,
    FinalizeRejected,
    domain_normalise,
    downtime_finalize,
    endpoint_normalise,
    error_text_for_storage,
)
from tests.metrics.finalize_factory import finalize

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def event_rows() -> list[tuple[object, ...]]:
    return list(
        MemberEvent.objects.order_by("id").values_list(
            "check_type", "endpoint", "status", "start_time", "end_time", "proposal_id", "close_proposal_id"
        )
    )


ENDPOINT = "wss://rpc.dotters.network/kusama"


def test_it_writes_one_row_for_the_same_offline_finalize_from_three_monitors() -> None:
    outcomes = [
        downtime_finalize(
            message=finalize("p1", online=False, decided_at=t, sender=s), now=NOW, votes={s: True, "MONITOR-X": False}
        )
        for t, s in [
            ("2025-03-01T00:59:42.004931Z", "MONITOR-EU-1"),
            ("2025-03-01T00:59:42.9Z", "MONITOR-US-2"),
            ("2025-03-01T00:59:43Z", "MONITOR-AS-3"),
        ]
    ]
    assert [o.action for o in outcomes] == ["opened", "duplicate", "duplicate"]
    assert [o.opened for o in outcomes] == [True, False, False]
    assert event_rows() == [("3", ENDPOINT, 0, at("2025-03-01 00:59:42"), None, "p1", None)]
    # Votes from all three copies merged, keys sorted.
    assert MemberEvent.objects.get().vote_data == {
        "MONITOR-AS-3": True,
        "MONITOR-EU-1": True,
        "MONITOR-US-2": True,
        "MONITOR-X": False,
    }


def test_it_closes_with_decided_at_and_a_second_outage_gets_a_second_row() -> None:
    downtime_finalize(message=finalize("p1", online=False, decided_at="2025-03-01T01:00:00Z"), now=NOW)
    closed = downtime_finalize(message=finalize("p2", online=True, decided_at="2025-03-01T01:10:30.7Z"), now=NOW)
    assert closed.closed and closed.closed_ids == (closed.event_id,)
    downtime_finalize(message=finalize("p3", online=False, decided_at="2025-03-01T02:00:00Z"), now=NOW)
    assert event_rows() == [
        ("3", ENDPOINT, 1, at("2025-03-01 01:00:00"), at("2025-03-01 01:10:30"), "p1", "p2"),
        ("3", ENDPOINT, 0, at("2025-03-01 02:00:00"), None, "p3", None),
    ]


def test_it_records_a_closed_outage_when_the_online_arrives_before_its_offline() -> None:
    first = downtime_finalize(message=finalize("on", online=True, decided_at="2025-03-01T01:05:00Z"), now=NOW)
    assert first.action == "remembered" and not first.closed
    assert event_rows() == []
    second = downtime_finalize(message=finalize("off", online=False, decided_at="2025-03-01T01:00:00Z"), now=NOW)
    assert second.action == "recorded_closed" and not second.opened
    # No phantom open outage: the outage is recorded from its offline to its online.
    assert event_rows() == [("3", ENDPOINT, 1, at("2025-03-01 01:00:00"), at("2025-03-01 01:05:00"), "off", "on")]
    assert PendingRecovery.objects.count() == 0
    # A late copy of the same offline from another monitor (another proposal ID) is stale.
    late = downtime_finalize(message=finalize("off-2", online=False, decided_at="2025-03-01T01:00:01Z"), now=NOW)
    assert late.action == "stale"
    assert len(event_rows()) == 1


def test_it_drops_an_offline_older_than_a_recovery_that_closed_a_row() -> None:
    downtime_finalize(message=finalize("a", online=False, decided_at="2025-03-01T01:00:00Z"), now=NOW)
    downtime_finalize(message=finalize("b", online=True, decided_at="2025-03-01T01:10:00Z"), now=NOW)
    stale = downtime_finalize(message=finalize("c", online=False, decided_at="2025-03-01T01:09:59Z"), now=NOW)
    fresh = downtime_finalize(message=finalize("d", online=False, decided_at="2025-03-01T01:10:01Z"), now=NOW)
    assert (stale.action, fresh.action) == ("stale", "opened")
    assert [r[2:] for r in event_rows()] == [
        (1, at("2025-03-01 01:00:00"), at("2025-03-01 01:10:00"), "a", "b"),
        (0, at("2025-03-01 01:10:01"), None, "d", None),
    ]


def test_it_clamps_an_end_before_the_start_and_never_reopens_a_closed_row() -> None:
    downtime_finalize(message=finalize("a", online=False, decided_at="2025-03-01T01:00:05Z"), now=NOW)
    # The recovering monitor's clock is 3 s behind: the end is clamped to the start.
    downtime_finalize(message=finalize("b", online=True, decided_at="2025-03-01T01:00:02Z"), now=NOW)
    again = downtime_finalize(message=finalize("a", online=False, decided_at="2025-03-01T01:00:05Z"), now=NOW)
    assert again.action == "duplicate"
    assert [r[2:5] for r in event_rows()] == [(1, at("2025-03-01 01:00:05"), at("2025-03-01 01:00:05"))]


def test_it_is_idempotent_per_proposal_and_status() -> None:
    downtime_finalize(message=finalize("a", online=False, decided_at="2025-03-01T01:00:00Z"), now=NOW)
    downtime_finalize(message=finalize("b", online=True, decided_at="2025-03-01T01:10:00Z"), now=NOW)
    repeat = downtime_finalize(message=finalize("b", online=True, decided_at="2025-03-01T01:10:00Z"), now=NOW)
    assert repeat.action == "duplicate" and not repeat.closed
    assert PendingRecovery.objects.count() == 0
    assert sorted(FinalizeApplied.objects.values_list("proposal_id", "proposed_status", "outcome")) == [
        ("a", False, "opened"),
        ("b", True, "closed"),
    ]


def test_it_closes_a_legacy_endpoint_text_row_with_the_numeric_identity() -> None:
    legacy = MemberEvent.objects.create(
        check_type="endpoint",
        check_name="wss",
        endpoint=ENDPOINT,
        domain_name="rpc.dotters.network",
        member_name="Alpha Nodes",
        is_ipv6=0,
        status=0,
        start_time=at("2025-02-28 23:00:00"),
        vote_data=None,
        additional_data=None,
    )
    offline = downtime_finalize(message=finalize("x", online=False, decided_at="2025-03-01T00:30:00Z"), now=NOW)
    assert offline.action == "merged" and offline.event_id == legacy.pk
    closed = downtime_finalize(message=finalize("y", online=True, decided_at="2025-03-01T01:00:00Z"), now=NOW)
    assert closed.closed and closed.event_id == legacy.pk
    assert event_rows() == [
        ("endpoint", ENDPOINT, 1, at("2025-02-28 23:00:00"), at("2025-03-01 01:00:00"), None, "y"),
    ]


def test_it_closes_an_adopted_domain_row_whose_endpoint_was_null() -> None:
    """The monitor-side writer left NULL in `endpoint` for domain checks; adoption made it ''."""
    adopted = MemberEvent.objects.create(
        check_type="2",
        check_name="ssl",
        endpoint="",
        domain_name="rpc.ibp.network",
        member_name="Amforc",
        is_ipv6=0,
        status=0,
        start_time=at("2026-01-06 00:00:00"),
    )
    domain = {"check_type": "domain", "check_name": "ssl", "domain": "rpc.ibp.network", "member": "Amforc"}
    now = at("2026-01-06 03:00:00")

    offline = downtime_finalize(
        message=finalize("d1", online=False, decided_at="2026-01-06T00:05:00Z", **domain), now=now
    )
    online = downtime_finalize(
        message=finalize("d2", online=True, decided_at="2026-01-06T02:30:00Z", **domain), now=now
    )

    # The same outage, still open: merged into the adopted row, no second open row.
    assert (offline.action, offline.event_id) == ("merged", adopted.pk)
    assert (online.action, online.closed_ids) == ("closed", (adopted.pk,))
    assert event_rows() == [("2", "", 1, at("2026-01-06 00:00:00"), at("2026-01-06 02:30:00"), None, "d2")]
    assert PendingRecovery.objects.count() == 0


@pytest.mark.parametrize("online", [False, True])
def test_it_rejects_a_finalize_without_decided_at(online: bool) -> None:
    """Go's zero time would open an outage at 0001-01-01 (or close one at its own start)."""
    downtime_finalize(message=finalize("open", online=False, decided_at="2025-03-01T01:00:00Z"), now=NOW)
    wire = finalize("no-time", online=online, decided_at="2025-03-01T01:30:00Z").to_json()
    message = FinalizeMessage.from_json(wire.replace(b',"DecidedAt":"2025-03-01T01:30:00Z"', b""))
    assert message.decided_at.format() == "0001-01-01T00:00:00Z"

    with pytest.raises(FinalizeRejected) as raised:
        downtime_finalize(message=message, now=NOW)

    assert raised.value.reason == "missing_decided_at"
    assert str(raised.value) == "finalize 'no-time' has no DecidedAt"
    assert event_rows() == [("3", ENDPOINT, 0, at("2025-03-01 01:00:00"), None, "open", None)]
    assert list(FinalizeApplied.objects.values_list("proposal_id", flat=True)) == ["open"]
    assert PendingRecovery.objects.count() == 0


def test_it_ignores_a_finalize_that_did_not_pass_and_rejects_an_unknown_check_type() -> None:
    ignored = downtime_finalize(
        message=finalize("a", online=False, decided_at="2025-03-01T01:00:00Z", passed=False), now=NOW
    )
    assert ignored.action == "ignored"
    with pytest.raises(FinalizeRejected) as raised:
        downtime_finalize(
            message=finalize("b", online=False, decided_at="2025-03-01T01:00:00Z", check_type="dns"), now=NOW
        )
    assert raised.value.reason == "unknown_check_type"
    assert event_rows() == []


def test_it_stores_identity_columns_per_check_type_and_data_as_go_would() -> None:
    site = downtime_finalize(
        message=finalize(
            "s",
            online=False,
            decided_at="2025-03-01T01:00:00Z",
            check_type="site",
            check_name="ping",
            error="PingCheck: loss=40%",
            data={"AvgRtt": 912.0, "PacketLoss": 40.0, "StdDevRtt": 2.5},
        ),
        now=NOW,
    )
    domain = downtime_finalize(
        message=finalize(
            "d", online=False, decided_at="2025-03-01T01:00:00Z", check_type="domain", domain="RPC.Dotters.Network."
        ),
        now=NOW,
    )
    rows = {
        row.pk: (row.check_type, row.check_name, row.endpoint, row.domain_name, row.error, row.additional_data)
        for row in MemberEvent.objects.all()
    }
    assert rows == {
        site.event_id: (
            "1",
            "ping",
            "",
            "",
            "PingCheck: loss=40%",
            {"AvgRtt": 912, "PacketLoss": 40, "StdDevRtt": 2.5},
        ),
        domain.event_id: ("2", "wss", "rpc.dotters.network", "rpc.dotters.network", None, None),
    }
    # A nil Data is stored as Go stores it: the JSON text `null` (DECISIONS 5), not SQL NULL.
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, additional_data FROM member_events ORDER BY id")
        stored = dict(cursor.fetchall())
    assert stored == {site.event_id: '{"AvgRtt": 912, "PacketLoss": 40, "StdDevRtt": 2.5}', domain.event_id: "null"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("rpc.dotters.network", "rpc.dotters.network"),
        ("RPC.Dotters.Network.", "rpc.dotters.network"),
        ("rpc.dotters.network:443", "rpc.dotters.network"),
        (" rpc.dotters.network.:8443 ", "rpc.dotters.network"),
        ("", ""),
        # A port is ASCII digits: Arabic-Indic ٤٤٣ is not one, and the name is kept as sent.
        ("rpc.dotters.network:\u0664\u0664\u0663", "rpc.dotters.network:\u0664\u0664\u0663"),
    ],
)
def test_it_normalises_domains(raw: str, expected: str) -> None:
    assert domain_normalise(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("wss://rpc.dotters.network/kusama", "wss://rpc.dotters.network/kusama"),
        (" WSS://RPC.Dotters.Network/Kusama/ ", "wss://rpc.dotters.network/Kusama"),
        ("https://eth.example.org/", "https://eth.example.org"),
    ],
)
def test_it_normalises_endpoints(raw: str, expected: str) -> None:
    assert endpoint_normalise(raw) == expected


# --- refused before they reach the table: times from the future, over-long identities ---------

REAL_CLOCK = at("2026-12-04 06:45:00")


def test_it_refuses_a_decided_at_from_the_future_and_keeps_the_real_outage() -> None:
    """The tester's case: an offline dated 2030 would open a row that the real 06:00 offline
    merges into and the 06:30 online closes at 2030 (a 0 s outage; the real 30 min lost)."""
    with pytest.raises(FinalizeRejected) as raised:
        downtime_finalize(message=finalize("evil", online=False, decided_at="2030-01-01T00:00:00Z"), now=REAL_CLOCK)
    assert raised.value.reason == "decided_in_future"
    assert str(raised.value) == (
        "finalize 'evil' DecidedAt 2030-01-01T00:00:00Z is 97089300 s after our clock (2026-12-04T06:45:00+00:00)"
    )

    opened = downtime_finalize(message=finalize("off", online=False, decided_at="2026-12-04T06:00:00Z"), now=REAL_CLOCK)
    closed = downtime_finalize(message=finalize("on", online=True, decided_at="2026-12-04T06:30:00Z"), now=REAL_CLOCK)

    assert (opened.action, closed.action) == ("opened", "closed")
    assert event_rows() == [("3", ENDPOINT, 1, at("2026-12-04 06:00:00"), at("2026-12-04 06:30:00"), "off", "on")]
    # Nothing of the refused decision is kept: not even as applied.
    assert sorted(FinalizeApplied.objects.values_list("proposal_id", flat=True)) == ["off", "on"]


@pytest.mark.parametrize("online", [False, True])
def test_it_refuses_a_year_2999_decision_either_way(online: bool) -> None:
    """A future online would close a real outage in 2999; a future offline would show as
    ongoing with a negative duration."""
    downtime_finalize(message=finalize("open", online=False, decided_at="2026-12-04T06:00:00Z"), now=REAL_CLOCK)
    with pytest.raises(FinalizeRejected) as raised:
        downtime_finalize(message=finalize("x", online=online, decided_at="2999-01-01T00:00:00Z"), now=REAL_CLOCK)
    assert raised.value.reason == "decided_in_future"
    assert event_rows() == [("3", ENDPOINT, 0, at("2026-12-04 06:00:00"), None, "open", None)]
    assert PendingRecovery.objects.count() == 0


def test_it_takes_a_decided_at_up_to_five_minutes_ahead_of_the_clock() -> None:
    """A monitor clock 5 min fast is still taken (clock skew); 5 min 1 s is refused."""
    ahead = (REAL_CLOCK + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    too_far = (REAL_CLOCK + timedelta(minutes=5, seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(FinalizeRejected) as raised:
        downtime_finalize(message=finalize("b", online=False, decided_at=too_far), now=REAL_CLOCK)
    assert raised.value.reason == "decided_in_future"
    taken = downtime_finalize(message=finalize("a", online=False, decided_at=ahead), now=REAL_CLOCK)
    assert taken.action == "opened"
    assert event_rows() == [("3", ENDPOINT, 0, at("2026-12-04 06:50:00"), None, "a", None)]


def test_it_reads_the_future_tolerance_from_the_settings(settings: Any) -> None:
    settings.NATS_FINALIZE_FUTURE_TOLERANCE_SECONDS = 0
    with pytest.raises(FinalizeRejected) as raised:
        downtime_finalize(message=finalize("a", online=False, decided_at="2026-12-04T06:45:01Z"), now=REAL_CLOCK)
    assert raised.value.reason == "decided_in_future"
    assert downtime_finalize(
        message=finalize("b", online=False, decided_at="2026-12-04T06:45:00Z"), now=REAL_CLOCK
    ).opened


def test_it_applies_a_decision_a_week_old_as_a_durable_stream_replays_it() -> None:
    """Only the future is refused: a finalize held while the DB was down, or replayed from
    JetStream after a restart, is applied with its own DecidedAt however old it is."""
    later = at("2026-12-11 06:00:00")
    downtime_finalize(message=finalize("off", online=False, decided_at="2026-12-04T06:00:00Z"), now=later)
    downtime_finalize(message=finalize("on", online=True, decided_at="2026-12-04T06:30:00Z"), now=later)
    assert event_rows() == [("3", ENDPOINT, 1, at("2026-12-04 06:00:00"), at("2026-12-04 06:30:00"), "off", "on")]


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("", None),
        ("dial tcp: i/o timeout", "dial tcp: i/o timeout"),
        ("e" * ERROR_TEXT_MAX_BYTES, "e" * ERROR_TEXT_MAX_BYTES),  # exactly full: kept whole
        ("e" * 100_000, "e" * 65_532 + "…"),  # 65,532 bytes + the 3-byte mark = 65,535
        ("é" * 40_000, "é" * 32_766 + "…"),  # 2-byte characters: 65,532 bytes of them
        # 4-byte characters after one ASCII byte: the cut at byte 65,532 would split the
        # 16,383rd emoji, so it ends after the 16,382nd (65,529 bytes) instead.
        ("a" + "\U0001f600" * 20_000, "a" + "\U0001f600" * 16_382 + "…"),
    ],
    ids=["empty", "short", "exactly-full", "ascii-100000", "2-byte-chars", "4-byte-chars"],
)
def test_it_cuts_an_error_text_to_what_a_text_column_holds(text: str, stored: str | None) -> None:
    assert error_text_for_storage(text) == stored
    assert stored is None or len(stored.encode()) <= ERROR_TEXT_MAX_BYTES


def test_it_keeps_an_outage_whose_error_text_is_over_64_kib() -> None:
    """A 100,000-byte ErrorText was refused by MySQL (Data too long) and the outage lost."""
    message = finalize("big", online=False, decided_at="2025-03-01T01:00:00Z", error="e" * 100_000)
    assert downtime_finalize(message=message, now=NOW).opened
    downtime_finalize(message=finalize("up", online=True, decided_at="2025-03-01T01:20:00Z"), now=NOW)
    assert event_rows() == [("3", ENDPOINT, 1, at("2025-03-01 01:00:00"), at("2025-03-01 01:20:00"), "big", "up")]
    error = MemberEvent.objects.get().error
    assert (len(error.encode()), error[-2:]) == (65_535, "e…")


def test_it_keeps_an_outage_whose_wire_text_holds_a_lone_surrogate() -> None:
    """JSON `\\ud800` decoded to a str utf8mb4 cannot hold: the write failed and the outage
    was lost. Go reads it as U+FFFD, and so does the decoder now; a real pair is kept."""
    wire = finalize("lone", online=False, decided_at="2025-03-01T01:00:00Z", error="ERR", member="MEMBER").to_json()
    wire = wire.replace(b'"ERR"', b'"bad \\ud800 body \\ud83d\\ude00"').replace(b'"MEMBER"', b'"Alpha\\udc00"')
    message = FinalizeMessage.from_json(wire)

    assert downtime_finalize(message=message, now=NOW).opened
    row = MemberEvent.objects.get()
    assert (row.member_name, row.error) == ("Alpha\ufffd", "bad \ufffd body \U0001f600")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("check_name", "c" * 65, "check_name_too_long"),
        ("member", "m" * 129, "member_name_too_long"),
        # Measured as stored: lower-cased, without the port and the trailing dot.
        ("domain", "D" * 129 + ".:443", "domain_name_too_long"),
        ("endpoint", "wss://rpc.dotters.network/" + "k" * 231, "endpoint_too_long"),
    ],
    ids=["check_name-65", "member-129", "domain-129", "endpoint-257"],
)
def test_it_refuses_identity_fields_longer_than_their_columns(field: str, value: str, reason: str) -> None:
    """Cut to fit, two identities that differ after the cut would merge; MySQL refused them
    as `Data too long` (a db_error). Now they are refused, by name, before any write."""
    with pytest.raises(FinalizeRejected) as raised:
        downtime_finalize(
            message=finalize("long", online=False, decided_at="2025-03-01T01:00:00Z", **{field: value}), now=NOW
        )
    assert raised.value.reason == reason
    assert event_rows() == []
    assert FinalizeApplied.objects.count() == 0


def test_it_stores_identity_fields_exactly_as_wide_as_their_columns() -> None:
    endpoint = "wss://rpc.dotters.network/" + "k" * 230
    message = finalize(
        "w",
        online=False,
        decided_at="2025-03-01T01:00:00Z",
        check_name="c" * 64,
        member="m" * 128,
        domain="d" * 128,
        endpoint=endpoint,
    )
    assert downtime_finalize(message=message, now=NOW).opened
    assert list(MemberEvent.objects.values_list("check_name", "member_name", "domain_name", "endpoint")) == [
        ("c" * 64, "m" * 128, "d" * 128, endpoint)
    ]


def test_it_refuses_a_proposal_id_longer_than_its_column() -> None:
    with pytest.raises(FinalizeRejected) as raised:
        downtime_finalize(message=finalize("p" * 129, online=False, decided_at="2025-03-01T01:00:00Z"), now=NOW)
    assert raised.value.reason == "proposal_id_too_long"
    assert event_rows() == []
    assert downtime_finalize(
        message=finalize("p" * 128, online=False, decided_at="2025-03-01T01:00:00Z"), now=NOW
    ).opened
