"""Downtime, uptime, the SLA test and SLA credits ("C-mode", data-model §7.8). Pure: no ORM, no I/O.

This is the one SLA implementation: statements, the billing API and the PDFs all call it.

- A month is `[1st 00:00 UTC, next 1st 00:00 UTC)` at its exact length, and all arithmetic
  is in integer seconds (DECISIONS 11), never the Go float hours that are 1 ns short (B3).
- An outage is a row with `status = 0` or with `end_time` set, whatever its status
  (DECISIONS 2): outages the Go collator closed did count, they were just hidden (B1).
- An ongoing outage counts up to `min(now, month end)`, never into the future (B2).
- Site outages count for every service of the member; domain outages for the services with
  an RPC URL on that host; endpoint outages only for the service with that exact URL
  (DECISIONS 4). The Go code charged shared hosts to every chain on them (B4).
- Intervals are merged in O(n log n), touching intervals included, so overlapping site,
  domain, endpoint, IPv4 and IPv6 outages are never counted twice.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from operator import itemgetter
from typing import NamedTuple

from billing.money import ZERO, money_round

# --- the month -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthWindow:
    """One calendar month in UTC: `start` inclusive, `end` exclusive."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m}"

    @property
    def first_day(self) -> date:
        return self.start.date()

    def has_ended(self, *, now: datetime) -> bool:
        return now >= self.end


def month_window(*, year: int, month: int) -> MonthWindow:
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1-12, got {month}")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if month == 12 else datetime(year, month + 1, 1, tzinfo=UTC)
    return MonthWindow(start=start, end=end)


def month_window_containing(moment: datetime) -> MonthWindow:
    moment = moment.astimezone(UTC)
    return month_window(year=moment.year, month=moment.month)


def previous_month_window(moment: datetime) -> MonthWindow:
    current = month_window_containing(moment)
    last_day = current.start.replace(day=1)
    year, month = (last_day.year - 1, 12) if last_day.month == 1 else (last_day.year, last_day.month - 1)
    return month_window(year=year, month=month)


def parse_month(text: str) -> MonthWindow:
    """`YYYY-MM` → MonthWindow; ValueError with a clear message otherwise."""
    value = text.strip()
    if len(value) != 7 or value[4] != "-" or not (value[:4].isdigit() and value[5:].isdigit()) or not value.isascii():
        raise ValueError(f"month must be YYYY-MM, got {text!r}")
    year, month = int(value[:4]), int(value[5:])
    if not 1 <= month <= 12:
        raise ValueError(f"month must be YYYY-MM with MM 01-12, got {text!r}")
    if year < 2000:
        raise ValueError(f"year {year} is before the IBP network existed")
    return month_window(year=year, month=month)


# --- outages -------------------------------------------------------------------------------


class CheckKind(StrEnum):
    SITE = "site"
    DOMAIN = "domain"
    ENDPOINT = "endpoint"


# Both stored forms of each check type match (DECISIONS 3).
_CHECK_KINDS: dict[str, CheckKind] = {
    "1": CheckKind.SITE,
    "site": CheckKind.SITE,
    "2": CheckKind.DOMAIN,
    "domain": CheckKind.DOMAIN,
    "3": CheckKind.ENDPOINT,
    "endpoint": CheckKind.ENDPOINT,
}


def check_kind(check_type: str | None) -> CheckKind | None:
    return _CHECK_KINDS.get((check_type or "").strip().lower())


@dataclass(frozen=True, slots=True)
class OutageRow:
    """One `member_events` row, as the SLA needs it (times are aware UTC)."""

    id: int
    check_type: str
    member_name: str
    domain_name: str
    endpoint: str
    status: int
    start_time: datetime
    end_time: datetime | None
    check_name: str = ""
    is_ipv6: bool = False


def is_outage(*, status: int, end_time: datetime | None) -> bool:
    """DECISIONS 2: `status = 0`, or `end_time` set whatever the status."""
    return status == 0 or end_time is not None


