"""UsageNormaliser with the store: unchanged records are skipped, never at the cost of a total."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from metrics.collection import UsageNormaliser, asn_normalise, country_code_normalise, latest_usage_date
from metrics.models import RequestStat
from metrics.protocol import ProtocolError
from metrics.usage_store import UsageHitsCache, usage_reply_store
from tests.metrics.nats_peers import SettableClock, usage_reply

pytestmark = pytest.mark.django_db

DAY = date(2025, 3, 14)


def record(domain: str, hits: int, asn: str = "AS3320") -> dict[str, Any]:
    return {
        "date": "2025-03-14T00:00:00Z",
        "domain": domain,
        "member": "Alpha Nodes",
        "code": "DE",
        "asn": asn,
        "network": "Deutsche Telekom AG",
        "country": "Germany",
        "hits": hits,
    }


def stored() -> dict[str, int]:
    return dict(RequestStat.objects.values_list("domain_name", "hits"))


class Node:
    """One node's replies through the normaliser and the store, as the collector does it."""

    def __init__(self) -> None:
        self.normaliser = UsageNormaliser()
        self.cache = UsageHitsCache()

    def reply(self, *records: dict[str, Any]) -> tuple[int, int, int, int]:
        """(records, skipped, written, unchanged) of one reply of DNS-01 for DAY."""
        digest = self.normaliser.digest([usage_reply("DNS-01", list(records))], day=DAY, cache=self.cache)
        result = usage_reply_store(node_id="DNS-01", rows=digest.rows, cache=self.cache)
        return digest.records, digest.rows.skipped, result.rows_written, result.rows_unchanged


def test_it_skips_records_byte_identical_to_the_stored_ones() -> None:
    """Round 2 repeats a.net and b.net and changes c.net: two records are skipped without
    being decoded, one is written. Round 3 repeats round 2: all three are skipped."""
    node = Node()
    assert node.reply(record("a.net", 10), record("b.net", 20), record("c.net", 30)) == (3, 0, 3, 0)
    assert node.reply(record("a.net", 10), record("b.net", 20), record("c.net", 31)) == (3, 2, 1, 2)
    assert node.reply(record("a.net", 10), record("b.net", 20), record("c.net", 31)) == (3, 3, 0, 3)
    assert stored() == {"a.net": 10, "b.net": 20, "c.net": 31}


def test_it_adds_a_new_spelling_to_a_skipped_record_of_the_same_key() -> None:
    """Round 2 repeats `rpc.x.net` (10) and adds `RPC.X.NET.` (5), which normalises to the
    same key: the day total is 10 + 5 = 15, so the reply is folded again without skipping."""
    node = Node()
    node.reply(record("rpc.x.net", 10))
    assert node.reply(record("rpc.x.net", 10), record("RPC.X.NET.", 5)) == (2, 0, 1, 0)
    assert stored() == {"rpc.x.net": 15}
    # Round 3 sends the same two records: the summed row has no single record to match, so
    # both are decoded again, and their one row is unchanged.
    assert node.reply(record("rpc.x.net", 10), record("RPC.X.NET.", 5)) == (2, 0, 0, 1)
    assert stored() == {"rpc.x.net": 15}


def test_it_counts_a_record_sent_twice_twice() -> None:
    """A node that sends one record twice (not a Go node) counts it twice: 7 + 7 = 14, even
    when that record is byte-identical to the stored one."""
    node = Node()
    node.reply(record("a.net", 7))
    assert node.reply(record("a.net", 7), record("a.net", 7)) == (2, 0, 1, 0)
    assert stored() == {"a.net": 14}


def test_it_decodes_in_full_after_a_restart_and_skips_from_then_on() -> None:
    """A fresh process knows the table's rows but not the records they came from."""
    Node().reply(record("a.net", 10), record("b.net", 20))
    restarted = Node()
    assert restarted.reply(record("a.net", 10), record("b.net", 21)) == (2, 0, 1, 1)
    assert restarted.reply(record("a.net", 10), record("b.net", 21)) == (2, 2, 0, 2)


def test_it_distrusts_skipped_records_when_the_day_was_written_meanwhile() -> None:
    """The digest was compared with the cache, then another write to that day and node
    landed before it was stored: the skipped records are still counted as unchanged, the
    cache is read from the table again, and the next reply is decoded in full."""
    node = Node()
    node.reply(record("a.net", 10), record("b.net", 20))
    digest = node.normaliser.digest([usage_reply("DNS-01", [record("a.net", 10)])], day=DAY, cache=node.cache)
    assert digest.rows.skipped == 1
    usage_reply_store(node_id="DNS-01", rows={(DAY, "b.net", *_rest()): 25}, cache=node.cache)
    result = usage_reply_store(node_id="DNS-01", rows=digest.rows, cache=node.cache)
    assert (result.rows_written, result.rows_unchanged) == (0, 1)
    assert stored() == {"a.net": 10, "b.net": 25}
    assert node.reply(record("a.net", 10), record("b.net", 25)) == (2, 0, 0, 2)


def _rest() -> tuple[object, ...]:
    return ("Alpha Nodes", "AS3320", "Deutsche Telekom AG", "DE", "Germany", 0)


# --- records refused, counted per reason; the rest of the reply is stored ------------------


def digest_and_store(normaliser: UsageNormaliser, *records: dict[str, Any]) -> Counter[str]:
    """The reasons records of one DNS-01 reply were refused; the others are stored."""
    digest = normaliser.digest([usage_reply("DNS-01", list(records))])
    usage_reply_store(node_id="DNS-01", rows=digest.rows, cache=UsageHitsCache())
    return digest.rejected


def dated(day: str, hits: int) -> dict[str, Any]:
    return {**record("a.net", hits), "date": day}


