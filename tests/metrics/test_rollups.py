"""The daily usage rollups stay exactly equal to the raw `requests` rows."""

from __future__ import annotations

from datetime import date

import pytest
from django.core.management import call_command

from metrics.models import (
    RequestDaily,
    RequestDailyAsn,
    RequestDailyCountry,
    RequestDailyDomain,
    RequestDailyMember,
    RequestStat,
)
from metrics.rollups import usage_rollups_rebuild, usage_rollups_refresh

pytestmark = pytest.mark.django_db

DAY = date(2025, 3, 1)
NEXT_DAY = date(2025, 3, 2)


def _row(day: date, node: str, hits: int, **fields: object) -> RequestStat:
    values: dict[str, object] = {
        "domain_name": "polkadot.dotters.network",
        "member_name": "Stake Plus",
        "network_asn": "AS24940",
        "network_name": "Hetzner Online GmbH",
        "country_code": "DE",
        "country_name": "Germany",
        "is_ipv6": 0,
    }
    values.update(fields)
    return RequestStat.objects.create(date=day, node_id=node, hits=hits, **values)


def _daily(model: type, *columns: str) -> dict[tuple, int]:
    return {tuple(row[:-1]): row[-1] for row in model.objects.values_list("date", *columns, "hits")}


def test_it_sums_nodes_and_address_families_per_day() -> None:
    """Two nodes and IPv6 for the same key on one day add up: 100 + 40 + 7 = 147.

    A second member on the same day stays apart (5), and the next day is its own row (9).
    """
    _row(DAY, "NODE-A", 100)
    _row(DAY, "NODE-B", 40)
    _row(DAY, "NODE-A", 7, is_ipv6=1)
    _row(DAY, "NODE-A", 5, member_name="Amforc", country_code="US", country_name="United States")
    _row(NEXT_DAY, "NODE-A", 9)

    usage_rollups_refresh(dates=[DAY, NEXT_DAY])

    assert _daily(RequestDailyMember, "member_name") == {
        (DAY, "Stake Plus"): 147,
        (DAY, "Amforc"): 5,
        (NEXT_DAY, "Stake Plus"): 9,
    }
    assert _daily(RequestDailyCountry, "country_code", "country_name") == {
        (DAY, "DE", "Germany"): 147,
        (DAY, "US", "United States"): 5,
        (NEXT_DAY, "DE", "Germany"): 9,
    }
    assert _daily(RequestDailyAsn, "network_asn", "network_name") == {
        (DAY, "AS24940", "Hetzner Online GmbH"): 152,
        (NEXT_DAY, "AS24940", "Hetzner Online GmbH"): 9,
    }
    assert _daily(RequestDailyDomain, "domain_name") == {
        (DAY, "polkadot.dotters.network"): 152,
        (NEXT_DAY, "polkadot.dotters.network"): 9,
    }
    assert RequestDaily.objects.count() == 3
    assert sorted(RequestDaily.objects.values_list("hits", flat=True)) == [5, 9, 147]


def test_it_updates_the_rollup_when_a_later_round_replaces_a_row() -> None:
    """NODE-A first reports 100, then the next round replaces it with 130: 130 + 40 = 170."""
    replaced = _row(DAY, "NODE-A", 100)
    _row(DAY, "NODE-B", 40)
    usage_rollups_refresh(dates=[DAY])
    assert RequestDailyMember.objects.get(date=DAY).hits == 140

    RequestStat.objects.filter(pk=replaced.pk).update(hits=130)
    usage_rollups_refresh(dates=[DAY])

    assert RequestDailyMember.objects.get(date=DAY).hits == 170
    assert RequestDaily.objects.get(date=DAY).hits == 170
    assert RequestDailyCountry.objects.get(date=DAY).hits == 170


def test_it_is_idempotent_and_leaves_other_days_alone() -> None:
    _row(DAY, "NODE-A", 10)
    _row(NEXT_DAY, "NODE-A", 20)
    usage_rollups_refresh(dates=[DAY, NEXT_DAY])
    usage_rollups_refresh(dates=[DAY, DAY])

    assert _daily(RequestDailyMember, "member_name") == {(DAY, "Stake Plus"): 10, (NEXT_DAY, "Stake Plus"): 20}
    assert RequestDaily.objects.count() == 2


def test_it_keeps_keys_that_differ_only_in_case_apart() -> None:
    """DECISIONS 6: `Türk`, `Turk` and `TURK` are three networks, never one."""
    for name in ("Türk", "Turk", "TURK"):
        _row(DAY, "NODE-A", 1, network_name=name)
    usage_rollups_refresh(dates=[DAY])
    assert sorted(RequestDailyAsn.objects.values_list("network_name", flat=True)) == ["TURK", "Turk", "Türk"]


def test_it_empties_the_rollup_of_a_day_whose_raw_rows_are_gone() -> None:
    _row(DAY, "NODE-A", 10)
    usage_rollups_refresh(dates=[DAY])
    RequestStat.objects.all().delete()

    assert usage_rollups_rebuild() == 1
    assert RequestDaily.objects.count() == 0
    assert RequestDailyMember.objects.count() == 0


def test_it_rebuilds_a_date_range_from_the_command() -> None:
    """Only the days inside --start/--end are rebuilt: the 2nd stays unbuilt."""
    _row(DAY, "NODE-A", 10)
    _row(NEXT_DAY, "NODE-A", 20)
    call_command("rebuild_usage_rollups", "--start", "2025-03-01", "--end", "2025-03-01", verbosity=0)
    assert _daily(RequestDailyMember, "member_name") == {(DAY, "Stake Plus"): 10}