class CountedOutage(NamedTuple):
    """An outage row clipped to the month: the part that counts against the SLA.

    A NamedTuple, not a dataclass: a month can hold 100,000 of these and this is the fastest
    immutable record to build. The fields start with (start, row id), so plain tuple order
    is "by start, then by id" and sorting needs no key function.
    """

    start_offset: int  # seconds from the month start
    row_id: int
    end_offset: int
    kind: CheckKind
    row: OutageRow
    month_start: datetime

    @property
    def start(self) -> datetime:
        return self.month_start + timedelta(seconds=self.start_offset)

    @property
    def end(self) -> datetime:
        return self.month_start + timedelta(seconds=self.end_offset)

    @property
    def seconds(self) -> int:
        return self.end_offset - self.start_offset

    @property
    def ongoing(self) -> bool:
        return self.row.end_time is None


def outage_clip(*, row: OutageRow, window: MonthWindow, now: datetime) -> CountedOutage | None:
    """Clip a row to `[month start, min(now, month end))`; None when nothing of it counts.

    An open row runs to `now`. An end before the start (the two come from different
    clocks, B14) is clamped to zero length instead of subtracting time. Offsets are whole
    seconds from the month start (a fraction of a second is dropped at each end).
    """
    return _Clipper(window=window, now=now).clip(row)


_tuple_new = tuple.__new__


class _Clipper:
    """Clipping with the month's bounds as epoch seconds, computed once per month."""

    def __init__(self, *, window: MonthWindow, now: datetime) -> None:
        self.month_start = window.start
        self.origin = window.start.timestamp()
        self.limit = min(now, window.end).timestamp() - self.origin

    def clip(self, row: OutageRow) -> CountedOutage | None:
        end_time = row.end_time
        if row.status != 0 and end_time is None:
            return None  # not an outage (DECISIONS 2)
        kind = _CHECK_KINDS.get(row.check_type) or check_kind(row.check_type)
        if kind is None:
            return None
        start = int(max(row.start_time.timestamp() - self.origin, 0))
        end = int(self.limit if end_time is None else min(end_time.timestamp() - self.origin, self.limit))
        if end <= start:
            return None
        # tuple.__new__ directly: the NamedTuple constructor adds a Python call per row.
        return _tuple_new(CountedOutage, (start, row.id, end, kind, row, self.month_start))


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge; touching intervals merge too (`next.start <= current.end`)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def intervals_seconds(merged: Sequence[tuple[int, int]]) -> int:
    return sum(end - start for start, end in merged)


# --- matching outages to services ------------------------------------------------------------

_SCHEMES = ("wss://", "ws://", "https://", "http://")


def url_host(url: str) -> str:
    """Host of an RPC URL: scheme dropped, cut at the first '/', then the first ':', lower case."""
    text = url.strip()
    lowered = text.lower()
    for scheme in _SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    else:
        if "://" in text:
            text = text.split("://", 1)[1]
    return text.split("/", 1)[0].split(":", 1)[0].strip().lower()


def normalise_endpoint(url: str) -> str:
    """Trimmed, scheme and host lower-cased, no trailing '/'; the path keeps its case."""
    text = url.strip()
    scheme = ""
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme = scheme.lower() + "://"
    host, slash, path = text.partition("/")
    return (scheme + host.lower() + slash + path).rstrip("/")


@dataclass(frozen=True)
class ServiceTargets:
    """What one service answers on: its URL hosts and its normalised endpoints."""

    key: str
    hosts: frozenset[str]
    endpoints: frozenset[str]


def service_targets(*, key: str, rpc_urls: Iterable[str]) -> ServiceTargets:
    urls = [u for u in rpc_urls if u.strip()]
    return ServiceTargets(
        key=key,
        hosts=frozenset(h for h in (url_host(u) for u in urls) if h),
        endpoints=frozenset(normalise_endpoint(u) for u in urls),
    )


def outage_service_keys(*, outage: CountedOutage, services: Sequence[ServiceTargets]) -> list[str]:
    """The services one outage counts against (DECISIONS 4). Used for single rows and tests."""
    return _Matcher(services).keys_for(outage)


