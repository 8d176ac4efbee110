"""Reads for statements, the billing API and the PDFs.

- Closed months are served from the stored statements (the figures as issued, never
  recomputed with today's config, B11). A closed month that was never generated is
  computed live with the config in force at its end.
- The current month (month to date) is computed live with the single SLA implementation
  (billing/bills.py → billing/sla.py), ongoing outages counted up to now.

Money is returned as Decimal; `as_api()` gives the JSON numbers api-contract §2.15/§2.16 ask for.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from billing.bills import MemberBill, MonthBills, member_event_names, month_bills_compute
from billing.models import DocumentStatus, MonthlyOverview, Statement, StatementLine
from billing.money import ZERO, money_sum, percent_floor
from billing.sla import (
    CountedOutage,
    CreditPolicy,
    MonthWindow,
    OutageRow,
    credit_policy_parse,
    credit_tiers_parse,
    month_window,
    month_window_containing,
)
from members.config_files import NetworkConfig
from members.selectors import ConfigInForce, NoConfigError, config_snapshot_in_force
from metrics.models import MemberEvent
from metrics.serializers import duration_text, rfc3339

API_UPTIME_DECIMALS = 6  # DECISIONS 17a: 6 in the API, 4 in documents
DOCUMENT_UPTIME_DECIMALS = 4


# --- inputs --------------------------------------------------------------------------------


def billing_policy() -> tuple[CreditPolicy, tuple[tuple[Decimal, Decimal], ...]]:
    """The credit policy and tiers from settings, validated (a bad setting is an error, not a guess)."""
    policy = credit_policy_parse(getattr(settings, "SLA_CREDIT_POLICY", CreditPolicy.BELOW_THRESHOLD.value))
    tiers = credit_tiers_parse(getattr(settings, "SLA_CREDIT_TIERS", [("0", "0")]))
    return policy, tiers


def outage_rows_for_month(
    *, window: MonthWindow, now: datetime, member_names: Collection[str] | None = None
) -> list[OutageRow]:
    """`member_events` rows that are outages (DECISIONS 2) and overlap `[month start, min(now, end))`."""
    limit = min(now, window.end)
    rows = MemberEvent.objects.filter(start_time__lt=limit).filter(
        Q(end_time__isnull=True) | Q(end_time__gt=window.start)
    )
    rows = rows.filter(Q(status=0) | Q(end_time__isnull=False))
    if member_names is not None:
        rows = rows.filter(member_name__in=list(member_names))
    fields = (
        "id",
        "check_type",
        "member_name",
        "domain_name",
        "endpoint",
        "status",
        "start_time",
        "end_time",
        "check_name",
        "is_ipv6",
    )
    return [
        OutageRow(
            id=row_id,
            check_type=check_type or "",
            member_name=member_name or "",
            # NULL columns (legacy or monitor-written rows) count, as '' (B8).
            domain_name=domain_name or "",
            endpoint=endpoint or "",
            status=status if status is not None else 0,
            start_time=start_time,
            end_time=end_time,
            check_name=check_name or "",
            is_ipv6=bool(is_ipv6),
        )
        for (
            row_id,
            check_type,
            member_name,
            domain_name,
            endpoint,
            status,
            start_time,
            end_time,
            check_name,
            is_ipv6,
        ) in rows.values_list(*fields).iterator(chunk_size=5000)
    ]


def member_event_names_for(config: NetworkConfig, member_keys: Iterable[str] | None = None) -> set[str]:
    keys = list(config.members) if member_keys is None else list(member_keys)
    return {name for key in keys for name in member_event_names(config=config, member=config.members[key])}


def month_bills_live(
    *, window: MonthWindow, now: datetime, member_keys: Iterable[str] | None = None
) -> tuple[MonthBills, ConfigInForce]:
    """Compute a month live: the config in force at min(now, month end), outages from the DB."""
    in_force = config_snapshot_in_force(at=min(now, window.end))
    keys = None if member_keys is None else [k for k in member_keys if k in in_force.config.members]
    policy, tiers = billing_policy()
    rows = outage_rows_for_month(window=window, now=now, member_names=member_event_names_for(in_force.config, keys))
    bills = month_bills_compute(
        config=in_force.config, window=window, rows=rows, now=now, policy=policy, tiers=tiers, member_keys=keys
    )
    return bills, in_force


# --- documents (JSON companions, PDF inputs) ------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    """RFC 3339 UTC to the second. isoformat() is C; strftime is several times slower, and a
    month can hold 100,000 outages."""
    if moment is None:
        return None
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="seconds")[:19] + "Z"


def counted_outage_record(outage: CountedOutage) -> dict[str, Any]:
    """How a counted outage is stored on a statement (and shown in documents)."""
    row = outage.row
    return {
        "id": row.id,
        "check_type": outage.kind.value,
        "check_name": row.check_name,
        "domain_name": row.domain_name,
        "endpoint": row.endpoint,
        "is_ipv6": row.is_ipv6,
        "start_time": _iso(row.start_time),
        "end_time": _iso(row.end_time),
        "status": "ongoing" if row.end_time is None else "resolved",
        "counted_start": _iso(outage.start),
        "counted_end": _iso(outage.end),
        "counted_seconds": outage.seconds,
    }


def statement_document(*, statement: Statement) -> dict[str, Any]:
    """Everything a statement shows, JSON-ready: the JSON companion, and the PDF's input."""
    lines = list(statement.lines.all())
    return {
        "number": statement.number,
        "revision": statement.revision,
        "status": statement.status,
        "supersedes_revision": statement.supersedes.revision if statement.supersedes else None,
        "month": statement.month_label,
        "member": {
            "key": statement.member_key,
            "name": statement.member_name,
            "level": statement.member_level,
            "region": statement.member_region,
        },
        "currency": "USD",
        "credit_policy": statement.credit_policy,
        "config_snapshot": statement.config_snapshot_id,
        "config_postdates_month": statement.config_postdates_month,
        "computed_at": _iso(statement.computed_at),
        "month_seconds": statement.month_seconds,
        "totals": {
            "base": str(statement.base_total),
            "credit": str(statement.credit_total),
            "billed": str(statement.billed_total),
            "services": statement.service_count,
            "services_missing_sla": statement.services_missing_sla,
            "meets_sla": statement.meets_sla,
            "downtime_seconds": statement.downtime_seconds,
            "service_seconds": statement.service_seconds,
            "uptime_percent": str(percent_floor_decimal(statement.uptime_percent, DOCUMENT_UPTIME_DECIMALS)),
        },
        "lines": [
            {
                "service_key": line.service_key,
                "service_name": line.service_name,
                "level_required": line.level_required,
                "resources": {
                    "nodes": line.nodes,
                    "cores": _plain(line.cores),
                    "memory": _plain(line.memory),
                    "disk": _plain(line.disk),
                    "bandwidth": _plain(line.bandwidth),
                },
                "unit_prices": {
                    "cores": _plain(line.price_cores),
                    "memory": _plain(line.price_memory),
                    "disk": _plain(line.price_disk),
                    "bandwidth": _plain(line.price_bandwidth),
                },
                "base": str(line.base),
                "credit": str(line.credit),
                "billed": str(line.billed),
                "downtime_seconds": line.downtime_seconds,
                "month_seconds": line.month_seconds,
                "uptime_percent": str(percent_floor_decimal(line.uptime_percent, DOCUMENT_UPTIME_DECIMALS)),
                "meets_sla": line.meets_sla,
                "service_outage_ids": list(line.service_outage_ids),
            }
            for line in lines
        ],
        "outages": list(statement.outages),
        "content_hash": statement.content_hash,
    }


