"""downtime_finalize (nats-protocol §8.6 with DECISIONS 1) and the identity normal forms, on the real DB.

Times in the rows are whole seconds: DecidedAt 00:59:42.004931 is stored as 00:59:42.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection

from metrics.models import FinalizeApplied, MemberEvent, PendingRecovery
from metrics.protocol import FinalizeMessage
from metrics.services import (
    FinalizeRejected,
    domain_normalise,
    downtime_finalize,
    endpoint_normalise,
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

    offline = downtime_finalize(
        message=finalize("d1", online=False, decided_at="2026-01-06T00:05:00Z", **domain), now=NOW
    )
    online = downtime_finalize(
        message=finalize("d2", online=True, decided_at="2026-01-06T02:30:00Z", **domain), now=NOW
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
