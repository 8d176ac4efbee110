"""Template contexts of the three PDFs, built from the stored records only.

Every figure printed comes from a Statement, its StatementLines, a MonthlyOverview, the
CostSummary, the config snapshot a record points to, or the frozen usage figures
(billing/pdf/usage.py). Nothing here prices or rounds money: amounts are formatted as
stored. The only sums are of rounded lines that a page prints together (level totals), and
each document checks that its printed totals equal the sums of its printed lines, so a PDF
never shows figures that do not add up (`DocumentMismatch`).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.exceptions import ObjectDoesNotExist

from billing.costs import CostSummary
from billing.models import DocumentStatus, MonthlyOverview, Statement, StatementLine
from billing.money import money_sum
from billing.pdf import formatting as fmt
from billing.pdf.fonts import text_html
from billing.pdf.linebreak import text_line_count
from members.config_files import MemberConfig, NetworkConfig

AUTHOR = "IBP Collator"
SLA_TARGET = "99.99%"
CHECK_TYPES = {"1": "site", "2": "domain", "3": "endpoint", "site": "site", "domain": "domain", "endpoint": "endpoint"}


class DocumentMismatch(ValueError):
    """A record whose printed totals would not equal the sums of its printed lines."""


def _check_sum(what: str, total: Decimal, parts: Sequence[Decimal]) -> None:
    summed = money_sum(parts)
    if summed != total:
        raise DocumentMismatch(f"{what}: the lines add up to {summed}, the record says {total}")


def status_banner(record: Statement | MonthlyOverview) -> str:
    """What a draft or superseded document says on every page (the superseded stamp too)."""
    if record.status == DocumentStatus.DRAFT:
        return "DRAFT: provisional figures for a month that has not been issued; not an invoice"
    if record.status == DocumentStatus.SUPERSEDED:
        try:
            newer = record.superseded_by
        except ObjectDoesNotExist:
            newer = None
        by = f" by revision {newer.revision} of {newer.created_at:%Y-%m-%d}" if newer is not None else ""
        return f"SUPERSEDED{by}: this revision is no longer valid"
    return ""


# The page header (templates/billing/base.html): A4, 1.2 cm side margins, the right cell 32 %
# of the width with 4 + 8 pt padding, the name in 10 pt bold. Heights in cm.
_CM = 72 / 2.54
_PAGE_WIDTH_CM = {"portrait": 21.0, "landscape": 29.7}
_SIDE_MARGIN_CM = 1.2
_HEADER_CM = 2.2  # logo, heading and period, and up to two lines of the name on the right
_BANNER_CM = 0.6
_NAME_PT = 10.0
_NAME_LINE_PT = 13.5  # 10 pt text with the CJK font's taller ascent
_NAME_LINES_IN_CELL = 2


def _header_layout(*, right_text: str, orientation: str, banner: str) -> dict[str, Any]:
    """How tall the page header is, so that a long name (the member key) wraps in it whole.

    xhtml2pdf drops a header that does not fit its frame, on every page, so the frame is sized
    from the name's lines, measured with the renderer's own line breaking. A name of more than
    two lines in the right cell gets a full-width row of its own under the heading.
    """
    table_pt = (_PAGE_WIDTH_CM[orientation] - 2 * _SIDE_MARGIN_CM) * _CM
    lines = text_line_count(right_text, width=table_pt * 0.32 - 12, font_size=_NAME_PT, bold=True)
    own_row = lines > _NAME_LINES_IN_CELL
    height = _HEADER_CM + (_BANNER_CM if banner else 0)
    if own_row:
        rows = text_line_count(right_text, width=table_pt - 16, font_size=_NAME_PT, bold=True)
        height += (rows * _NAME_LINE_PT + 6) / _CM
    return {"right_row": own_row, "header_height": f"{height:.2f}cm", "margin_top": f"{height + 0.7:.2f}cm"}


def _document(
    *,
    title: str,
    subject: str,
    record: Statement | MonthlyOverview | None,
    now: datetime,
    right_text: str,
    orientation: str,
    **extra: Any,
) -> dict[str, Any]:
    banner = status_banner(record) if record is not None else ""
    return {
        "title": title,
        "author": AUTHOR,
        "subject": subject,
        "generated": fmt.timestamp(now),
        "banner": banner,
        "right": text_html(right_text),
        "orientation": orientation,
        **_header_layout(right_text=right_text, orientation=orientation, banner=banner),
        **extra,
    }


# --- the member statement ---------------------------------------------------------------------


def _outage_row(outage: dict[str, Any]) -> dict[str, Any]:
    target = outage.get("endpoint") or outage.get("domain_name") or "all services of the member"
    kind = CHECK_TYPES.get(str(outage.get("check_type", "")), str(outage.get("check_type", "")))
    detail = outage.get("check_name") or ""
    if outage.get("is_ipv6"):
        detail = f"{detail} (IPv6)".strip()
    return {
        "kind": kind,
        "target": text_html(target),
        "check": text_html(detail),
        "start": fmt.timestamp(outage.get("counted_start"), seconds=True),
        "end": fmt.timestamp(outage.get("counted_end"), seconds=True)
        + (" (ongoing)" if outage.get("status") == "ongoing" else ""),
        "duration": fmt.duration_exact(int(outage.get("counted_seconds") or 0)),
    }


def _line_row(line: StatementLine, outages: dict[int, dict[str, Any]]) -> dict[str, Any]:
    counted = [outages[int(i)] for i in line.outage_ids if int(i) in outages]
    counted.sort(key=lambda o: (o.get("counted_start") or "", o["id"]))
    return {
        "name": text_html(line.service_name or line.service_key),
        "key": line.service_key,
        "resources": (
            f"{line.nodes} × ({fmt.resource(line.cores)} cores, {fmt.resource(line.memory)} GB RAM, "
            f"{fmt.resource(line.disk)} GB disk, {fmt.resource(line.bandwidth)} GB bandwidth)"
        ),
        "base": fmt.money(line.base),
        "uptime": fmt.uptime(line.uptime_percent),
        "credit": fmt.money_credit(line.credit),
        "billed": fmt.money(line.billed),
        "meets_sla": line.meets_sla,
        "downtime": fmt.duration(line.downtime_seconds),
        "outages": [_outage_row(o) for o in counted],
    }


def _member_info(statement: Statement, member: MemberConfig | None, usage: dict[str, Any]) -> list[tuple[str, Any]]:
    requests = int(usage.get("members", {}).get(statement.member_key, 0))
    whole = int(usage.get("total_requests", 0))
    rows: list[tuple[str, Any]] = [("Member", text_html(statement.member_key))]
    if statement.member_name and statement.member_name != statement.member_key:
        rows.append(("Name", text_html(statement.member_name)))
    if member is not None and member.website:
        rows.append(("Website", text_html(member.website)))
    since = fmt.month_year(member.joined) if member is not None else "–"
    rows.append(("Level", f"{statement.member_level} (member since {since})"))
    rows.append(("Region", text_html(statement.member_region or "–")))
    if member is not None:
        rows.append(("Coordinates", f"{member.latitude:.4f}, {member.longitude:.4f}"))
        rows.append(("IPv4", text_html(member.ipv4 or "–")))
        rows.append(("IPv6", text_html(member.ipv6 or "–")))
    rows.append(("DNS requests", f"{fmt.count(requests)} ({fmt.share(requests, whole)} of the network)"))
    return rows


def statement_context(
    *,
    statement: Statement,
    config: NetworkConfig | None,
    usage: dict[str, Any],
    now: datetime,
    member_logo: Path | None,
    ibp_logo: Path | None,
) -> dict[str, Any]:
    lines = sorted(statement.lines.all(), key=lambda line: line.position)
    _check_sum(f"{statement.number} base", statement.base_total, [line.base for line in lines])
    _check_sum(f"{statement.number} credit", statement.credit_total, [line.credit for line in lines])
    _check_sum(f"{statement.number} billed", statement.billed_total, [line.billed for line in lines])
    if len(lines) != statement.service_count:
        raise DocumentMismatch(f"{statement.number}: {len(lines)} lines, the record says {statement.service_count}")
    outages = statement.outages_by_id()
    member = config.members.get(statement.member_key) if config is not None else None

    levels: dict[int, list[StatementLine]] = {}
    for line in lines:
        levels.setdefault(line.level_required, []).append(line)
    groups = []
    for level in sorted(levels):
        members_lines = sorted(levels[level], key=lambda line: line.service_key)
        groups.append(
            {
                "level": level,
                "lines": [_line_row(line, outages) for line in members_lines],
                "count": len(members_lines),
                "base": fmt.money(money_sum(line.base for line in members_lines)),
                "credit": fmt.money_credit(money_sum(line.credit for line in members_lines)),
                "billed": fmt.money(money_sum(line.billed for line in members_lines)),
            }
        )
    month_title = fmt.month_title(statement.month)
    nodes = sum(line.nodes for line in lines)
    resources = {
        "services": statement.service_count,
        "nodes": nodes,
        "cores": fmt.resource(sum((line.cores * line.nodes for line in lines), Decimal(0))),
        "memory": fmt.resource(sum((line.memory * line.nodes for line in lines), Decimal(0))),
        "disk": fmt.resource(sum((line.disk * line.nodes for line in lines), Decimal(0))),
        "bandwidth": fmt.resource(sum((line.bandwidth * line.nodes for line in lines), Decimal(0))),
    }
    return {
        "doc": _document(
            title=f"IBP Service Statement {statement.number} – {statement.member_key}",
            subject=f"Statement {statement.number} revision {statement.revision} for {month_title}",
            record=statement,
            now=now,
            heading="IBP Service Statement",
            period=fmt.period(statement.month, statement.month_seconds),
            reference=f"{statement.number} rev. {statement.revision}",
            right_text=statement.member_key,
            ibp_logo=str(ibp_logo) if ibp_logo else "",
            orientation="portrait",
        ),
        "statement": {
            "number": statement.number,
            "revision": statement.revision,
            "status": statement.status,
            "issued": fmt.timestamp(statement.created_at) if statement.created_at else fmt.timestamp(now),
            "month": month_title,
            "supersedes": statement.supersedes.revision if statement.supersedes_id else None,
            "config_postdates_month": statement.config_postdates_month,
            "credit_policy": statement.credit_policy.replace("_", " "),
        },
        "member_logo": str(member_logo) if member_logo else "",
        "member_info": _member_info(statement, member, usage),
        "usage_taken_at": fmt.timestamp(usage.get("taken_at")),
        "summary": {
            "base": fmt.money(statement.base_total),
            "credit": fmt.money_credit(statement.credit_total),
            "billed": fmt.money(statement.billed_total),
            "uptime": fmt.uptime(statement.uptime_percent),
            "meets_sla": statement.meets_sla,
            "services_missing_sla": statement.services_missing_sla,
            "downtime": fmt.unbroken(fmt.duration(statement.downtime_seconds)),
            "outages": len(outages),
        },
        "resources": resources,
        "groups": groups,
        "sla_target": SLA_TARGET,
    }


# --- the monthly overview ---------------------------------------------------------------------


def _day_split(start: datetime, end: datetime) -> list[tuple[date, int]]:
    """Seconds of [start, end) per UTC day."""
    parts: list[tuple[date, int]] = []
    cursor = start
    while cursor < end:
        next_day = datetime.combine(cursor.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        stop = min(end, next_day)
        parts.append((cursor.date(), int((stop - cursor).total_seconds())))
        cursor = stop
    return parts


def _calendar(month: date, month_seconds: int, statements: Sequence[Statement]) -> dict[str, Any]:
    """One cell per day: outages that started that day (each outage once, whatever it hit) and
    their downtime that day. Weeks start on Monday."""
    seen: set[int] = set()
    started: dict[date, int] = {}
    down: dict[date, int] = {}
    for statement in statements:
        for outage in statement.outages:
            if outage["id"] in seen or not outage.get("counted_start") or not outage.get("counted_end"):
                continue
            seen.add(outage["id"])
            start = datetime.fromisoformat(outage["counted_start"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(outage["counted_end"].replace("Z", "+00:00"))
            started[start.date()] = started.get(start.date(), 0) + 1
            for day, seconds in _day_split(start, end):
                down[day] = down.get(day, 0) + seconds
    days = month_seconds // 86400
    weeks: list[list[dict[str, Any] | None]] = []
    week: list[dict[str, Any] | None] = [None] * month.weekday()
    for number in range(1, days + 1):
        day = month.replace(day=number)
        events = started.get(day, 0)
        level = (
            "none"
            if events == 0 and not down.get(day)
            else ("low" if events <= 2 else ("mid" if events <= 4 else "high"))
        )
        week.append(
            {
                "day": number,
                "events": events,
                "downtime": fmt.duration(down.get(day, 0)) if down.get(day) else "",
                "level": level,
            }
        )
        if len(week) == 7:
            weeks.append(week)
            week = []
    if week:
        weeks.append(week + [None] * (7 - len(week)))
    return {"weekdays": list(calendar.day_abbr), "weeks": weeks, "outages": len(seen)}


def _top_rows(items: list[dict[str, Any]], label: str, total: int) -> list[dict[str, Any]]:
    rows = []
    for rank, item in enumerate(items, start=1):
        before = item.get("before", {})
        rows.append(
            {
                "rank": rank,
                "label": text_html(label.format(**item)),
                "requests": fmt.count(item["requests"]),
                "share": fmt.share(item["requests"], total),
                "changes": [fmt.change(item["requests"], before.get(str(back))) for back in (1, 3, 6)],
            }
        )
    return rows


def overview_context(
    *,
    overview: MonthlyOverview,
    statements: Sequence[Statement],
    usage: dict[str, Any],
    now: datetime,
    ibp_logo: Path | None,
) -> dict[str, Any]:
    by_key = {s.member_key: s for s in statements if s.month == overview.month}
    member_rows = sorted(overview.members, key=lambda m: (-int(m.get("level") or 0), m["key"]))
    for what, field, total in (
        ("base", "base", overview.base_total),
        ("credit", "credit", overview.credit_total),
        ("billed", "billed", overview.billed_total),
    ):
        _check_sum(f"overview {overview.month_label} {what}", total, [Decimal(m[field]) for m in member_rows])
    total_requests = int(usage.get("total_requests", 0))
    rows = []
    services_with_downtime = 0
    attributed = 0
    for member in member_rows:
        statement = by_key.get(member["key"])
        lines = list(statement.lines.all()) if statement is not None else []
        down = sum(1 for line in lines if line.downtime_seconds > 0)
        services_with_downtime += down
        requests = int(usage.get("members", {}).get(member["key"], 0))
        attributed += requests
        billed = member["status"] == "billed"
        rows.append(
            {
                "name": text_html(member["key"]),
                "number": member.get("statement_number") or "",
                "level": member.get("level", ""),
                "requests": fmt.count(requests),
                "share": fmt.share(requests, total_requests),
                "services": member.get("services", 0),
                "down": down,
                "downtime": fmt.duration(statement.downtime_seconds) if statement is not None else "–",
                "uptime": fmt.uptime(member.get("uptime_percent")) if billed else "–",
                "base": fmt.money(member["base"]),
                "credit": fmt.money_credit(member["credit"]),
                "billed": fmt.money(member["billed"]),
                "status": member["status"],
                "meets_sla": bool(member.get("meets_sla")),
            }
        )
    # Answers that pointed to no member ("(none)") or to a name not in the config: a row of
    # their own, so that the requests column adds up to the month's total.
    unattributed = max(total_requests - attributed, 0)
    if unattributed:
        rows.append(
            {
                "name": "No member",
                "number": "answers that pointed to no member",
                "level": "",
                "requests": fmt.count(unattributed),
                "share": fmt.share(unattributed, total_requests),
                "services": "",
                "down": "",
                "downtime": "",
                "uptime": "–",
                "base": "–",
                "credit": "–",
                "billed": "–",
                "status": "",
                "meets_sla": True,
            }
        )
    month_title = fmt.month_title(overview.month)
    return {
        "doc": _document(
            title=f"IBP Monthly Overview – {month_title}",
            subject=f"Network billing overview for {month_title}, revision {overview.revision}",
            record=overview,
            now=now,
            heading="IBP Monthly Billing Overview",
            period=fmt.period(overview.month, overview.month_seconds),
            reference=f"Overview {overview.month_label} rev. {overview.revision}",
            right_text=month_title,
            ibp_logo=str(ibp_logo) if ibp_logo else "",
            orientation="landscape",
        ),
        "cards": [
            ("DNS requests", fmt.count(total_requests), ""),
            ("Active members", str(overview.active_members), f"{overview.inactive_members} inactive"),
            ("Average uptime", fmt.uptime(overview.uptime_percent), f"SLA target {SLA_TARGET}"),
            ("Base cost", fmt.money(overview.base_total), "before SLA credits"),
            ("Billed", fmt.money(overview.billed_total), "after SLA credits"),
            ("SLA credits", fmt.money_credit(overview.credit_total), overview.credit_policy.replace("_", " ")),
        ],
        "health": {
            "service_lines": overview.service_lines,
            "with_downtime": services_with_downtime,
            "sla_misses": overview.services_missing_sla,
        },
        "calendar": _calendar(overview.month, overview.month_seconds, list(by_key.values())),
        "members": rows,
        "totals": {
            "requests": fmt.count(attributed + unattributed),
            "services": sum(int(m.get("services") or 0) for m in member_rows),
            "base": fmt.money(overview.base_total),
            "credit": fmt.money_credit(overview.credit_total),
            "billed": fmt.money(overview.billed_total),
            "uptime": fmt.uptime(overview.uptime_percent),
        },
        "countries": _top_rows(
            [
                {**c, "label": f"{c['name'] or 'Unknown'} ({c['code']})" if c["code"] else "Unknown"}
                for c in usage.get("top_countries", [])
            ],
            "{label}",
            total_requests,
        ),
        "services": _top_rows(usage.get("top_services", []), "{service}", total_requests),
        "usage_taken_at": fmt.timestamp(usage.get("taken_at")),
        "problems": [text_html(p) for p in overview.problems],
        "config_postdates_month": overview.config_postdates_month,
        "sla_target": SLA_TARGET,
    }


# --- the daily cost summary -------------------------------------------------------------------


def cost_summary_context(*, summary: CostSummary, now: datetime, ibp_logo: Path | None) -> dict[str, Any]:
    services = []
    for service in summary.services:
        services.append(
            {
                "name": text_html(service.name or service.key),
                "level": service.level_required,
                "rows": [(text_html(member), fmt.money(cost)) for member, cost in service.member_costs],
                "total": fmt.money(service.total),
            }
        )
    # The grand total is the sum of the member totals; it must equal the sum of the service totals.
    _check_sum("cost summary", summary.total, [service.total for service in summary.services])
    day = f"{summary.day:%-d %B %Y}"
    return {
        "doc": _document(
            title=f"IBP Network – Cost by Service, {summary.day:%Y-%m-%d}",
            subject=f"Monthly base cost per service and member, config in force on {summary.day:%Y-%m-%d}",
            record=None,
            now=now,
            heading="IBP Network – Cost by Service",
            period=f"Monthly base cost (USD, before SLA credits) as of {day}",
            reference=f"service_cost_{summary.day:%Y%m%d}",
            right_text=day,
            ibp_logo=str(ibp_logo) if ibp_logo else "",
            orientation="portrait",
        ),
        "services": services,
        "members": [(text_html(member), fmt.money(total)) for member, total in summary.member_totals],
        "inactive": [text_html(m) for m in summary.inactive_members],
        "total": fmt.money(summary.total),
        "problems": [text_html(p) for p in summary.problems],
    }