STATEMENT_CSV_HEADER = [
    "number",
    "revision",
    "month",
    "member",
    "service",
    "level_required",
    "nodes",
    "cores",
    "memory",
    "disk",
    "bandwidth",
    "base",
    "downtime_seconds",
    "month_seconds",
    "uptime_percent",
    "meets_sla",
    "credit",
    "billed",
]


def statement_csv(*, statement: Statement) -> str:
    """One row per line and a TOTAL row that is the sum of the lines above it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_CSV_HEADER)
    common = [statement.number, statement.revision, statement.month_label, statement.member_key]
    for line in statement.lines.all():
        writer.writerow(
            [
                *common,
                line.service_key,
                line.level_required,
                line.nodes,
                _plain(line.cores),
                _plain(line.memory),
                _plain(line.disk),
                _plain(line.bandwidth),
                line.base,
                line.downtime_seconds,
                line.month_seconds,
                percent_floor_decimal(line.uptime_percent, DOCUMENT_UPTIME_DECIMALS),
                "yes" if line.meets_sla else "no",
                line.credit,
                line.billed,
            ]
        )
    writer.writerow(
        [
            *common,
            "TOTAL",
            "",
            "",
            "",
            "",
            "",
            "",
            statement.base_total,
            statement.downtime_seconds,
            statement.service_seconds,
            percent_floor_decimal(statement.uptime_percent, DOCUMENT_UPTIME_DECIMALS),
            "yes" if statement.meets_sla else "no",
            statement.credit_total,
            statement.billed_total,
        ]
    )
    return out.getvalue()


def overview_document(*, overview: MonthlyOverview) -> dict[str, Any]:
    return {
        "month": overview.month_label,
        "revision": overview.revision,
        "status": overview.status,
        "currency": "USD",
        "credit_policy": overview.credit_policy,
        "config_snapshot": overview.config_snapshot_id,
        "config_postdates_month": overview.config_postdates_month,
        "computed_at": _iso(overview.computed_at),
        "totals": {
            "base": str(overview.base_total),
            "credit": str(overview.credit_total),
            "billed": str(overview.billed_total),
            "active_members": overview.active_members,
            "inactive_members": overview.inactive_members,
            "service_lines": overview.service_lines,
            "services_missing_sla": overview.services_missing_sla,
            "uptime_percent": str(percent_floor_decimal(overview.uptime_percent, DOCUMENT_UPTIME_DECIMALS)),
        },
        "members": list(overview.members),
        "problems": list(overview.problems),
        "content_hash": overview.content_hash,
    }


OVERVIEW_CSV_HEADER = [
    "month",
    "member",
    "status",
    "statement",
    "services",
    "uptime_percent",
    "meets_sla",
    "base",
    "credit",
    "billed",
]


def overview_csv(*, overview: MonthlyOverview) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(OVERVIEW_CSV_HEADER)
    for member in overview.members:
        writer.writerow(
            [
                overview.month_label,
                member["key"],
                member["status"],
                member.get("statement_number") or "",
                member["services"],
                member["uptime_percent"],
                "yes" if member["meets_sla"] else "no",
                member["base"],
                member["credit"],
                member["billed"],
            ]
        )
    writer.writerow(
        [
            overview.month_label,
            "TOTAL",
            "",
            "",
            overview.service_lines,
            percent_floor_decimal(overview.uptime_percent, DOCUMENT_UPTIME_DECIMALS),
            "",
            overview.base_total,
            overview.credit_total,
            overview.billed_total,
        ]
    )
    return out.getvalue()


def _plain(value: Decimal) -> str:
    """A stored Decimal without its padding zeros: 16.000000 → '16', 0.1787500000 → '0.17875'."""
    return format(value.normalize(), "f")


def percent_floor_decimal(value: Decimal, decimals: int) -> Decimal:
    """A stored percentage (6 places, already floored) floored again to fewer places."""
    return percent_floor(Fraction(value) / 100, decimals=decimals)


# --- stored statements ----------------------------------------------------------------------------


def statements_current(*, month: date, member_key: str | None = None) -> list[Statement]:
    """The issued (current) statement of each member for a month, by member key."""
    rows = Statement.objects.filter(month=month, status=DocumentStatus.ISSUED)
    if member_key is not None:
        rows = rows.filter(member_key=member_key)
    return list(rows.order_by("member_key").prefetch_related("lines"))


def statement_current(*, month: date, member_key: str) -> Statement | None:
    return (
        Statement.objects.filter(month=month, member_key=member_key, status=DocumentStatus.ISSUED)
        .prefetch_related("lines")
        .first()
    )


def statement_revisions(*, month: date, member_key: str) -> list[Statement]:
    return list(
        Statement.objects.filter(month=month, member_key=member_key)
        .exclude(status=DocumentStatus.DRAFT)
        .order_by("revision")
    )


def overview_current(*, month: date) -> MonthlyOverview | None:
    return MonthlyOverview.objects.filter(month=month, status=DocumentStatus.ISSUED).first()


def billing_month_has_statements(*, month: date) -> bool:
    """The persisted "generated" marker of DECISIONS 17: an issued overview or statement exists."""
    return (
        MonthlyOverview.objects.filter(month=month).exclude(status=DocumentStatus.DRAFT).exists()
        or Statement.objects.filter(month=month).exclude(status=DocumentStatus.DRAFT).exists()
    )


def billing_months_issued() -> list[date]:
    """Months with issued statements, newest first (for PDF listings)."""
    return list(
        Statement.objects.filter(status=DocumentStatus.ISSUED)
        .order_by("-month")
        .values_list("month", flat=True)
        .distinct()
    )


# --- revision diff (admin) ------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureChange:
    subject: str  # "total" or a service key
    figure: str
    old: str
    new: str


def statement_revision_diff(*, statement: Statement) -> list[FigureChange]:
    """What changed from the revision this one supersedes: totals and every line figure."""
    previous = statement.supersedes
    if previous is None:
        return []
    changes: list[FigureChange] = []
    for figure in ("base_total", "credit_total", "billed_total", "downtime_seconds", "uptime_percent", "meets_sla"):
        old, new = getattr(previous, figure), getattr(statement, figure)
        if old != new:
            changes.append(FigureChange("total", figure, str(old), str(new)))
    old_lines = {line.service_key: line for line in previous.lines.all()}
    new_lines = {line.service_key: line for line in statement.lines.all()}
    for key in sorted(old_lines.keys() | new_lines.keys()):
        old_line, new_line = old_lines.get(key), new_lines.get(key)
        if old_line is None or new_line is None:
            changes.append(
                FigureChange(
                    key,
                    "line",
                    "absent" if old_line is None else "present",
                    "absent" if new_line is None else "present",
                )
            )
            continue
        for figure in ("base", "credit", "billed", "downtime_seconds", "uptime_percent", "meets_sla"):
            old, new = getattr(old_line, figure), getattr(new_line, figure)
            if old != new:
                changes.append(FigureChange(key, figure, str(old), str(new)))
    return changes


# --- the billing API (api-contract §2.15, §2.16) ------------------------------------------------


@dataclass(frozen=True)
class BreakdownService:
    name: str
    base_cost: Decimal
    uptime_percentage: Decimal  # floored to 6 places
    billed_cost: Decimal
    credits: Decimal
    meets_sla: bool
    downtime_seconds: int
    # Counted outages (see counted_outage_record), newest first; None unless asked for.
    downtime_events: list[dict[str, Any]] | None = None

    def as_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "base_cost": float(self.base_cost),
            "uptime_percentage": float(self.uptime_percentage),
            "billed_cost": float(self.billed_cost),
            "credits": float(self.credits),
            "meets_sla": self.meets_sla,
        }
        if self.downtime_events:
            data["downtime_events"] = self.downtime_events
        return data


@dataclass(frozen=True)
class BreakdownMember:
    name: str  # the member key
    level: int
    services: list[BreakdownService]
    total_base_cost: Decimal
    total_billed: Decimal
    total_credits: Decimal
    meets_sla: bool
    statement_number: str = ""
    statement_revision: int = 0

    def as_api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "level": self.level,
            "services": [service.as_api() for service in self.services],
            "total_base_cost": float(self.total_base_cost),
            "total_billed": float(self.total_billed),
            "total_credits": float(self.total_credits),
            "meets_sla": self.meets_sla,
        }


@dataclass(frozen=True)
class BillingBreakdown:
    month: str  # YYYY-MM
    source: str  # "statements" (issued figures) or "live" (computed now)
    members: list[BreakdownMember]
    computed_at: datetime | None
    problems: list[str] = field(default_factory=list)

    @property
    def total_base_cost(self) -> Decimal:
        return money_sum(m.total_base_cost for m in self.members)

    @property
    def total_billed(self) -> Decimal:
        return money_sum(m.total_billed for m in self.members)

    @property
    def total_credits(self) -> Decimal:
        return money_sum(m.total_credits for m in self.members)

    def as_api(self) -> dict[str, Any]:
        """The §2.15 body, keys in alphabetical order at the top as the reference has them."""
        return {
            "members": [member.as_api() for member in self.members],
            "month": self.month,
            "total_base_cost": float(self.total_base_cost),
            "total_billed": float(self.total_billed),
            "total_credits": float(self.total_credits),
        }


def _events_newest_first(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["start_time"] or "", r["id"]), reverse=True)


def breakdown_event(record: Mapping[str, Any], *, member_name: str, error: str | None) -> dict[str, Any]:
    """A counted outage (counted_outage_record) as `downtime_events` shows it.

    The keys and their order are those of the downtime/events object (api-contract §2.6),
    then the counted part. `duration` is the counted part (§2.15: recomputed from the clipped
    times), in the §1.10.2 text. An open outage has no `end_time`, as everywhere else (Q14);
    `counted_end` says where the count stopped. `error` is left out when empty, as in §2.6.
    """
    event: dict[str, Any] = {
        "id": record["id"],
        "member_name": member_name,
        "check_type": record["check_type"],
        "check_name": record["check_name"],
        "domain_name": record["domain_name"],
        "endpoint": record["endpoint"],
        "start_time": record["start_time"],
    }
    if record.get("end_time") is not None:
        event["end_time"] = record["end_time"]
    event["duration"] = duration_text(int(record["counted_seconds"]))
    if error:
        event["error"] = error
    event["is_ipv6"] = bool(record["is_ipv6"])
    event["status"] = record["status"]
    event["counted_start"] = record["counted_start"]
    event["counted_end"] = record["counted_end"]
    event["counted_seconds"] = record["counted_seconds"]
    return event


def _outage_errors(row_ids: Collection[int]) -> dict[int, str]:
    """The `error` text of these outage rows (statements do not store it)."""
    if not row_ids:
        return {}
    rows = MemberEvent.objects.filter(pk__in=list(row_ids)).exclude(error__isnull=True).exclude(error="")
    return dict(rows.values_list("id", "error"))


def _with_breakdown_events(members: list[BreakdownMember]) -> list[BreakdownMember]:
    """Each service's counted outages shaped by `breakdown_event`, with one query for the errors."""
    ids = {record["id"] for m in members for s in m.services for record in s.downtime_events or ()}
    errors = _outage_errors(ids)
    return [
        replace(
            member,
            services=[
                replace(
                    service,
                    downtime_events=[
                        breakdown_event(record, member_name=record["member_name"], error=errors.get(record["id"]))
                        for record in service.downtime_events
                    ],
                )
                if service.downtime_events is not None
                else service
                for service in member.services
            ],
        )
        for member in members
    ]


