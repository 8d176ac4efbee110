"""The worked example of data-model §8, C-mode (§8.5), under each credit policy."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from billing.bills import MonthBills, month_bills_compute
from billing.money import money_sum
from billing.sla import CreditPolicy, credit_tiers_parse, month_window
from tests.billing.worked_example import example_config, example_rows, utc

TIERS = credit_tiers_parse([("99.99", "0"), ("99.9", "10"), ("99.0", "25"), ("0", "100")])


def march_2025(policy: CreditPolicy) -> MonthBills:
    return month_bills_compute(
        config=example_config(),
        window=month_window(year=2025, month=3),
        rows=example_rows(),
        now=utc(2025, 4, 1, 0, 5),
        policy=policy,
        tiers=TIERS,
    )


def figures(bills: MonthBills) -> dict[tuple[str, str], tuple[int, str, bool, str, str, str]]:
    return {
        (bill.member.key, line.service.key): (
            line.downtime_seconds,
            str(line.uptime_percent(decimals=4)),
            line.meets_sla,
            str(line.base),
            str(line.credit),
            str(line.billed),
        )
        for bill in bills.members
        for line in bill.lines
    }


def test_it_reproduces_the_worked_example_under_the_always_policy() -> None:
    """March 2025: T = 31 × 86400 = 2,678,400 s (744 h). Every row counts whatever its status;
    endpoint rows match by exact URL; row 4 (open) ends at min(now, Apr 1 00:00) = Apr 1 00:00.

    Alpha / Polkadot (base 2 × (40+16+100+100) = 512):
      row 1 site [Mar 1 00:00, 01:30) = 5400 s + row 3 domain polkadot.dotters.network
      [Mar 10 12:00, 14:00) = 7200 s (status 1 but ended: it counts, B1). Row 2 is the Kusama
      endpoint on the shared host, so not here (B4). D = 12600 s = 3.5 h.
      uptime = 2,665,800 / 2,678,400 = 99.52956…% → 99.5295; 12600 × 10000 > 2,678,400 → missed.
      credit = 512 × 12600 / 2,678,400 = 224/93 = 2.408602… → 2.41; billed 512 − 2.41 = 509.59.
    Alpha / Kusama (base 20+8+50+50 = 128):
      rows 1 ∪ 2 = [00:00, 03:00) = 10800 s + row 4 [Mar 31 20:00, Apr 1 00:00) = 14400 s;
      row 6 is February. D = 25200 s = 7 h. uptime = 2,653,200 / 2,678,400 = 99.05913…% → 99.0591.
      credit = 128 × 7 / 744 = 112/93 = 1.204301… → 1.20; billed 126.80.
    Alpha / Westend: inactive service, no line.
    beta / Polkadot (' north AMERICA ', base 2 × (48+24+200+200) = 944):
      row 5 ('site', legacy text) [10:00, 10:03) = 180 s (counted even below MinimumOfflineTime).
      180 × 10000 = 1,800,000 ≤ 2,678,400 → met. uptime 99.99327…% → 99.9932.
      credit = 944 × 180 / 2,678,400 = 59/930 = 0.063440… → 0.06; billed 943.94.
    Totals: Alpha base 640, credit 2.41 + 1.20 = 3.61, billed 636.39; beta 944 / 0.06 / 943.94;
    all: base 1584.00, credit 3.67, billed 1580.33.
    """
    bills = march_2025(CreditPolicy.ALWAYS)
    assert figures(bills) == {
        ("Alpha", "Polkadot"): (12600, "99.5295", False, "512.00", "2.41", "509.59"),
        ("Alpha", "Kusama"): (25200, "99.0591", False, "128.00", "1.20", "126.80"),
        ("beta", "Polkadot"): (180, "99.9932", True, "944.00", "0.06", "943.94"),
    }
    alpha, beta = bills.members
    assert (alpha.base, alpha.credit, alpha.billed, alpha.meets_sla) == (
        Decimal("640.00"),
        Decimal("3.61"),
        Decimal("636.39"),
        False,
    )
    assert (beta.base, beta.credit, beta.billed, beta.meets_sla) == (
        Decimal("944.00"),
        Decimal("0.06"),
        Decimal("943.94"),
        True,
    )
    assert (bills.base, bills.credit, bills.billed) == (Decimal("1584.00"), Decimal("3.67"), Decimal("1580.33"))
    assert alpha.lines[0].outage_ids == (1, 3)
    assert alpha.lines[1].outage_ids == (1, 2, 4)
    assert (alpha.site_outage_ids, alpha.lines[1].service_outage_ids) == ((1,), (2, 4))
    assert sorted(alpha.outages) == [1, 2, 3, 4]
    assert alpha.outages[4].seconds == 14400


def test_it_credits_only_missed_lines_under_below_threshold() -> None:
    """Same data, the default policy. Alpha's two lines miss the SLA: credits as under `always`
    (2.41 and 1.20). beta/Polkadot meets it (180 s ≤ 267 s): credit 0, billed 944.00.
    Totals: credit 3.61 + 0 = 3.61; billed 636.39 + 944.00 = 1580.39."""
    bills = march_2025(CreditPolicy.BELOW_THRESHOLD)
    assert figures(bills)[("beta", "Polkadot")] == (180, "99.9932", True, "944.00", "0.00", "944.00")
    assert figures(bills)[("Alpha", "Polkadot")][4:] == ("2.41", "509.59")
    assert (bills.base, bills.credit, bills.billed) == (Decimal("1584.00"), Decimal("3.61"), Decimal("1580.39"))


def test_it_credits_by_tier_under_the_tiered_policy() -> None:
    """Tiers 99.99 → 0 %, 99.9 → 10 %, 99.0 → 25 %, 0 → 100 %.
    Alpha/Polkadot 99.5295…% → 25 % of 512 = 128.00, billed 384.00.
    Alpha/Kusama 99.0591…% → 25 % of 128 = 32.00, billed 96.00.
    beta/Polkadot 99.9932…% → 0. Total credit 160.00; billed 1584 − 160 = 1424.00."""
    bills = march_2025(CreditPolicy.TIERED)
    assert figures(bills)[("Alpha", "Polkadot")][4:] == ("128.00", "384.00")
    assert figures(bills)[("Alpha", "Kusama")][4:] == ("32.00", "96.00")
    assert figures(bills)[("beta", "Polkadot")][4:] == ("0.00", "944.00")
    assert (bills.credit, bills.billed) == (Decimal("160.00"), Decimal("1424.00"))


@pytest.mark.parametrize("policy", list(CreditPolicy))
def test_it_makes_every_total_the_sum_of_its_rounded_lines(policy: CreditPolicy) -> None:
    bills = march_2025(policy)
    for bill in bills.members:
        assert bill.base == money_sum(line.base for line in bill.lines)
        assert bill.credit == money_sum(line.credit for line in bill.lines)
        assert bill.billed == money_sum(line.billed for line in bill.lines)
        assert bill.billed == bill.base - bill.credit
        for line in bill.lines:
            assert line.billed == line.base - line.credit
            assert line.base.as_tuple().exponent == -2 and line.credit.as_tuple().exponent == -2
    assert bills.billed == money_sum(bill.billed for bill in bills.members)


def test_it_gives_inactive_members_no_bill() -> None:
    config = example_config()
    config = replace(config, members={**config.members, "beta": replace(config.members["beta"], active=False)})
    bills = month_bills_compute(
        config=config,
        window=month_window(year=2025, month=3),
        rows=example_rows(),
        now=utc(2025, 4, 2),
        policy=CreditPolicy.ALWAYS,
    )
    assert [bill.member.key for bill in bills.members] == ["Alpha"]
    assert [member.key for member in bills.inactive] == ["beta"]
