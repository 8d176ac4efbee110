"""The SLA maths in integer seconds (DECISIONS 2, 4, 11, 12, 13; data-model §7.8)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from billing.sla import (
    CheckKind,
    CreditPolicy,
    OutageRow,
    ServiceTargets,
    credit_policy_parse,
    credit_tiers_parse,
    member_downtime,
    merge_intervals,
    month_window,
    normalise_endpoint,
    outage_clip,
    outage_service_keys,
    parse_month,
    previous_month_window,
    service_targets,
    sla_credit,
    sla_met,
    url_host,
)
from tests.billing.worked_example import utc

DEFAULT_TIERS = credit_tiers_parse([("99.99", "0"), ("99.9", "10"), ("99.0", "25"), ("0", "100")])

_next_id = iter(range(1, 1_000_000))


def row(
    start: datetime,
    end: datetime | None,
    *,
    check_type: str = "1",
    domain: str = "",
    endpoint: str = "",
    status: int | None = None,
    member: str = "Alpha Nodes",
    row_id: int | None = None,
) -> OutageRow:
    return OutageRow(
        id=row_id if row_id is not None else next(_next_id),
        check_type=check_type,
        member_name=member,
        domain_name=domain,
        endpoint=endpoint,
        status=(1 if end is not None else 0) if status is None else status,
        start_time=start,
        end_time=end,
    )


DOTTERS = [
    service_targets(key="Polkadot", rpc_urls=["wss://polkadot.dotters.network", "wss://rpc.dotters.network/polkadot"]),
    service_targets(key="Kusama", rpc_urls=["wss://kusama.dotters.network", "wss://rpc.dotters.network/kusama"]),
    service_targets(key="Paseo", rpc_urls=["wss://rpc.dotters.network/paseo"]),
]


def downtime(rows: list[OutageRow], *, year: int = 2025, month: int = 3, now: datetime | None = None) -> dict[str, int]:
    window = month_window(year=year, month=month)
    result = member_downtime(rows=rows, services=DOTTERS, window=window, now=now or utc(2030, 1, 1))
    return {key: value.downtime_seconds for key, value in result.services.items()}


# --- months --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "month", "days"),
    [(2025, 2, 28), (2024, 2, 29), (2025, 4, 30), (2025, 1, 31), (2025, 12, 31), (2100, 2, 28), (2000, 2, 29)],
)
def test_it_uses_the_exact_month_length(year: int, month: int, days: int) -> None:
    """672 h = 2,419,200 s; 696 h = 2,505,600 s; 720 h = 2,592,000 s; 744 h = 2,678,400 s."""
    window = month_window(year=year, month=month)
    assert window.seconds == days * 86400
    assert window.start == utc(year, month, 1)


@pytest.mark.parametrize("text", ["2025-13", "2025-00", "25-01", "2025/01", "2025-1", "abcd-ef", "２０２５-01", ""])
def test_it_rejects_a_badly_written_month(text: str) -> None:
    with pytest.raises(ValueError, match="month|year"):
        parse_month(text)


def test_it_finds_the_previous_month_across_a_year() -> None:
    assert previous_month_window(utc(2026, 1, 1, 0, 5)).label == "2025-12"
    assert previous_month_window(utc(2025, 3, 31, 23, 59)).label == "2025-02"


# --- clipping and month boundaries ------------------------------------------------------------


def test_it_splits_an_outage_across_the_month_boundary() -> None:
    """Jan 31 22:00 → Feb 1 03:00: 2 h = 7200 s in January, 3 h = 10800 s in February."""
    outage = row(utc(2025, 1, 31, 22), utc(2025, 2, 1, 3))
    assert downtime([outage], year=2025, month=1)["Polkadot"] == 7200
    assert downtime([outage], year=2025, month=2)["Polkadot"] == 10800


@pytest.mark.parametrize(
    ("year", "month", "last_day"),
    [(2025, 2, 28), (2024, 2, 29), (2025, 4, 30), (2025, 3, 31)],
)
def test_it_counts_a_whole_month_outage_as_the_month_length(year: int, month: int, last_day: int) -> None:
    """An outage from the day before to the day after covers exactly last_day × 86400 s."""
    window = month_window(year=year, month=month)
    outage = row(utc(year, month, 1) - (window.end - window.start) / 31, window.end.replace(hour=5))
    assert downtime([outage], year=year, month=month)["Kusama"] == last_day * 86400


def test_it_counts_an_ongoing_outage_up_to_now_not_to_the_month_end() -> None:
    """Open since Mar 31 20:00 and now is 21:30: 1.5 h = 5400 s, not 4 h."""
    outage = row(utc(2025, 3, 31, 20), None, check_type="3", endpoint="wss://kusama.dotters.network")
    assert downtime([outage], now=utc(2025, 3, 31, 21, 30)) == {"Polkadot": 0, "Kusama": 5400, "Paseo": 0}
    # Once the month is over it counts to the month's end: 4 h.
    assert downtime([outage], now=utc(2025, 4, 2))["Kusama"] == 14400


def test_it_counts_nothing_from_an_outage_that_starts_after_now() -> None:
    assert downtime([row(utc(2025, 3, 20), None)], now=utc(2025, 3, 10)) == {"Polkadot": 0, "Kusama": 0, "Paseo": 0}


@pytest.mark.parametrize(
    ("status", "end", "counts"),
    [
        (0, None, True),  # open
        (0, utc(2025, 3, 2, 1), True),  # legacy row closed without its status changing
        (1, utc(2025, 3, 2, 1), True),  # closed by the collator: still an outage (B1)
        (1, None, False),  # status 1 with no end: not an outage (DECISIONS 2)
    ],
)
def test_it_treats_status_0_or_an_end_time_as_an_outage(status: int, end: datetime | None, counts: bool) -> None:
    outage = row(utc(2025, 3, 2), end, status=status)
    assert downtime([outage], now=utc(2025, 3, 2, 1))["Polkadot"] == (3600 if counts else 0)


def test_it_clamps_an_end_before_the_start_to_nothing() -> None:
    """Clock skew (B14): end 10 min before start must not subtract 600 s."""
    skewed = row(utc(2025, 3, 5, 12), utc(2025, 3, 5, 11, 50))
    normal = row(utc(2025, 3, 6), utc(2025, 3, 6, 1))
    assert downtime([skewed, normal])["Polkadot"] == 3600
    assert outage_clip(row=skewed, window=month_window(year=2025, month=3), now=utc(2026, 1, 1)) is None


# --- merging -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intervals", "merged"),
    [
        ([], []),
        ([(0, 10)], [(0, 10)]),
        ([(5, 10), (0, 3)], [(0, 3), (5, 10)]),
        ([(0, 10), (10, 20)], [(0, 20)]),  # touching intervals merge
        ([(0, 10), (2, 5)], [(0, 10)]),  # contained
        ([(0, 10), (5, 15), (14, 30), (40, 50)], [(0, 30), (40, 50)]),
    ],
)
def test_it_merges_overlapping_and_touching_intervals(
    intervals: list[tuple[int, int]], merged: list[tuple[int, int]]
) -> None:
    assert merge_intervals(intervals) == merged


def test_it_counts_a_site_outage_overlapping_a_domain_outage_once() -> None:
    """Site 10:00–12:00 and domain polkadot.dotters.network 11:00–13:00 → Polkadot [10:00, 13:00) = 3 h
    = 10800 s, not 4 h; Kusama and Paseo only get the site outage: 2 h = 7200 s."""
    site = row(utc(2025, 3, 5, 10), utc(2025, 3, 5, 12), check_type="site")
    domain = row(utc(2025, 3, 5, 11), utc(2025, 3, 5, 13), check_type="2", domain="polkadot.dotters.network")
    assert downtime([site, domain]) == {"Polkadot": 10800, "Kusama": 7200, "Paseo": 7200}


def test_it_merges_ipv4_and_ipv6_and_endpoint_and_domain_outages_into_one_timeline() -> None:
    """Kusama: site [1:00,2:00) ∪ endpoint v4 [1:30,3:00) ∪ endpoint v6 [2:30,4:00) ∪ domain [5:00,6:00) ∪
    domain [3:59,5:00) → [1:00, 6:00) = 5 h = 18000 s."""
    rows = [
        row(utc(2025, 3, 5, 1), utc(2025, 3, 5, 2), check_type="1"),
        row(utc(2025, 3, 5, 1, 30), utc(2025, 3, 5, 3), check_type="3", endpoint="wss://kusama.dotters.network"),
        row(utc(2025, 3, 5, 2, 30), utc(2025, 3, 5, 4), check_type="endpoint", endpoint="wss://kusama.dotters.network"),
        row(utc(2025, 3, 5, 5), utc(2025, 3, 5, 6), check_type="domain", domain="kusama.dotters.network"),
        row(utc(2025, 3, 5, 3, 59), utc(2025, 3, 5, 5), check_type="2", domain="kusama.dotters.network"),
    ]
    assert downtime(rows)["Kusama"] == 18000
    assert downtime(rows)["Polkadot"] == 3600


# --- matching (DECISIONS 4) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check_type", "domain", "endpoint", "services"),
    [
        ("3", "rpc.dotters.network", "wss://rpc.dotters.network/kusama", ["Kusama"]),
        ("endpoint", "rpc.dotters.network", " WSS://RPC.Dotters.Network/kusama/ ", ["Kusama"]),
        ("3", "rpc.dotters.network", "wss://rpc.dotters.network/KUSAMA", []),  # the path keeps its case
        ("3", "rpc.dotters.network", "wss://rpc.dotters.network/westend", []),
        ("2", "rpc.dotters.network", "", ["Polkadot", "Kusama", "Paseo"]),
        ("domain", "RPC.Dotters.Network", "", ["Polkadot", "Kusama", "Paseo"]),
        ("2", "kusama.dotters.network", "kusama.dotters.network", ["Kusama"]),
        ("3", "rpc.dotters.network", "", ["Polkadot", "Kusama", "Paseo"]),  # empty endpoint → host
        ("1", "", "", ["Polkadot", "Kusama", "Paseo"]),
        ("site", "", "", ["Polkadot", "Kusama", "Paseo"]),
        ("2", "other.example.org", "", []),
    ],
)
def test_it_matches_outages_to_services_by_site_host_or_exact_endpoint(
    check_type: str, domain: str, endpoint: str, services: list[str]
) -> None:
    outage = outage_clip(
        row=row(utc(2025, 3, 5), utc(2025, 3, 5, 1), check_type=check_type, domain=domain, endpoint=endpoint),
        window=month_window(year=2025, month=3),
        now=utc(2026, 1, 1),
    )
    assert outage is not None
    assert outage_service_keys(outage=outage, services=DOTTERS) == services


def test_it_charges_a_shared_host_endpoint_outage_to_kusama_only_and_a_domain_outage_to_all() -> None:
    """wss://rpc.dotters.network/kusama down 1 h → Kusama 3600 s only (Go charged Polkadot too, B4);
    rpc.dotters.network down 2 h (domain) → every service on that host: 7200 s each, Kusama's union
    [01:00,02:00) ∪ [05:00,07:00) = 3 h."""
    endpoint = row(
        utc(2025, 3, 5, 1), utc(2025, 3, 5, 2), check_type="3", domain="rpc.dotters.network",
        endpoint="wss://rpc.dotters.network/kusama",
    )  # fmt: skip
    domain = row(utc(2025, 3, 5, 5), utc(2025, 3, 5, 7), check_type="2", domain="rpc.dotters.network")
    assert downtime([endpoint]) == {"Polkadot": 0, "Kusama": 3600, "Paseo": 0}
    assert downtime([domain]) == {"Polkadot": 7200, "Kusama": 7200, "Paseo": 7200}
    assert downtime([endpoint, domain]) == {"Polkadot": 7200, "Kusama": 10800, "Paseo": 7200}


def test_it_ignores_an_unknown_check_type() -> None:
    assert downtime([row(utc(2025, 3, 5), utc(2025, 3, 5, 1), check_type="9")])["Polkadot"] == 0


@pytest.mark.parametrize(
    ("url", "host", "endpoint"),
    [
        ("wss://Polkadot.Dotters.Network", "polkadot.dotters.network", "wss://polkadot.dotters.network"),
        ("wss://rpc.dotters.network/kusama/", "rpc.dotters.network", "wss://rpc.dotters.network/kusama"),
        ("https://rpc.ibp.network:443/polkadot", "rpc.ibp.network", "https://rpc.ibp.network:443/polkadot"),
        ("  ws://Host.Example/Path  ", "host.example", "ws://host.example/Path"),
    ],
)
def test_it_normalises_hosts_and_endpoints(url: str, host: str, endpoint: str) -> None:
    assert url_host(url) == host
    assert normalise_endpoint(url) == endpoint


def test_it_lists_the_outages_that_count_against_each_service() -> None:
    """Site outage 901 counts for every service (kept once, as a site id); endpoint outage 902 for
    Kusama only."""
    site = row(utc(2025, 3, 9), utc(2025, 3, 9, 1), row_id=901)
    kusama = row(
        utc(2025, 3, 2), utc(2025, 3, 2, 1), check_type="3", endpoint="wss://kusama.dotters.network", row_id=902
    )
    result = member_downtime(
        rows=[site, kusama], services=DOTTERS, window=month_window(year=2025, month=3), now=utc(2026, 1, 1)
    )
    assert result.site_outage_ids == (901,)
    assert result.services["Kusama"].service_outage_ids == (902,)
    assert result.services["Kusama"].outage_ids == (901, 902)
    assert result.services["Polkadot"].service_outage_ids == ()
    assert result.services["Polkadot"].outage_ids == (901,)
    assert sorted(result.outages) == [901, 902]
    assert result.outages[901].kind is CheckKind.SITE and result.outages[901].seconds == 3600
    assert result.outages[902].start == utc(2025, 3, 2) and result.outages[902].end == utc(2025, 3, 2, 1)


def test_it_gives_a_member_without_services_no_outages() -> None:
    result = member_downtime(
        rows=[row(utc(2025, 3, 9), utc(2025, 3, 9, 1))],
        services=[],
        window=month_window(year=2025, month=3),
        now=utc(2026, 1, 1),
    )
    assert result.services == {} and result.outages == {}


# --- the SLA edge and the three credit policies -------------------------------------------------


@pytest.mark.parametrize(
    ("days", "allowed"),
    [(31, 267), (30, 259), (29, 250), (28, 241)],
)
def test_it_meets_the_sla_up_to_the_exact_allowance(days: int, allowed: int) -> None:
    """Allowed = floor(month_seconds / 10000): 2,678,400 → 267; 2,592,000 → 259; 2,505,600 → 250;
    2,419,200 → 241."""
    month_seconds = days * 86400
    assert sla_met(downtime_seconds=allowed, month_seconds=month_seconds)
    assert not sla_met(downtime_seconds=allowed + 1, month_seconds=month_seconds)


BASE = Decimal("3457.21")  # Polkadot, North America, rounded


@pytest.mark.parametrize(
    ("policy", "down", "credit"),
    [
        # 30-day month = 2,592,000 s. 259 s: 259 × 10000 = 2,590,000 ≤ 2,592,000 → met;
        # 260 s: 2,600,000 > 2,592,000 → missed.
        # always: 3457.21 × 259 / 2,592,000 = 0.345454… → 0.35; × 260 → 0.346788… → 0.35.
        (CreditPolicy.ALWAYS, 259, "0.35"),
        (CreditPolicy.ALWAYS, 260, "0.35"),
        (CreditPolicy.ALWAYS, 0, "0.00"),
        # below_threshold: met → 0; missed → base × down/month = 0.35.
        (CreditPolicy.BELOW_THRESHOLD, 259, "0.00"),
        (CreditPolicy.BELOW_THRESHOLD, 260, "0.35"),
        # 1 h down: 3457.21 × 3600 / 2,592,000 = 4.80168… → 4.80.
        (CreditPolicy.BELOW_THRESHOLD, 3600, "4.80"),
        # tiered (99.99 → 0 %, 99.9 → 10 %, 99.0 → 25 %, 0 → 100 %):
        # 259 s → 99.990007…% → 0; 260 s → 99.989969…% → 10 % = 345.721 → 345.72;
        # 2592 s → exactly 99.9 % → 10 %; 2593 s → 99.89996…% → 25 % = 864.3025 → 864.30;
        # the whole month → 0 % → 100 %.
        (CreditPolicy.TIERED, 259, "0.00"),
        (CreditPolicy.TIERED, 260, "345.72"),
        (CreditPolicy.TIERED, 2592, "345.72"),
        (CreditPolicy.TIERED, 2593, "864.30"),
        (CreditPolicy.TIERED, 2_592_000, "3457.21"),
    ],
)
def test_it_credits_according_to_the_policy(policy: CreditPolicy, down: int, credit: str) -> None:
    assert sla_credit(
        base=BASE, downtime_seconds=down, month_seconds=2_592_000, policy=policy, tiers=DEFAULT_TIERS
    ) == Decimal(credit)


def test_it_parses_policies_and_rejects_bad_tiers() -> None:
    assert credit_policy_parse(" Tiered ") is CreditPolicy.TIERED
    with pytest.raises(ValueError, match="SLA_CREDIT_POLICY"):
        credit_policy_parse("generous")
    with pytest.raises(ValueError, match="floor of 0"):
        credit_tiers_parse([("99.9", "10")])
    with pytest.raises(ValueError, match="percentages"):
        credit_tiers_parse([("0", "150")])
    assert credit_tiers_parse([("0", "100"), ("99.9", "10")])[0] == (Decimal("99.9"), Decimal(10))


def test_it_builds_service_targets_from_every_provider_url() -> None:
    targets = service_targets(key="X", rpc_urls=["wss://A.example/x/", "", "https://b.example:443"])
    assert targets == ServiceTargets(
        key="X",
        hosts=frozenset({"a.example", "b.example"}),
        endpoints=frozenset({"wss://a.example/x", "https://b.example:443"}),
    )