class _Matcher:
    """Host and endpoint indexes over one member's services, so each outage is one lookup."""

    def __init__(self, services: Sequence[ServiceTargets]) -> None:
        self.all_keys = [s.key for s in services]
        self._endpoints: dict[str, str] = {}  # raw → normalised; the same URLs repeat a lot
        self.by_host: dict[str, list[str]] = defaultdict(list)
        self.by_endpoint: dict[str, list[str]] = defaultdict(list)
        for service in services:
            for host in service.hosts:
                self.by_host[host].append(service.key)
            for endpoint in service.endpoints:
                self.by_endpoint[endpoint].append(service.key)

    def keys_for(self, outage: CountedOutage) -> list[str]:
        row = outage.row
        if outage.kind is CheckKind.SITE:
            return self.all_keys
        if outage.kind is CheckKind.ENDPOINT and (row.endpoint or "").strip():
            normalised = self._endpoints.get(row.endpoint)
            if normalised is None:
                normalised = self._endpoints[row.endpoint] = normalise_endpoint(row.endpoint)
            return self.by_endpoint.get(normalised, [])
        # A domain row, or an endpoint row with no endpoint: match by host.
        host = (row.domain_name or "").strip().lower() or url_host(row.endpoint or "")
        return self.by_host.get(host, [])


# --- downtime per service --------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceDowntime:
    key: str
    downtime_seconds: int
    # The domain/endpoint outages that count against this service, by start. The member's
    # site outages count against every service and are kept once, in `site_outage_ids`.
    service_outage_ids: tuple[int, ...]
    site_outage_ids: tuple[int, ...] = ()

    @property
    def outage_ids(self) -> tuple[int, ...]:
        """Every outage that counts against this service (site ones included), by id."""
        return tuple(sorted((*self.site_outage_ids, *self.service_outage_ids)))


@dataclass(frozen=True)
class MemberDowntime:
    services: Mapping[str, ServiceDowntime]
    # Every counted outage of the member that counts against at least one service, by id.
    outages: Mapping[int, CountedOutage]
    site_outage_ids: tuple[int, ...] = ()


class _Coverage:
    """A merged, sorted interval list with prefix sums: covered seconds below x in O(log n)."""

    def __init__(self, merged: list[tuple[int, int]]) -> None:
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]
        self.prefix = [0]
        for start, end in merged:
            self.prefix.append(self.prefix[-1] + end - start)
        self.total = self.prefix[-1]

    def below(self, x: int) -> int:
        index = bisect_right(self.starts, x) - 1
        if index < 0:
            return 0
        return self.prefix[index] + min(x, self.ends[index]) - self.starts[index]

    def overlap(self, start: int, end: int) -> int:
        return self.below(end) - self.below(start)


def member_downtime(
    *, rows: Iterable[OutageRow], services: Sequence[ServiceTargets], window: MonthWindow, now: datetime
) -> MemberDowntime:
    """Downtime seconds per service of one member for one month.

    Site outages are merged once for the member. Each service then adds only the part of
    its own domain/endpoint intervals that the site timeline does not already cover, so
    the union is counted once and the cost is O(n log n) over the member's rows, not
    O(rows × services).
    """
    matcher = _Matcher(services)
    clipper = _Clipper(window=window, now=now)
    clipped = [outage for outage in map(clipper.clip, rows) if outage is not None]
    # One sort for the member; every per-service list below is then built already in order.
    clipped.sort()
    site: list[CountedOutage] = []
    specific: dict[str, list[CountedOutage]] = defaultdict(list)
    counted: dict[int, CountedOutage] = {}
    for outage in clipped:
        if outage.kind is CheckKind.SITE:
            if services:
                site.append(outage)
                counted[outage.row_id] = outage
            continue
        keys = matcher.keys_for(outage)
        if keys:
            counted[outage.row_id] = outage
            for key in keys:
                specific[key].append(outage)
    site_coverage = _Coverage(_merge_sorted(site))
    site_ids = tuple(map(_ROW_ID, site))
    result: dict[str, ServiceDowntime] = {}
    for service in services:
        own = specific.get(service.key, [])
        seconds = site_coverage.total
        if own:
            for start, end in _merge_sorted(own):
                seconds += (end - start) - site_coverage.overlap(start, end)
        result[service.key] = ServiceDowntime(
            key=service.key,
            downtime_seconds=seconds,
            service_outage_ids=tuple(map(_ROW_ID, own)),
            site_outage_ids=site_ids,
        )
    return MemberDowntime(services=result, outages=counted, site_outage_ids=site_ids)