def _breakdown_member_from_bill(bill: MemberBill, *, include_downtime: bool) -> BreakdownMember:
    records = {outage_id: counted_outage_record(outage) for outage_id, outage in bill.outages.items()}
    for record in records.values():
        record["member_name"] = bill.member.name
    services = [
        BreakdownService(
            name=line.service.key,
            base_cost=line.base,
            uptime_percentage=line.uptime_percent(decimals=API_UPTIME_DECIMALS),
            billed_cost=line.billed,
            credits=line.credit,
            meets_sla=line.meets_sla,
            downtime_seconds=line.downtime_seconds,
            downtime_events=_events_newest_first(records[i] for i in line.outage_ids) if include_downtime else None,
        )
        for line in sorted(bill.lines, key=lambda line: line.service.key)
    ]
    return BreakdownMember(
        name=bill.member.key,
        level=bill.member.level,
        services=services,
        total_base_cost=bill.base,
        total_billed=bill.billed,
        total_credits=bill.credit,
        meets_sla=bill.meets_sla,
    )


def _breakdown_member_from_statement(statement: Statement, *, include_downtime: bool) -> BreakdownMember:
    services = [
        BreakdownService(
            name=line.service_key,
            base_cost=line.base,
            uptime_percentage=line.uptime_percent,
            billed_cost=line.billed,
            credits=line.credit,
            meets_sla=line.meets_sla,
            downtime_seconds=line.downtime_seconds,
            downtime_events=_events_newest_first(
                {**outage, "member_name": statement.member_name} for outage in line.counted_outages()
            )
            if include_downtime
            else None,
        )
        for line in sorted(statement.lines.all(), key=lambda line: line.service_key)
    ]
    return BreakdownMember(
        name=statement.member_key,
        level=statement.member_level,
        services=services,
        total_base_cost=statement.base_total,
        total_billed=statement.billed_total,
        total_credits=statement.credit_total,
        meets_sla=statement.meets_sla,
        statement_number=statement.number,
        statement_revision=statement.revision,
    )


