"""Base costs on the real IBP config (reports §10.2–10.4, DECISIONS 9, 14)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from billing.costs import member_costs, network_costs, service_instance_cost
from billing.money import money_round, money_sum
from members.config_files import MEMBERS, PRICING, SERVICES, NetworkConfig, parse_network_config
from tests.billing.worked_example import SERVICES_JSON, example_config, example_files


def real_config(directory: Path) -> NetworkConfig:
    return parse_network_config(
        {
            MEMBERS: (directory / "members_professional.json").read_text(),
            SERVICES: (directory / "services_rpc.json").read_text(),
            PRICING: (directory / "services_rpc_iaaspricing.json").read_text(),
        }
    )


@pytest.fixture
def config(ibp_config_dir: Path) -> NetworkConfig:
    return real_config(ibp_config_dir)


@pytest.mark.parametrize(
    ("service", "region", "exact", "rounded"),
    [
        # 2 × (4×14.172 + 16×1.2562398 + 4164×0.17875 + 11000×0.0825)
        #   = 2 × (56.688 + 20.0998368 + 744.315 + 907.5) = 2 × 1728.6028368
        ("Polkadot", "North America", "3457.2056736", "3457.21"),
        # bandwidth 11000 × 0.085 = 935 → per node 1756.1028368
        ("Polkadot", "Europe", "3512.2056736", "3512.21"),
        # 2 × (56.688 + 20.0998368 + 4672×0.17875=835.12 + 17000×0.0825=1402.5) = 2 × 2314.4078368
        ("Kusama", "North America", "4628.8156736", "4628.82"),
        # bandwidth 17000 × 0.085 = 1445 → per node 2356.9078368
        ("Kusama", "Europe", "4713.8156736", "4713.82"),
        # 56.688 + 20.0998368 + 2112×0.17875=377.52 + 2500×0.0825=206.25
        ("Paseo", "North America", "660.5578368", "660.56"),
        # 2 × (14.172 + 2.5124796 + 5.72 + 0)
        ("ETH-Asset-Hub-Polkadot", "Asia", "44.8089592", "44.81"),
    ],
)
def test_it_costs_one_service_instance_exactly(
    config: NetworkConfig, service: str, region: str, exact: str, rounded: str
) -> None:
    price = config.price_for_region(region)
    assert price is not None
    cost = service_instance_cost(service=config.services[service], price=price)
    assert cost == Decimal(exact)
    assert money_round(cost) == Decimal(rounded)


def test_it_bills_stake_plus_22_lines_for_13633_24(config: NetworkConfig) -> None:
    """Σ of the 22 rounded North America lines is $13,633.24 (the unrounded sum 13,633.1904812
    is what Go prints as $13,633.19; DECISIONS 14 wants the total of the lines shown)."""
    costs = member_costs(config=config, member=config.members["Stake Plus"])
    assert len(costs.services) == 22
    assert sum(line.cost for line in costs.services) == Decimal("13633.1904812")
    assert money_sum(money_round(line.cost) for line in costs.services) == Decimal("13633.24")


def test_it_sums_all_seven_members_to_109550_98_and_the_five_active_to_75412_10(config: NetworkConfig) -> None:
    """Per member (rounded lines): Amforc 13819.99, Turboflakes 13819.99, Stake Plus 13633.24,
    Gatotech, Dwellir, Rotko Networks, RadiumBlock 17069.44 each.
    All 7: 2×13819.99 + 13633.24 + 4×17069.44 = 27639.98 + 13633.24 + 68277.76 = 109550.98.
    Active 5 (Rotko Networks and RadiumBlock have Service.Active 0): 109550.98 − 2×17069.44 = 75412.10."""
    all_costs = network_costs(config=config)
    totals = {c.member.key: money_sum(money_round(line.cost) for line in c.services) for c in all_costs}
    assert totals["Amforc"] == Decimal("13819.99")
    assert totals["Gatotech"] == Decimal("17069.44")
    assert money_sum(totals.values()) == Decimal("109550.98")
    inactive = sorted(c.member.key for c in all_costs if not c.billable)
    assert inactive == ["RadiumBlock", "Rotko Networks"]
    assert money_sum(totals[c.member.key] for c in all_costs if c.billable) == Decimal("75412.10")


def test_it_skips_the_inactive_mythos_and_polimec_in_the_older_snapshot(ibp_config_dir: Path) -> None:
    """2026-01-18: Stake Plus has 34 assignments, Mythos and Polimec are inactive → 32 lines,
    exact total 25703.176, $25,703.18; Polkadot is $4,075.54 in both regions."""
    config = real_config(ibp_config_dir / "2026-01-18")
    costs = member_costs(config=config, member=config.members["Stake Plus"])
    assert len(costs.services) == 32
    assert sum(line.cost for line in costs.services) == Decimal("25703.176")
    assert {"Mythos", "Polimec"} & {line.service.key for line in costs.services} == set()
    for region in ("North America", "Europe"):
        price = config.price_for_region(region)
        assert price is not None
        assert money_round(service_instance_cost(service=config.services["Polkadot"], price=price)) == Decimal(
            "4075.54"
        )


def test_it_matches_regions_trimmed_and_case_insensitively_and_skips_inactive_services() -> None:
    """§8.2: Alpha (Europe) Polkadot 2×(40+16+100+100) = 512, Kusama 20+8+50+50 = 128,
    Westend inactive; beta (' north AMERICA ') Polkadot 2×(48+24+200+200) = 944."""
    config = example_config()
    alpha = member_costs(config=config, member=config.members["Alpha"])
    assert [(line.service.key, line.cost) for line in alpha.services] == [
        ("Polkadot", Decimal(512)),
        ("Kusama", Decimal(128)),
    ]
    assert any("Westend" in note and "inactive" in note for note in alpha.notes)
    beta = member_costs(config=config, member=config.members["beta"])
    assert [(line.service.key, line.cost) for line in beta.services] == [("Polkadot", Decimal(944))]


def test_it_bills_a_duplicate_assignment_once_under_its_canonical_key() -> None:
    """'polkadot ' in a second group resolves to Polkadot, already billed: one line of 512."""
    members = {
        "Alpha": {
            "Details": {"Name": "Alpha Nodes"},
            "Service": {"Active": 1},
            "ServiceAssignments": {"A": ["Polkadot"], "B": ["polkadot "]},
            "Location": {"Region": "Europe"},
        }
    }
    config = parse_network_config(example_files(members=members))
    costs = member_costs(config=config, member=config.members["Alpha"])
    assert [(line.service.key, line.cost) for line in costs.services] == [("Polkadot", Decimal(512))]
    assert any("assigned twice" in note for note in costs.notes)


def test_it_reports_an_unknown_region_and_an_unknown_service_as_problems() -> None:
    members = {
        "Gamma": {
            "Details": {"Name": "Gamma"},
            "Service": {"Active": 1},
            "ServiceAssignments": {"A": ["Polkadot"]},
            "Location": {"Region": "Antarctica"},
        },
        "Delta": {
            "Details": {"Name": "Delta"},
            "Service": {"Active": 1},
            "ServiceAssignments": {"A": ["Polkadot", "Nope"]},
            "Location": {"Region": "Europe"},
        },
    }
    config = parse_network_config(example_files(members=members))
    gamma = member_costs(config=config, member=config.members["Gamma"])
    assert gamma.price is None and not gamma.billable and gamma.services == ()
    assert gamma.problems == ("member 'Gamma': region 'Antarctica' has no price, so it cannot be billed",)
    delta = member_costs(config=config, member=config.members["Delta"])
    assert [line.service.key for line in delta.services] == ["Polkadot"]
    assert delta.problems == ("member 'Delta': assignment 'Nope' names no known service; it is not billed",)


def test_it_costs_zero_for_zero_nodes() -> None:
    services = {"Polkadot": {**SERVICES_JSON["Polkadot"], "Resources": {"nodes": 0, "cores": 4}}}
    members = {
        "Alpha": {
            "Details": {"Name": "A"},
            "Service": {"Active": 1},
            "ServiceAssignments": {"A": ["Polkadot"]},
            "Location": {"Region": "Europe"},
        }
    }
    config = parse_network_config(example_files(members=members, services=services))
    costs = member_costs(config=config, member=config.members["Alpha"])
    assert [(line.service.key, line.cost) for line in costs.services] == [("Polkadot", Decimal(0))]
