"""Reads behind the requests and downtime API (api-contract §2.1–2.8, §2.10).

Usage queries read the daily rollups (metrics/rollup_models.py), never the raw per-node
rows: a query filtered only on its own dimension reads that dimension's small table, any
other combination reads `requests_daily`. Downtime figures come from billing/sla.py, the
one SLA implementation.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db.models import Max, Q, QuerySet, Sum
from django.db.models.functions import Lower

from billing.sla import (
    CountedOutage,
    MonthWindow,
    OutageRow,
    ServiceTargets,
    check_kind,
    intervals_seconds,
    merge_intervals,
    outage_clip,
    outage_service_keys,
    service_targets,
    uptime_ratio,
    url_host,
)
from members.config_files import NetworkConfig
from members.models import ConfigSnapshot
from metrics.models import (
    CHECK_TYPE_WORDS,
    LEGACY_CHECK_TYPES,
    MemberEvent,
    RequestDaily,
    RequestDailyAsn,
    RequestDailyCountry,
    RequestDailyDomain,
    RequestDailyMember,
    check_type_forms,
)

# --- the domain → service mapping (api-contract §1.10.4, deterministic version) -------------

_TRIMMED_SUFFIXES = (".dotters.network", ".ibp.network")


def _strip_suffixes(name: str) -> str:
    for suffix in _TRIMMED_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class DomainServiceMap:
    """Service key for a usage domain: (a) exact short name, (b) a host only one service has,
    (c) the domain's own name, capitalised. The reference's substring walk in random map
    order (quirk Q4) is not copied: `asset-hub-polkadot.*` is always `Asset-Hub-Polkadot`.
    """

    by_short_name: dict[str, str]
    by_unique_host: dict[str, str]

    def service_for(self, domain: str) -> str:
        short = _strip_suffixes(domain.lower())
        if short in self.by_short_name:
            return self.by_short_name[short]
        host = domain.strip().lower()
        if host in self.by_unique_host:
            return self.by_unique_host[host]
        return "-".join(part[:1].upper() + part[1:].lower() for part in _strip_suffixes(domain).split("-"))


def _build_domain_service_map(config: NetworkConfig | None) -> DomainServiceMap:
    by_short_name: dict[str, str] = {}
    host_owners: dict[str, set[str]] = defaultdict(set)
    services = config.services if config is not None else {}
    for key in sorted(services):
        by_short_name.setdefault(key.lower(), key)
        for url in services[key].rpc_urls:
            host = url_host(url)
            if host:
                host_owners[host].add(key)
    unique = {host: next(iter(keys)) for host, keys in host_owners.items() if len(keys) == 1}
    return DomainServiceMap(by_short_name=by_short_name, by_unique_host=unique)


_map_cache: dict[int, tuple[NetworkConfig | None, DomainServiceMap]] = {}
_map_cache_lock = threading.Lock()


def domain_service_map(*, config: NetworkConfig | None) -> DomainServiceMap:
    """The map for a config, built once per parsed config object."""
    with _map_cache_lock:
        cached = _map_cache.get(id(config))
        if cached is not None and cached[0] is config:
            return cached[1]
    built = _build_domain_service_map(config)
    with _map_cache_lock:
        _map_cache.clear()
        _map_cache[id(config)] = (config, built)
    return built


def service_domains(*, config: NetworkConfig | None, services: Iterable[str]) -> set[str]:
    """Usage domains that belong to the given service keys (quirk Q5: an exact filter).

    A domain belongs to a service when the mapping above names that service for it: the
    hosts of its RPC URLs that no other service shares, and `<key>.dotters.network` /
    `<key>.ibp.network`. Shared hosts such as `rpc.dotters.network` carry several services
    and cannot be attributed to one. Unknown keys select nothing.
    """
    if config is None:
        return set()
    mapping = domain_service_map(config=config)
    domains: set[str] = set()
    for name in services:
        service = config.service_for_name(name)
        if service is None:
            continue
        candidates = {url_host(url) for url in service.rpc_urls}
        candidates |= {f"{service.key.lower()}{suffix}" for suffix in _TRIMMED_SUFFIXES}
        domains |= {host for host in candidates if host and mapping.service_for(host) == service.key}
    return domains


def config_applied_identity() -> str:
    """`<id>:<hash>` of the config the API serves (members.selectors.network_config_current),
    "" before the first sync: part of the cache key of bodies that depend on the config."""
    latest = (
        ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED)
        .order_by("-applied_at", "-id")
        .values_list("id", "content_hash")
        .first()
    )
    return f"{latest[0]}:{latest[1]}" if latest else ""


# --- usage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageFilter:
    """Validated filters of the requests endpoints (already normalised by the API layer)."""

    start: date
    end: date
    countries: tuple[str, ...] = ()
    asns: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()

    def used(self) -> set[str]:
        names = ("countries", "asns", "networks", "services", "members", "domains")
        return {name for name in names if getattr(self, name)}


class _NoRows(Exception):
    """The filters can match nothing (e.g. a service with no attributable domain)."""


def _filtered(model: type, filters: UsageFilter, *, config: NetworkConfig | None) -> QuerySet:
    rows = model.objects.filter(date__gte=filters.start, date__lte=filters.end)
    if filters.countries:
        rows = rows.filter(country_code__in=filters.countries)
    if filters.asns:
        rows = rows.filter(network_asn__in=filters.asns)
    if filters.networks:
        # A literal, case-insensitive substring: Django escapes % and _ (quirk Q6).
        rows = rows.annotate(network_lower=Lower("network_name"))
        any_network = Q()
        for piece in filters.networks:
            any_network |= Q(network_lower__contains=piece.lower())
        rows = rows.filter(any_network)
    if filters.members:
        rows = rows.filter(member_name__in=filters.members)
    if filters.domains:
        rows = rows.filter(domain_name__in=filters.domains)
    if filters.services:
        domains = service_domains(config=config, services=filters.services)
        if not domains:
            raise _NoRows
        rows = rows.filter(domain_name__in=sorted(domains))
    return rows


def _source(filters: UsageFilter, *, own: set[str], small: type) -> type:
    """The per-dimension table when the filters touch only its columns, else the wide one."""
    return small if filters.used() <= own else RequestDaily


def _day(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)[:10]


def _day_totals(
    filters: UsageFilter, *, config: NetworkConfig | None, own: set[str], small: type, columns: tuple[str, ...]
) -> list[tuple[Any, ...]]:
    """`(day, *columns, requests)` rows, ordered by day, requests descending, then the keys.

    A per-dimension table already holds one row per day and key, so its rows are read as
    they are, without a GROUP BY. The wide table is grouped in SQL and ordered here.
    """
    model = _source(filters, own=own, small=small)
    try:
        rows = _filtered(model, filters, config=config)
    except _NoRows:
        return []
    if model is not RequestDaily:
        # Unique per (day, *columns) by the table's key: the rows are the answer.
        return [
            (*key, int(hits))
            for *key, hits in rows.values_list("date", *columns, "hits").order_by("date", "-hits", *columns)
        ]
    fetched = rows.values_list("date", *columns).annotate(requests=Sum("hits")).order_by()
    totals: dict[tuple[Any, ...], int] = defaultdict(int)
    for *key, hits in fetched:
        totals[tuple(key)] += int(hits)
    ordered = sorted(totals.items(), key=lambda item: (item[0][0], -item[1], item[0][1:]))
    return [(*key, hits) for key, hits in ordered]


def requests_by_country(*, filters: UsageFilter, config: NetworkConfig | None = None) -> list[dict[str, Any]]:
    rows = _day_totals(
        filters, config=config, own={"countries"}, small=RequestDailyCountry, columns=("country_code", "country_name")
    )
    # One row per day and code; its name is the greatest seen, as the reference's MAX().
    grouped: dict[tuple[Any, str], list[Any]] = {}
    for day, code, name, hits in rows:
        entry = grouped.setdefault((day, code), [name, 0])
        entry[0] = max(entry[0], name)
        entry[1] += hits
    ordered = sorted(grouped.items(), key=lambda item: (item[0][0], -item[1][1], item[0][1]))
    result: list[dict[str, Any]] = []
    for (day, code), (name, hits) in ordered:
        item: dict[str, Any] = {"date": _day(day)}
        if code:
            item["country"] = code
        if name:
            item["country_name"] = name
        item["requests"] = hits
        result.append(item)
    return result


def requests_by_asn(*, filters: UsageFilter, config: NetworkConfig | None = None) -> list[dict[str, Any]]:
    rows = _day_totals(
        filters,
        config=config,
        own={"asns", "networks"},
        small=RequestDailyAsn,
        columns=("network_asn", "network_name"),
    )
    result: list[dict[str, Any]] = []
    for day, asn, network, hits in rows:
        item: dict[str, Any] = {"date": _day(day)}
        if asn:
            item["asn"] = asn
        if network:
            item["network"] = network
        item["requests"] = hits
        result.append(item)
    return result


def requests_by_service(*, filters: UsageFilter, config: NetworkConfig | None = None) -> list[dict[str, Any]]:
    rows = _day_totals(
        filters, config=config, own={"domains", "services"}, small=RequestDailyDomain, columns=("domain_name",)
    )
    mapping = domain_service_map(config=config)
    return [
        {"date": _day(day), "service": mapping.service_for(domain), "domain": domain, "requests": hits}
        for day, domain, hits in rows
        if domain
    ]


def requests_by_member(*, filters: UsageFilter, config: NetworkConfig | None = None) -> list[dict[str, Any]]:
    rows = _day_totals(filters, config=config, own={"members"}, small=RequestDailyMember, columns=("member_name",))
    result: list[dict[str, Any]] = []
    for day, member, hits in rows:
        item: dict[str, Any] = {"date": _day(day)}
        if member:
            item["member"] = member
        item["requests"] = hits
        result.append(item)
    return result


def _distinct_non_empty(model: type, column: str, start: date, end: date) -> int:
    return (
        model.objects.filter(date__gte=start, date__lte=end).exclude(**{column: ""}).values(column).distinct().count()
    )


def requests_summary(*, start: date, end: date) -> dict[str, Any]:
    """Totals of a date range. Empty values are not counted as a country/ASN/member (Q17)."""
    total = RequestDailyMember.objects.filter(date__gte=start, date__lte=end).aggregate(total=Sum("hits"))["total"]
    return {
        "end_date": end.isoformat(),
        "start_date": start.isoformat(),
        "total_requests": int(total or 0),
        "unique_asns": _distinct_non_empty(RequestDailyAsn, "network_asn", start, end),
        "unique_countries": _distinct_non_empty(RequestDailyCountry, "country_code", start, end),
        "unique_domains": _distinct_non_empty(RequestDailyDomain, "domain_name", start, end),
        "unique_members": _distinct_non_empty(RequestDailyMember, "member_name", start, end),
    }


TOP_COUNTRIES = 10


def member_usage(
    *, member_names: Sequence[str], start: date, end: date, config: NetworkConfig | None
) -> dict[str, Any]:
    """One member's requests in a date range: total, top 10 countries, per-domain breakdown."""
    rows = RequestDaily.objects.filter(date__gte=start, date__lte=end, member_name__in=list(member_names))
    total = rows.aggregate(total=Sum("hits"))["total"]
    countries = (
        rows.values("country_code")
        .annotate(name=Max("country_name"), requests=Sum("hits"))
        .order_by("-requests", "country_code")[:TOP_COUNTRIES]
    )
    domains = (
        rows.exclude(domain_name="")
        .values("domain_name")
        .annotate(requests=Sum("hits"))
        .order_by("-requests", "domain_name")
    )
    mapping = domain_service_map(config=config)
    return {
        "total_requests": int(total or 0),
        "top_countries": [
            {"country": row["country_code"], "name": row["name"] or "", "requests": int(row["requests"])}
            for row in countries
        ],
        "service_breakdown": [
            {
                "service": mapping.service_for(row["domain_name"]),
                "domain": row["domain_name"],
                "requests": int(row["requests"]),
            }
            for row in domains
        ],
    }