def billing_breakdown(
    *,
    year: int,
    month: int,
    member: str | None = None,
    include_downtime: bool = False,
    now: datetime | None = None,
) -> BillingBreakdown:
    """SLA-adjusted billing per member and service for one month (api-contract §2.15).

    `member` is the member key (exact); an unknown key gives no members, not an error
    (the dashboard relies on a 200). A month that has ended and has issued statements is
    answered from them; any other month is computed live. With no config at all, the
    answer is empty (DECISIONS 19: zeros and empty lists).
    """
    now = now or timezone.now()
    window = month_window(year=year, month=month)
    if window.has_ended(now=now):
        issued = statements_current(month=window.first_day, member_key=member)
        if issued or (member is None and overview_current(month=window.first_day) is not None):
            overview = overview_current(month=window.first_day)
            members = [_breakdown_member_from_statement(s, include_downtime=include_downtime) for s in issued]
            return BillingBreakdown(
                month=window.label,
                source="statements",
                members=_with_breakdown_events(members) if include_downtime else members,
                computed_at=max((s.computed_at for s in issued), default=None),
                problems=list(overview.problems) if overview else [],
            )
    if window.start > now:
        return BillingBreakdown(month=window.label, source="live", members=[], computed_at=now)
    try:
        bills, _ = month_bills_live(window=window, now=now, member_keys=None if member is None else [member])
    except NoConfigError:
        return BillingBreakdown(month=window.label, source="live", members=[], computed_at=now)
    members = [_breakdown_member_from_bill(bill, include_downtime=include_downtime) for bill in bills.members]
    return BillingBreakdown(
        month=window.label,
        source="live",
        members=_with_breakdown_events(members) if include_downtime else members,
        computed_at=now,
        problems=list(bills.problems),
    )


