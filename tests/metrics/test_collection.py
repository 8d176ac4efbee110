"""UsageNormaliser with the store: unchanged records are skipped, never at the cost of a total."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from metrics.collection import UsageNormaliser
from metrics.models import RequestStat
from metrics.usage_store import UsageHitsCache, usage_reply_store
from tests.metrics.nats_peers import usage_reply

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