# --- downtime --------------------------------------------------------------------------------


def check_type_word(stored: str) -> str:
    """`'1'`/`'site'` → `site` … (api-contract §1.10.1); anything else lower-cased."""
    lowered = (stored or "").strip().lower()
    return CHECK_TYPE_WORDS.get(lowered, lowered)


def check_type_canonical(value: str) -> str | None:
    """A check type as a caller may write it (`site`, `1`, `SITE`) → `'1'`/`'2'`/`'3'`, or None."""
    lowered = value.strip().lower()
    if lowered in CHECK_TYPE_WORDS:
        return lowered
    return LEGACY_CHECK_TYPES.get(lowered)


def _outages() -> QuerySet[MemberEvent]:
    # DECISIONS 2: an outage is a row with status 0, or with end_time set whatever its status.
    return MemberEvent.objects.filter(Q(status=0) | Q(end_time__isnull=False))


def _overlapping(rows: QuerySet[MemberEvent], window_start: datetime, window_end: datetime) -> QuerySet:
    return rows.filter(start_time__lt=window_end).filter(Q(end_time__isnull=True) | Q(end_time__gte=window_start))


def member_db_names(*, name: str, config: NetworkConfig | None) -> list[str]:
    """The names a member's rows may carry: the key as given and its Details.Name (Q25)."""
    names = [name]
    member = config.member_by_name(name) if config is not None else None
    if member is not None:
        for candidate in (member.key, member.name):
            if candidate and candidate not in names:
                names.append(candidate)
    return names