@dataclass(frozen=True)
class BillingSummary:
    total_members: int
    total_services: int
    unique_services: int
    total_base_cost_monthly: Decimal
    current_month_credits: Decimal
    current_month_sla_violations: int
    service_distribution: dict[str, int]
    last_refresh: datetime | None

    def as_api(self) -> dict[str, Any]:
        refresh = self.last_refresh.astimezone(UTC) if self.last_refresh else None
        return {
            "current_month_credits": float(self.current_month_credits),
            "current_month_sla_violations": self.current_month_sla_violations,
            # api-contract §1.5: fractional seconds only when non-zero, trailing zeros trimmed.
            "last_refresh": rfc3339(refresh) if refresh else "0001-01-01T00:00:00Z",
            "service_distribution": dict(sorted(self.service_distribution.items())),
            "total_base_cost_monthly": float(self.total_base_cost_monthly),
            "total_members": self.total_members,
            "total_services": self.total_services,
            "unique_services": self.unique_services,
        }


def billing_summary(*, now: datetime | None = None) -> BillingSummary:
    """The current month to date (api-contract §2.16), with the single SLA implementation."""
    now = now or timezone.now()
    try:
        bills, in_force = month_bills_live(window=month_window_containing(now), now=now)
    except NoConfigError:
        return BillingSummary(0, 0, 0, ZERO, ZERO, 0, {}, None)
    distribution: dict[str, int] = {}
    for bill in bills.members:
        for line in bill.lines:
            distribution[line.service.key] = distribution.get(line.service.key, 0) + 1
    return BillingSummary(
        total_members=len(bills.members),
        total_services=sum(len(bill.lines) for bill in bills.members),
        unique_services=len(distribution),
        total_base_cost_monthly=bills.base,
        current_month_credits=bills.credit,
        current_month_sla_violations=sum(1 for bill in bills.members for line in bill.lines if not line.meets_sla),
        service_distribution=distribution,
        last_refresh=in_force.snapshot.applied_at,
    )


__all__ = [
    "BillingBreakdown",
    "BillingSummary",
    "StatementLine",
    "billing_breakdown",
    "billing_month_has_statements",
    "billing_summary",
    "overview_current",
    "overview_document",
    "statement_current",
    "statement_document",
    "statement_revision_diff",
    "statements_current",
]
