"""A month's bills: base costs (costs.py) joined with downtime and credits (sla.py). Pure.

Statements (services.py), the month-to-date API figures (selectors.py) and the PDFs all go
through `month_bills_compute`, so there is one set of rules for money and SLA:

- each line's base is rounded half-up to the cent; its credit is computed from that
  rounded base and rounded the same way; billed = base − credit (DECISIONS 14);
- every total is the sum of the rounded lines it shows;
- inactive members get no bill and are listed as inactive (DECISIONS 10); a member whose
  region has no price gets no bill and is reported as a problem (B15).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from billing.costs import MemberCosts, member_costs
from billing.money import money_round, money_sum, percent_floor
from billing.sla import (
    CountedOutage,
    CreditPolicy,
    CreditTiers,
    MonthWindow,
    OutageRow,
    member_downtime,
    service_targets,
    sla_credit,
    sla_met,
    uptime_ratio,
)
from members.config_files import MemberConfig, NetworkConfig, RegionPricing, ServiceConfig


@dataclass(frozen=True)
class BillLine:
    service: ServiceConfig
    price: RegionPricing
    base_exact: Decimal
    base: Decimal
    credit: Decimal
    billed: Decimal
    downtime_seconds: int
    month_seconds: int
    # Domain/endpoint outages of this service; the member's site outages count for every line.
    service_outage_ids: tuple[int, ...]
    site_outage_ids: tuple[int, ...]

    @property
    def outage_ids(self) -> tuple[int, ...]:
        """Every outage that counts against this line, site ones included, by id."""
        return tuple(sorted((*self.site_outage_ids, *self.service_outage_ids)))

    @property
    def meets_sla(self) -> bool:
        return sla_met(downtime_seconds=self.downtime_seconds, month_seconds=self.month_seconds)

    @property
    def uptime(self) -> Fraction:
        return uptime_ratio(downtime_seconds=self.downtime_seconds, month_seconds=self.month_seconds)

    def uptime_percent(self, *, decimals: int) -> Decimal:
        return percent_floor(self.uptime, decimals=decimals)


@dataclass(frozen=True)
class MemberBill:
    member: MemberConfig
    price: RegionPricing
    lines: tuple[BillLine, ...]
    # Every outage that counts against at least one line, by row id.
    outages: Mapping[int, CountedOutage]
    notes: tuple[str, ...] = ()
    site_outage_ids: tuple[int, ...] = ()

    @property
    def base(self) -> Decimal:
        return money_sum(line.base for line in self.lines)

    @property
    def credit(self) -> Decimal:
        return money_sum(line.credit for line in self.lines)

    @property
    def billed(self) -> Decimal:
        return money_sum(line.billed for line in self.lines)

    @property
    def downtime_seconds(self) -> int:
        """Σ line downtime: what the member's average uptime is computed from."""
        return sum(line.downtime_seconds for line in self.lines)

    @property
    def service_seconds(self) -> int:
        """Σ line month length (services × month seconds)."""
        return sum(line.month_seconds for line in self.lines)

    @property
    def meets_sla(self) -> bool:
        return all(line.meets_sla for line in self.lines)

    @property
    def uptime(self) -> Fraction:
        """Service-weighted average uptime: (Σ month − Σ down) / Σ month; 100% with no lines."""
        if not self.service_seconds:
            return Fraction(1)
        return Fraction(self.service_seconds - self.downtime_seconds, self.service_seconds)


@dataclass(frozen=True)
class MonthBills:
    window: MonthWindow
    now: datetime
    policy: CreditPolicy
    members: tuple[MemberBill, ...]
    # Members with Service.Active = 0: no statement, $0 in the overview (DECISIONS 10).
    inactive: tuple[MemberConfig, ...]
    # Members that cannot be billed (no price for their region) and assignments that name
    # no service: shown to the operator, in the overview and in the API (B15).
    problems: tuple[str, ...]
    unpriced: tuple[MemberConfig, ...] = field(default=())

    @property
    def base(self) -> Decimal:
        return money_sum(bill.base for bill in self.members)

    @property
    def credit(self) -> Decimal:
        return money_sum(bill.credit for bill in self.members)

    @property
    def billed(self) -> Decimal:
        return money_sum(bill.billed for bill in self.members)

    def member(self, key: str) -> MemberBill | None:
        for bill in self.members:
            if bill.member.key == key:
                return bill
        return None