_ROW_ID = itemgetter(1)


def _merge_sorted(outages: Sequence[CountedOutage]) -> list[tuple[int, int]]:
    """merge_intervals for outages already sorted by start (the same rule, without the sort)."""
    merged: list[tuple[int, int]] = []
    current_start = current_end = -1
    for outage in outages:
        start, end = outage.start_offset, outage.end_offset
        if merged and start <= current_end:
            if end > current_end:
                current_end = end
                merged[-1] = (current_start, current_end)
        else:
            current_start, current_end = start, end
            merged.append((start, end))
    return merged


# --- the SLA test and credits ----------------------------------------------------------------

SLA_TARGET_PERCENT = Decimal("99.99")


def sla_met(*, downtime_seconds: int, month_seconds: int) -> bool:
    """Exact: uptime ≥ 99.99% ⇔ downtime × 10000 ≤ month length (DECISIONS 12)."""
    return downtime_seconds * 10000 <= month_seconds


def uptime_ratio(*, downtime_seconds: int, month_seconds: int) -> Fraction:
    """Uptime as an exact fraction in [0, 1]."""
    if month_seconds <= 0:
        raise ValueError("a month has a positive length")
    up = max(month_seconds - downtime_seconds, 0)
    return Fraction(up, month_seconds)


class CreditPolicy(StrEnum):
    BELOW_THRESHOLD = "below_threshold"
    ALWAYS = "always"
    TIERED = "tiered"


CreditTiers = Sequence[tuple[Decimal, Decimal]]


def credit_tiers_parse(raw: Iterable[tuple[object, object]]) -> tuple[tuple[Decimal, Decimal], ...]:
    """Settings tiers → (uptime floor %, credit %) pairs, highest floor first, validated."""
    tiers: list[tuple[Decimal, Decimal]] = []
    for floor, credit in raw:
        floor_d, credit_d = Decimal(str(floor)), Decimal(str(credit))
        if not (0 <= floor_d <= 100 and 0 <= credit_d <= 100):
            raise ValueError(f"SLA credit tier ({floor}, {credit}) must be two percentages 0-100")
        tiers.append((floor_d, credit_d))
    tiers.sort(key=lambda tier: tier[0], reverse=True)
    if not tiers or tiers[-1][0] != 0:
        raise ValueError("SLA credit tiers must end with an uptime floor of 0 so that every uptime has a tier")
    return tuple(tiers)


def credit_policy_parse(value: str) -> CreditPolicy:
    try:
        return CreditPolicy(value.strip().lower())
    except ValueError:
        choices = ", ".join(p.value for p in CreditPolicy)
        raise ValueError(f"SLA_CREDIT_POLICY must be one of {choices}, got {value!r}") from None


def sla_credit(
    *,
    base: Decimal,
    downtime_seconds: int,
    month_seconds: int,
    policy: CreditPolicy,
    tiers: CreditTiers = (),
) -> Decimal:
    """The credit on one line, from its base already rounded to the cent, rounded half-up.

    - below_threshold: when the SLA is missed, billed = base × uptime, so the credit is
      base × downtime / month; when it is met, no credit.
    - always: base × downtime / month for any downtime (the Go behaviour, B10).
    - tiered: base × the credit % of the highest tier whose uptime floor the line reaches.
    """
    if base < 0:
        raise ValueError("a base cost is never negative")
    down = min(max(downtime_seconds, 0), month_seconds)
    exact_base = Fraction(base)
    if policy is CreditPolicy.ALWAYS or (
        policy is CreditPolicy.BELOW_THRESHOLD and not sla_met(downtime_seconds=down, month_seconds=month_seconds)
    ):
        return money_round(exact_base * Fraction(down, month_seconds))
    if policy is CreditPolicy.BELOW_THRESHOLD:
        return ZERO
    uptime_percent = uptime_ratio(downtime_seconds=down, month_seconds=month_seconds) * 100
    for floor, credit_percent in tiers:
        if uptime_percent >= Fraction(floor):
            return money_round(exact_base * Fraction(credit_percent) / 100)
    raise ValueError("no SLA credit tier covers this uptime; the lowest tier must have a floor of 0")
