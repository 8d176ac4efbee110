"""Request figures of a billed month for the PDFs, read from the daily usage rollups.

The billing records do not store usage, so the figures are read from the rollups
(`requests_daily_*`, kept equal to the `requests` table) when a month's first issued PDF is
rendered, and frozen into `{WorkDir}/tmp/YYYY-MM/YYYY_MM-Usage.json`. Every later render of
that month (a new revision, a re-render) reads the frozen file, so a PDF is reproducible
from stored data even though the last day's usage can still change for a day after the
month ends (DECISIONS 7). Drafts read the rollups live and freeze nothing.

Shares are floored percentages of: all requests (countries, services) or all requests
attributed to a member (a member's share), as the overview's summary states.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from django.db.models import Max, Sum

from billing.bills import member_event_names
from billing.rendering import file_write_atomic, month_dir
from members.config_files import NetworkConfig
from metrics.models import RequestDailyCountry, RequestDailyDomain, RequestDailyMember
from metrics.selectors import domain_service_map

logger = logging.getLogger("billing.pdf")

TOP = 10
HISTORY_MONTHS = (1, 3, 6)
USAGE_VERSION = 1


def _month_add(month: date, delta: int) -> date:
    index = month.year * 12 + (month.month - 1) + delta
    return date(index // 12, index % 12 + 1, 1)


def _month_last_day(month: date) -> date:
    return date.fromordinal(_month_add(month, 1).toordinal() - 1)


def usage_path(month: date) -> Path:
    return month_dir(month) / f"{month:%Y_%m}-Usage.json"


@dataclass(frozen=True)
class _Range:
    start: date
    end: date


def _range(month: date) -> _Range:
    return _Range(month, _month_last_day(month))


def _countries(span: _Range) -> dict[str, tuple[str, int]]:
    rows = (
        RequestDailyCountry.objects.filter(date__gte=span.start, date__lte=span.end)
        .values("country_code")
        .annotate(name=Max("country_name"), hits=Sum("hits"))
    )
    return {row["country_code"]: (row["name"] or "", int(row["hits"] or 0)) for row in rows}


def _services(span: _Range, config: NetworkConfig | None) -> dict[str, int]:
    """Hits per service. Domains of one service are added up; a domain no single service
    owns (a shared host such as rpc.dotters.network) is listed under its own name."""
    mapping = domain_service_map(config=config)
    known = set(config.services) if config is not None else set()
    rows = (
        RequestDailyDomain.objects.filter(date__gte=span.start, date__lte=span.end)
        .exclude(domain_name="")
        .values("domain_name")
        .annotate(hits=Sum("hits"))
    )
    totals: dict[str, int] = {}
    for row in rows:
        label = mapping.service_for(row["domain_name"])
        if label not in known:
            label = row["domain_name"]
        totals[label] = totals.get(label, 0) + int(row["hits"] or 0)
    return totals


def _members(span: _Range) -> dict[str, int]:
    rows = (
        RequestDailyMember.objects.filter(date__gte=span.start, date__lte=span.end)
        .values("member_name")
        .annotate(hits=Sum("hits"))
    )
    return {row["member_name"]: int(row["hits"] or 0) for row in rows}


def month_usage_compute(*, month: date, config: NetworkConfig | None, now: datetime) -> dict[str, Any]:
    """The month's request figures, with the top 10 countries and services and their
    figures 1, 3 and 6 months before (None when that month has no usage at all)."""
    span = _range(month)
    countries = _countries(span)
    services = _services(span, config)
    members = _members(span)
    total = sum(hits for _, hits in countries.values())
    history: dict[int, dict[str, Any]] = {}
    for back in HISTORY_MONTHS:
        earlier = _range(_month_add(month, -back))
        earlier_countries = _countries(earlier)
        history[back] = {
            "has_data": bool(earlier_countries),
            "countries": {code: hits for code, (_, hits) in earlier_countries.items()},
            "services": _services(earlier, config),
        }

    def before(kind: str, key: str) -> dict[str, int | None]:
        return {
            str(back): (history[back][kind].get(key, 0) if history[back]["has_data"] else None)
            for back in HISTORY_MONTHS
        }

    top_countries = sorted(countries.items(), key=lambda item: (-item[1][1], item[0]))[:TOP]
    top_services = sorted(services.items(), key=lambda item: (-item[1], item[0]))[:TOP]
    # Members by the name their nodes report (Details.Name, or the key; see member_event_names).
    member_hits: dict[str, int] = {}
    if config is not None:
        for key, member in config.members.items():
            member_hits[key] = sum(members.get(name, 0) for name in member_event_names(config=config, member=member))
    return {
        "version": USAGE_VERSION,
        "month": f"{month:%Y-%m}",
        "taken_at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "total_requests": total,
        "members": member_hits,
        "top_countries": [
            {"code": code, "name": name, "requests": hits, "before": before("countries", code)}
            for code, (name, hits) in top_countries
        ],
        "top_services": [
            {"service": label, "requests": hits, "before": before("services", label)} for label, hits in top_services
        ],
    }


def month_usage(*, month: date, config: NetworkConfig | None, now: datetime, freeze: bool) -> dict[str, Any]:
    """The frozen figures of the month if they exist; else computed (and frozen if asked)."""
    path = usage_path(month)
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == USAGE_VERSION:
                return data
        except (OSError, ValueError) as exc:
            logger.warning("event=pdf_usage_unreadable path=%s error=%s", path, exc)
    data = month_usage_compute(month=month, config=config, now=now)
    if freeze:
        file_write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        logger.info("event=pdf_usage_frozen month=%s path=%s total=%d", data["month"], path, data["total_requests"])
    return data
