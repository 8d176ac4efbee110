"""Base cost of services before the SLA (DECISIONS 9, data-model §6). Pure: config in, Decimal out.

The cost is a flat monthly USD amount: no proration for month length, joins or leaves.
Unlike the Go reference, each assignment resolves once to its canonical service key, a
duplicate is billed once, and an unknown region or service is reported, never skipped
silently (bugs B5, B6, B15).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

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
