"""Base cost of services before the SLA (DECISIONS 9, data-model §6). Pure: config in, Decimal out.

The cost is a flat monthly USD amount: no proration for month length, joins or leaves.
Unlike the Go reference, each assignment resolves once to its canonical service key, a
duplicate is billed once, and an unknown region or service is reported, never skipped
silently (bugs B5, B6, B15).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from billing.money import money_round, money_sum
from members.config_files import MemberConfig, NetworkConfig, RegionPricing, ServiceConfig


def service_instance_cost(*, service: ServiceConfig, price: RegionPricing) -> Decimal:
    """nodes × (cores·p.cores + memory·p.memory + disk·p.disk + bandwidth·p.bandwidth), unrounded.

    Decimal arithmetic on the config's own digits is exact here (28 significant digits
    are far more than any product needs), so Polkadot in North America is exactly
    3457.2056736, not the nearest binary float.
    """
    per_node = (
        service.cores * price.cores
        + service.memory * price.memory
        + service.disk * price.disk
        + service.bandwidth * price.bandwidth
    )
    return per_node * service.nodes


@dataclass(frozen=True)
class ServiceCost:
    service: ServiceConfig
    cost: Decimal  # unrounded; statements round each line to the cent


@dataclass(frozen=True)
class MemberCosts:
    member: MemberConfig
    price: RegionPricing | None
    services: tuple[ServiceCost, ...] = ()
    # Why something assigned is not billed: unknown region, unknown or inactive service.
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def billable(self) -> bool:
        """A member is billed when it is active and its region has a price (DECISIONS 10)."""
        return self.member.active and self.price is not None


def member_costs(*, config: NetworkConfig, member: MemberConfig) -> MemberCosts:
    """The member's billable services at its regional price, each canonical service once."""
    price = config.price_for_region(member.region)
    if price is None:
        return MemberCosts(
            member=member,
            price=None,
            problems=(f"member {member.key!r}: region {member.region!r} has no price, so it cannot be billed",),
        )
    problems: list[str] = []
    notes: list[str] = []
    lines: list[ServiceCost] = []
    seen: set[str] = set()
    for name in member.assignments:
        service = config.service_for_name(name)
        if service is None:
            problems.append(f"member {member.key!r}: assignment {name!r} names no known service; it is not billed")
            continue
        if service.key in seen:
            notes.append(f"member {member.key!r}: service {service.key!r} is assigned twice; it is billed once")
            continue
        seen.add(service.key)
        if not service.active:
            notes.append(f"member {member.key!r}: service {service.key!r} is inactive and is not billed")
            continue
        lines.append(ServiceCost(service=service, cost=service_instance_cost(service=service, price=price)))
    return MemberCosts(member=member, price=price, services=tuple(lines), problems=tuple(problems), notes=tuple(notes))


def network_costs(*, config: NetworkConfig) -> list[MemberCosts]:
    """Costs of every member of the config, by member key (inactive members included, flagged)."""
    return [member_costs(config=config, member=config.members[key]) for key in sorted(config.members)]


@dataclass(frozen=True)
class CostSummaryService:
    key: str
    name: str
    level_required: int
    member_costs: tuple[tuple[str, Decimal], ...]  # (member key, rounded cost), by member key

    @property
    def total(self) -> Decimal:
        return money_sum(cost for _, cost in self.member_costs)


@dataclass(frozen=True)
class CostSummary:
    """The daily "cost by service" document: base costs of the config in force, no SLA."""

    day: date
    config_snapshot_id: int | None
    services: tuple[CostSummaryService, ...]
    member_totals: tuple[tuple[str, Decimal], ...]  # active, priced members
    inactive_members: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def total(self) -> Decimal:
        return money_sum(total for _, total in self.member_totals)


def cost_summary_compute(*, config: NetworkConfig, day: date, config_snapshot_id: int | None = None) -> CostSummary:
    """Per service, what each active member pays (rounded lines; totals are sums of lines).

    Inactive members are listed by name with no costs, as in the overview (DECISIONS 10).
    """
    by_service: dict[str, list[tuple[str, Decimal]]] = {}
    member_totals: list[tuple[str, Decimal]] = []
    inactive: list[str] = []
    problems: list[str] = []
    for costs in network_costs(config=config):
        if not costs.member.active:
            inactive.append(costs.member.key)
            continue
        problems.extend(costs.problems)
        if costs.price is None:
            continue
        rounded = [(line.service.key, money_round(line.cost)) for line in costs.services]
        member_totals.append((costs.member.key, money_sum(cost for _, cost in rounded)))
        for service_key, cost in rounded:
            by_service.setdefault(service_key, []).append((costs.member.key, cost))
    services = tuple(
        CostSummaryService(
            key=key,
            name=config.services[key].name or key,
            level_required=config.services[key].level_required,
            member_costs=tuple(sorted(by_service[key])),
        )
        for key in sorted(by_service, key=lambda k: (config.services[k].level_required, k))
    )
    return CostSummary(
        day=day,
        config_snapshot_id=config_snapshot_id,
        services=services,
        member_totals=tuple(member_totals),
        inactive_members=tuple(inactive),
        problems=tuple(problems),
    )