def stored_days() -> dict[str, int]:
    return {d.isoformat(): hits for d, hits in RequestStat.objects.values_list("date", "hits")}


def test_it_takes_records_up_to_tomorrow_and_refuses_later_ones() -> None:
    """At 23:30 UTC on 14 March a node at UTC+14 already writes the 15th; no zone writes
    the 16th. `9999-12-31` is the tester's record that became /api/health's last date."""
    normaliser = UsageNormaliser(clock=SettableClock(datetime(2025, 3, 14, 23, 30, tzinfo=UTC)))
    rejected = digest_and_store(
        normaliser,
        dated("2025-03-14T00:00:00Z", 1),
        dated("2025-03-15", 2),
        dated("2025-03-16T00:00:00Z", 3),
        dated("9999-12-31", 4),
        dated("yesterday", 5),
    )
    assert rejected == {"date_in_future": 2, "invalid_date": 1}
    assert stored_days() == {"2025-03-14": 1, "2025-03-15": 2}


def test_it_takes_a_date_refused_yesterday_once_the_clock_reaches_it() -> None:
    """The dates memo was judged against yesterday's bound: a new day clears it."""
    clock = SettableClock(datetime(2025, 3, 14, 12, tzinfo=UTC))
    normaliser = UsageNormaliser(clock=clock)
    assert digest_and_store(normaliser, dated("2025-03-16", 7)) == {"date_in_future": 1}
    clock.now = datetime(2025, 3, 15, 0, 0, 1, tzinfo=UTC)
    assert digest_and_store(normaliser, dated("2025-03-16", 7)) == {}
    assert stored_days() == {"2025-03-16": 7}


def test_it_bounds_usage_dates_by_the_utc_day() -> None:
    # 23:30 at UTC-5 is 04:30 UTC the next day: tomorrow is counted from the UTC date.
    late_evening_in_new_york = datetime(2025, 3, 14, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert latest_usage_date(late_evening_in_new_york) == date(2025, 3, 16)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        (" at ", "AT"),
        ("??", "??"),  # unknown, as the DNS nodes send it (nats-protocol §5.6)
        ("", ""),  # no GeoIP at all: Go's zero value
        ("AUT", None),  # alpha-3 Austria: cut to AU it was Australia
        ("d", None),
        ("1A", None),
        ("?", None),
        ("ÄÖ", None),  # letters, but not ASCII
        ("ß", None),  # upper-cases to "SS": two ASCII letters only after the fact
        ("\ufb00", None),  # the "ff" ligature upper-cases to "FF"
    ],
)
def test_it_takes_two_letter_country_codes_and_the_unknown_ones(code: str, expected: str | None) -> None:
    assert country_code_normalise(code) == expected


def test_it_refuses_a_record_with_a_bad_country_code_and_stores_the_rest() -> None:
    normaliser = UsageNormaliser()
    austria = {**record("a.net", 5), "code": "AUT", "country": "Austria"}
    rejected = digest_and_store(normaliser, austria, {**record("b.net", 6), "code": "d"}, record("c.net", 7))
    assert rejected == {"invalid_country_code": 2}
    assert list(RequestStat.objects.values_list("domain_name", "country_code", "hits")) == [("c.net", "DE", 7)]


@pytest.mark.parametrize(
    ("field", "too_long", "reason"),
    [
        ("domain", "d" * 129, "domain_too_long"),
        ("member", "m" * 129, "member_name_too_long"),
        ("asn", "X" * 33, "asn_too_long"),
        ("network", "n" * 97, "network_name_too_long"),
        ("country", "c" * 65, "country_name_too_long"),
    ],
    ids=["domain>128", "member>128", "asn>32", "network>96", "country>64"],
)
def test_it_refuses_a_record_whose_key_part_is_wider_than_its_column(field: str, too_long: str, reason: str) -> None:
    """Cut to the column, `…x` and `…y` past the width would add up into one row."""
    normaliser = UsageNormaliser()
    rejected = digest_and_store(
        normaliser, {**record("a.net", 1), field: too_long + "x"}, {**record("a.net", 2), field: too_long + "y"}
    )
    assert rejected == {reason: 2}
    assert RequestStat.objects.count() == 0


def test_it_stores_key_parts_exactly_as_wide_as_their_columns() -> None:
    wide = {
        "domain": "d" * 128,
        "member": "m" * 128,
        "asn": "X" * 32,
        "network": "n" * 96,
        "country": "c" * 64,
    }
    assert digest_and_store(UsageNormaliser(), {**record("", 3), **wide}) == {}
    assert list(
        RequestStat.objects.values_list("domain_name", "member_name", "network_asn", "network_name", "country_name")
    ) == [("d" * 128, "m" * 128, "X" * 32, "n" * 96, "c" * 64)]


def test_it_refuses_a_reply_whose_node_id_is_wider_than_its_column() -> None:
    normaliser = UsageNormaliser()
    with pytest.raises(ProtocolError) as raised:
        normaliser.digest([usage_reply("N" * 65, [record("a.net", 1)])])
    assert raised.value.reason == "node_id_too_long"
    assert normaliser.digest([usage_reply("N" * 64, [record("a.net", 1)])]).node_id == "N" * 64


@pytest.mark.parametrize(
    ("asn", "expected"),
    [
        ("as3320", "AS3320"),
        (" AS 3320 ", "AS3320"),
        ("AS03320", "AS3320"),
        # Arabic-Indic digits are not an AS number to us (int() would read them as 3320).
        ("AS\u0663\u0663\u0662\u0660", "AS\u0663\u0663\u0662\u0660"),
        ("", ""),
    ],
)
def test_it_normalises_asns_with_ascii_digits_only(asn: str, expected: str) -> None:
    assert asn_normalise(asn) == expected