def _rows_by_member_name(rows: Iterable[OutageRow]) -> dict[str, list[OutageRow]]:
    grouped: dict[str, list[OutageRow]] = defaultdict(list)
    for row in rows:
        grouped[row.member_name].append(row)
    return grouped


def member_event_names(*, config: NetworkConfig, member: MemberConfig) -> tuple[str, ...]:
    """The `member_name` values that are this member's outages.

    Monitors write `Details.Name` (exact, case-sensitive, B7). The member key is accepted
    too, unless it is another member's Details.Name.
    """
    names = [member.name]
    if member.key != member.name and all(other.name != member.key for other in config.members.values()):
        names.append(member.key)
    return tuple(names)


def member_bill_compute(
    *,
    config: NetworkConfig,
    costs: MemberCosts,
    rows: Sequence[OutageRow],
    window: MonthWindow,
    now: datetime,
    policy: CreditPolicy,
    tiers: CreditTiers = (),
) -> MemberBill:
    if costs.price is None:
        raise ValueError(f"member {costs.member.key!r} has no price; it cannot be billed")
    targets = [service_targets(key=sc.service.key, rpc_urls=sc.service.rpc_urls) for sc in costs.services]
    downtime = member_downtime(rows=rows, services=targets, window=window, now=now)
    lines: list[BillLine] = []
    month_seconds = window.seconds
    for service_cost in costs.services:
        service_downtime = downtime.services[service_cost.service.key]
        base = money_round(service_cost.cost)
        credit = sla_credit(
            base=base,
            downtime_seconds=service_downtime.downtime_seconds,
            month_seconds=month_seconds,
            policy=policy,
            tiers=tiers,
        )
        lines.append(
            BillLine(
                service=service_cost.service,
                price=costs.price,
                base_exact=service_cost.cost,
                base=base,
                credit=credit,
                billed=base - credit,
                downtime_seconds=service_downtime.downtime_seconds,
                month_seconds=month_seconds,
                service_outage_ids=service_downtime.service_outage_ids,
                site_outage_ids=service_downtime.site_outage_ids,
            )
        )
    return MemberBill(
        member=costs.member,
        price=costs.price,
        lines=tuple(lines),
        outages=downtime.outages,
        notes=costs.notes,
        site_outage_ids=downtime.site_outage_ids,
    )


def month_bills_compute(
    *,
    config: NetworkConfig,
    window: MonthWindow,
    rows: Iterable[OutageRow],
    now: datetime,
    policy: CreditPolicy,
    tiers: CreditTiers = (),
    member_keys: Iterable[str] | None = None,
) -> MonthBills:
    """Bills of every active, priced member of `config` (or of `member_keys`) for one month.

    `rows` are the outage rows that may overlap the month, of any member; rows of other
    members and rows outside the month are ignored here.
    """
    wanted = set(member_keys) if member_keys is not None else None
    by_name = _rows_by_member_name(rows)
    bills: list[MemberBill] = []
    inactive: list[MemberConfig] = []
    unpriced: list[MemberConfig] = []
    problems: list[str] = []
    for key in sorted(config.members):
        member = config.members[key]
        if wanted is not None and key not in wanted:
            continue
        costs = member_costs(config=config, member=member)
        if not member.active:
            inactive.append(member)
            continue
        problems.extend(costs.problems)
        if costs.price is None:
            unpriced.append(member)
            continue
        member_rows = [
            row for name in member_event_names(config=config, member=member) for row in by_name.get(name, ())
        ]
        bills.append(
            member_bill_compute(
                config=config, costs=costs, rows=member_rows, window=window, now=now, policy=policy, tiers=tiers
            )
        )
    return MonthBills(
        window=window,
        now=now,
        policy=policy,
        members=tuple(bills),
        inactive=tuple(inactive),
        problems=tuple(problems),
        unpriced=tuple(unpriced),
    )
