"""usage_reply_store and usage_upsert_batch (DECISIONS 6–8) on the real database."""

from __future__ import annotations

from datetime import date

import pytest
from django.db import connection

from metrics.models import RequestStat
from metrics.usage_store import UsageHitsCache, usage_reply_store, usage_upsert_batch

pytestmark = pytest.mark.django_db

DAY = date(2025, 3, 14)
needs_mysql = pytest.mark.skipif(connection.vendor != "mysql", reason="the MySQL write path")


def usage_rows() -> list[tuple[object, ...]]:
    return list(
        RequestStat.objects.order_by("node_id", "domain_name", "network_asn").values_list(
            "date", "node_id", "domain_name", "network_asn", "country_code", "is_ipv6", "hits"
        )
    )


def key(domain: str, asn: str = "AS3320", ipv6: int = 0, day: date = DAY) -> tuple[object, ...]:
    return (day, domain, "Alpha Nodes", asn, "Deutsche Telekom AG", "DE", "Germany", ipv6)


def row_id(domain: str, node_id: str = "DNS-01") -> int:
    return RequestStat.objects.get(node_id=node_id, domain_name=domain).pk


def test_it_replaces_hits_and_skips_unchanged_rows() -> None:
    cache = UsageHitsCache()
    first = usage_reply_store(node_id="DNS-01", rows={key("a.net"): 10, key("b.net"): 20}, cache=cache)
    second = usage_reply_store(node_id="DNS-01", rows={key("a.net"): 10, key("b.net"): 25}, cache=cache)
    assert (first.rows_written, first.rows_unchanged, first.dates, first.nodes) == (2, 0, {DAY}, {"DNS-01"})
    assert (second.rows_written, second.rows_unchanged) == (1, 1)
    # A fresh process loads the day from the table and also skips the unchanged row.
    third = usage_reply_store(node_id="DNS-01", rows={key("a.net"): 10, key("b.net"): 30}, cache=UsageHitsCache())
    assert (third.rows_written, third.rows_unchanged) == (1, 1)
    assert usage_rows() == [
        (DAY, "DNS-01", "a.net", "AS3320", "DE", 0, 10),
        (DAY, "DNS-01", "b.net", "AS3320", "DE", 0, 30),
    ]


def test_it_keeps_two_nodes_apart_and_writes_each_days_rows() -> None:
    """A reply that spans two days (unsolicited usageData) writes both; another node's
    rows for the same key are a row of their own."""
    cache = UsageHitsCache()
    other_day = date(2025, 3, 13)
    stored = usage_reply_store(
        node_id="DNS-01", rows={key("a.net"): 7, key("a.net", day=other_day): 3, key("b.net"): 1}, cache=cache
    )
    usage_reply_store(node_id="DNS-02", rows={key("a.net"): 5}, cache=cache)
    assert (stored.rows_written, stored.dates) == (3, {DAY, other_day})
    assert sorted(RequestStat.objects.values_list("date", "node_id", "domain_name", "hits")) == [
        (other_day, "DNS-01", "a.net", 3),
        (DAY, "DNS-01", "a.net", 7),
        (DAY, "DNS-01", "b.net", 1),
        (DAY, "DNS-02", "a.net", 5),
    ]


@needs_mysql
def test_it_updates_known_rows_in_place_by_their_id() -> None:
    """The second reply changes a.net 10 → 11 and adds c.net: a.net keeps its row id (it
    was updated, not re-inserted), c.net gets a new row, b.net is not written."""
    cache = UsageHitsCache()
    usage_reply_store(node_id="DNS-01", rows={key("a.net"): 10, key("b.net"): 20}, cache=cache)
    first_id = row_id("a.net")
    second = usage_reply_store(
        node_id="DNS-01", rows={key("a.net"): 11, key("b.net"): 20, key("c.net"): 5}, cache=cache
    )
    assert (second.rows_written, second.rows_unchanged) == (2, 1)
    assert row_id("a.net") == first_id
    assert usage_rows() == [
        (DAY, "DNS-01", "a.net", "AS3320", "DE", 0, 11),
        (DAY, "DNS-01", "b.net", "AS3320", "DE", 0, 20),
        (DAY, "DNS-01", "c.net", "AS3320", "DE", 0, 5),
    ]
    # The third reply updates the row that the second one inserted (its id came back).
    third = usage_reply_store(node_id="DNS-01", rows={key("c.net"): 6}, cache=cache)
    assert (third.rows_written, RequestStat.objects.get(domain_name="c.net").hits) == (1, 6)