@dataclass(frozen=True)
class EventFilter:
    start: date
    end: date
    member: str = ""
    service: str = ""
    domain: str = ""
    check_type: str = ""  # canonical '1'/'2'/'3'
    status: str = ""  # "", "ongoing" or "resolved"


def _event_counts_for_service(event: MemberEvent, *, service: ServiceTargets) -> bool:
    """DECISIONS 4 by billing's own matcher (billing/sla.py), so that the events listed for a
    service are exactly the ones its SLA counts: a site outage for every service (whatever
    its domain column says), a domain outage for the services on that host, an endpoint
    outage for the service with that URL, and a row of an unknown check type for none."""
    kind = check_kind(event.check_type)
    if kind is None:
        return False
    # The matcher reads only the kind and the row; the offsets do not matter here.
    outage = CountedOutage(0, event.id, 0, kind, _outage_row(event), event.start_time)
    return bool(outage_service_keys(outage=outage, services=[service]))


def downtime_events(
    *, filters: EventFilter, window_start: datetime, window_end: datetime, config: NetworkConfig | None
) -> list[MemberEvent]:
    rows = _overlapping(_outages(), window_start, window_end)
    if filters.member:
        rows = rows.filter(member_name__in=member_db_names(name=filters.member, config=config))
    if filters.domain:
        rows = rows.filter(domain_name=filters.domain)
    if filters.check_type:
        rows = rows.filter(check_type__in=check_type_forms(filters.check_type))
    if filters.status == "ongoing":
        rows = rows.filter(end_time__isnull=True)
    elif filters.status == "resolved":
        rows = rows.filter(end_time__isnull=False)
    events = list(rows.order_by("-start_time", "-id"))
    if filters.service:
        service = config.service_for_name(filters.service) if config is not None else None
        # A service missing from the config answers on nothing: only site outages count for it.
        targets = service_targets(key=filters.service, rpc_urls=service.rpc_urls if service is not None else ())
        events = [e for e in events if _event_counts_for_service(e, service=targets)]
    return events