@needs_mysql
def test_it_writes_a_row_again_by_its_key_when_it_vanished_behind_the_cache() -> None:
    """An operator deletes b.net's row while the listener remembers its id: the next change
    is written by the key (the row comes back with the new hits), a.net's update still
    lands, and the (date, node) is read from the table again afterwards."""
    cache = UsageHitsCache()
    usage_reply_store(node_id="DNS-01", rows={key("a.net"): 10, key("b.net"): 20}, cache=cache)
    RequestStat.objects.filter(domain_name="b.net").delete()
    stored = usage_reply_store(node_id="DNS-01", rows={key("a.net"): 12, key("b.net"): 21}, cache=cache)
    assert stored.rows_written == 2
    assert usage_rows() == [
        (DAY, "DNS-01", "a.net", "AS3320", "DE", 0, 12),
        (DAY, "DNS-01", "b.net", "AS3320", "DE", 0, 21),
    ]
    # Reloaded from the table: the same reply again is all unchanged.
    again = usage_reply_store(node_id="DNS-01", rows={key("a.net"): 12, key("b.net"): 21}, cache=cache)
    assert (again.rows_written, again.rows_unchanged) == (0, 2)


def test_it_never_touches_another_nodes_row_through_a_stale_id() -> None:
    """The cache is shared by the listener for all nodes: DNS-02's row with the same key as
    DNS-01's keeps its own hits when DNS-01's row changes."""
    cache = UsageHitsCache()
    usage_reply_store(node_id="DNS-01", rows={key("a.net"): 10}, cache=cache)
    usage_reply_store(node_id="DNS-02", rows={key("a.net"): 40}, cache=cache)
    usage_reply_store(node_id="DNS-01", rows={key("a.net"): 15}, cache=cache)
    assert dict(RequestStat.objects.values_list("node_id", "hits")) == {"DNS-01": 15, "DNS-02": 40}


@needs_mysql
def test_it_forgets_the_day_when_the_write_fails() -> None:
    """A reply whose write fails (a value too wide for INT UNSIGNED, refused in strict mode) leaves the table as it
    was and the cache reloads from the table, so the next good reply is compared with
    what is really stored."""
    cache = UsageHitsCache()
    usage_reply_store(node_id="DNS-01", rows={key("a.net"): 10}, cache=cache)
    with pytest.raises(Exception):  # noqa: B017 - the driver's error class differs by vendor
        usage_reply_store(node_id="DNS-01", rows={key("a.net"): 11, key("b.net"): 2**40}, cache=cache)
    assert usage_rows() == [(DAY, "DNS-01", "a.net", "AS3320", "DE", 0, 10)]
    stored = usage_reply_store(node_id="DNS-01", rows={key("a.net"): 11}, cache=cache)
    assert (stored.rows_written, usage_rows()[0][-1]) == (1, 11)


def test_it_upserts_in_multi_row_batches_without_adding() -> None:
    rows = [(DAY, "DNS-01", f"d{i}.net", "Alpha Nodes", "", "", "DE", "Germany", 0, i) for i in range(1, 2501)]
    assert usage_upsert_batch(rows=rows, rows_per_statement=1000) == 2500
    usage_upsert_batch(rows=[(*r[:-1], r[-1] * 2) for r in rows], rows_per_statement=1000)
    assert RequestStat.objects.count() == 2500
    # Sum of 2·i for i = 1..2500 = 2500·2501 = 6,252,500.
    assert sum(RequestStat.objects.values_list("hits", flat=True)) == 6_252_500


@needs_mysql
def test_it_updates_more_rows_than_one_update_statement_holds() -> None:
    """25,000 changed rows go through the id table in three chunks (10,000 a chunk)."""
    cache = UsageHitsCache()
    rows = {key(f"d{i}.net"): i for i in range(1, 25_001)}
    usage_reply_store(node_id="DNS-01", rows=rows, cache=cache)
    stored = usage_reply_store(node_id="DNS-01", rows={k: hits + 1 for k, hits in rows.items()}, cache=cache)
    assert (stored.rows_written, RequestStat.objects.count()) == (25_000, 25_000)
    # Sum of (i + 1) for i = 1..25,000 = 25,000·25,001/2 + 25,000 = 312,537,500.
    assert sum(RequestStat.objects.values_list("hits", flat=True)) == 312_537_500


@needs_mysql
def test_it_moves_the_go_rows_of_a_day_aside_when_per_node_rows_arrive() -> None:
    """An adopted database holds Go's summed rows (`node_id = ''`). On the switch-over day
    they are moved to requests_adopt_rejects, whole, when the first node's rows arrive, so
    the day is not counted twice; the day before keeps its Go rows."""
    day_before = date(2025, 3, 13)
    go_rows = [
        (DAY, "", "a.net", "Alpha Nodes", "AS3320", "Deutsche Telekom AG", "DE", "Germany", 0, 900),
        (day_before, "", "a.net", "Alpha Nodes", "AS3320", "Deutsche Telekom AG", "DE", "Germany", 0, 800),
    ]
    usage_upsert_batch(rows=go_rows)
    go_id = RequestStat.objects.get(date=DAY, node_id="").pk
    usage_reply_store(node_id="DNS-01", rows={key("a.net"): 500}, cache=UsageHitsCache())
    assert sorted(RequestStat.objects.values_list("date", "node_id", "hits")) == [
        (day_before, "", 800),
        (DAY, "DNS-01", 500),
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, date, node_id, domain_name, hits, reason FROM requests_adopt_rejects")
        assert cursor.fetchall() == ((go_id, DAY, "", "a.net", 900, "superseded by per-node rows"),)