def downtime_current() -> list[MemberEvent]:
    return list(_outages().filter(end_time__isnull=True).order_by("-start_time", "-id"))


def _outage_row(event: MemberEvent) -> OutageRow:
    return OutageRow(
        id=event.id,
        check_type=event.check_type,
        member_name=event.member_name,
        domain_name=event.domain_name,
        endpoint=event.endpoint,
        status=event.status,
        start_time=event.start_time,
        end_time=event.end_time,
        check_name=event.check_name,
        is_ipv6=bool(event.is_ipv6),
    )


def merged_downtime_seconds(
    *, events: Iterable[MemberEvent], window_start: datetime, window_end: datetime, now: datetime
) -> int:
    """Seconds of `[window_start, min(now, window_end))` covered by the events, overlaps once.

    billing/sla.py's clipping and merging, applied to an arbitrary window of whole days
    (its MonthWindow is just a half-open interval).
    """
    window = MonthWindow(start=window_start, end=window_end)
    intervals = []
    for event in events:
        clipped = outage_clip(row=_outage_row(event), window=window, now=now)
        if clipped is not None:
            intervals.append((clipped.start_offset, clipped.end_offset))
    return intervals_seconds(merge_intervals(intervals))


def downtime_summary(*, start: date, end: date, window_start: datetime, window_end: datetime, now: datetime) -> dict:
    """Counts and hours for a date range; downtime merged per member (quirk Q15)."""
    events = list(_overlapping(_outages(), window_start, window_end))
    ongoing = sum(1 for e in events if e.end_time is None)
    by_member: dict[str, list[MemberEvent]] = defaultdict(list)
    for event in events:
        by_member[event.member_name].append(event)
    seconds = sum(
        merged_downtime_seconds(events=member_events, window_start=window_start, window_end=window_end, now=now)
        for member_events in by_member.values()
    )
    hours = seconds / 3600
    return {
        "affected_members": len(by_member),
        "average_downtime_hours": hours / len(events) if events else 0.0,
        "end_date": end.isoformat(),
        "ongoing_events": ongoing,
        "resolved_events": len(events) - ongoing,
        "start_date": start.isoformat(),
        "total_downtime_hours": hours,
        "total_events": len(events),
    }


def member_downtime_stats(
    *, member_names: Sequence[str], window_start: datetime, window_end: datetime, now: datetime
) -> dict[str, Any]:
    """A member's outage count, merged downtime hours and uptime % over the window.

    Uptime is over the elapsed part of the window (up to now), as the SLA counts it, and
    is floored to 6 decimals (DECISIONS 17a).
    """
    events = list(_overlapping(_outages(), window_start, window_end).filter(member_name__in=list(member_names)))
    seconds = merged_downtime_seconds(events=events, window_start=window_start, window_end=window_end, now=now)
    elapsed = int((min(now, window_end) - window_start).total_seconds())
    if elapsed <= 0:
        uptime_percent = 100.0
    else:
        ratio = uptime_ratio(downtime_seconds=min(seconds, elapsed), month_seconds=elapsed)
        uptime_percent = int(ratio * 100 * 10**6) / 10**6
    return {
        "total_downtime_events": len(events),
        "total_downtime_hours": seconds / 3600,
        "uptime_percentage": uptime_percent,
    }
