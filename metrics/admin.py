"""Admin for outages, DNS usage, cluster nodes and the listener's own state: read-only lists.

These rows come from the network (NATS) or are derived from it, never from a form. `requests`
grows by about 100,000 rows a day, so its list (and the daily rollups') never counts the
whole table and never sorts it by anything but the primary key. The Matrix access token
is never shown.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from members.admin import ReadOnlyAdmin
from members.models import Member
from metrics.models import (
    CHECK_TYPE_WORDS,
    CheckType,
    ClusterNode,
    FinalizeApplied,
    ListenerState,
    MatrixSession,
    MemberEvent,
    PendingRecovery,
    RequestDaily,
    RequestDailyAsn,
    RequestDailyCountry,
    RequestDailyDomain,
    RequestDailyMember,
    RequestStat,
    TelemetrySnapshot,
    check_type_forms,
)

# A node silent for longer is gone (data-model §4: nodes expire after 15 min of silence).
NODE_SILENCE = timedelta(minutes=15)


class MemberNameFilter(admin.SimpleListFilter):
    """Members from the registry (small), not a DISTINCT over millions of rows."""

    title = "member"
    parameter_name = "member"
    extra_choices: tuple[tuple[str, str], ...] = ()

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = Member.objects.order_by("member_name").values_list("member_name", flat=True)
        return [(name, name) for name in names] + list(self.extra_choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(member_name=value) if value is not None else queryset


class UsageMemberFilter(MemberNameFilter):
    # DNS answers that pointed to no member are counted under "(none)".
    extra_choices = (("(none)", "(none)"),)


class CheckTypeFilter(admin.SimpleListFilter):
    """site/domain/endpoint, matching both stored forms ('1' and legacy 'site'; DECISIONS 3)."""

    title = "check type"
    parameter_name = "check_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(choice.value, choice.label) for choice in CheckType]

    def queryset(self, request: HttpRequest, queryset: QuerySet[MemberEvent]) -> QuerySet[MemberEvent]:
        value = self.value()
        return queryset.filter(check_type__in=check_type_forms(value)) if value else queryset


class OpenResolvedFilter(admin.SimpleListFilter):
    """Open means end_time IS NULL; resolved means it is set (DECISIONS 2)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "open"), ("resolved", "resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[MemberEvent]) -> QuerySet[MemberEvent]:
        if self.value() == "open":
            return queryset.filter(end_time__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(end_time__isnull=False)
        return queryset


class IpFamilyFilter(admin.SimpleListFilter):
    """Fixed choices: the default filter would run a DISTINCT over the whole table."""

    title = "IP family"
    parameter_name = "is_ipv6"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("0", "IPv4"), ("1", "IPv6")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(is_ipv6=int(self.value())) if self.value() in {"0", "1"} else queryset


@admin.register(MemberEvent)
class MemberEventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "member_name",
        "check_type_shown",
        "check_name",
        "domain_name",
        "endpoint",
        "is_ipv6",
        "start_time",
        "end_time",
        "state",
        "error",
    )
    list_filter = (MemberNameFilter, CheckTypeFilter, OpenResolvedFilter, "check_name", IpFamilyFilter, "start_time")
    search_fields = ("member_name", "domain_name", "endpoint", "check_name", "error")
    date_hierarchy = "start_time"
    ordering = ("-start_time", "-id")

    @admin.display(description="check type", ordering="check_type")
    def check_type_shown(self, obj: MemberEvent) -> str:
        return obj.check_type_word

    @admin.display(description="state", ordering="end_time")
    def state(self, obj: MemberEvent) -> str:
        return "open" if obj.is_open else "resolved"


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows (`COUNT(*)` over a LIMIT subquery), never the whole table.

    Past the cap the list still pages, up to CAP rows; a filter narrows it further.
    """

    CAP = 10_000

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        return self.object_list[: self.CAP].count()


@admin.register(RequestStat)
class RequestStatAdmin(ReadOnlyAdmin):
    list_display = (
        "date",
        "node_id",
        "member_name",
        "domain_name",
        "country_code",
        "country_name",
        "network_asn",
        "network_name",
        "is_ipv6",
        "hits",
    )
    list_filter = (UsageMemberFilter, "date", IpFamilyFilter)
    # Exact or prefix matches only: they can use an index where a LIKE '%x%' cannot.
    search_fields = ("=member_name", "=node_id", "=network_asn", "=country_code", "^domain_name")
    ordering = ("-id",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100


@admin.register(ClusterNode)
class ClusterNodeAdmin(ReadOnlyAdmin):
    list_display = (
        "node_id",
        "node_role",
        "public_address",
        "listen_address",
        "listen_port",
        "first_seen",
        "last_heard",
        "alive",
    )
    list_filter = ("node_role", "last_heard")
    search_fields = ("node_id", "public_address", "listen_address")

    @admin.display(boolean=True, description=f"heard in the last {NODE_SILENCE.seconds // 60} min")
    def alive(self, obj: ClusterNode) -> bool:
        return obj.last_heard >= timezone.now() - NODE_SILENCE


# --- finalize bookkeeping (DECISIONS 1) ------------------------------------------------------


@admin.register(FinalizeApplied)
class FinalizeAppliedAdmin(ReadOnlyAdmin):
    list_display = ("proposal_id", "status_shown", "outcome", "event_id", "decided_at", "applied_at")
    list_filter = ("outcome", "proposed_status", "applied_at")
    search_fields = ("=proposal_id", "=event_id")
    ordering = ("-applied_at", "-id")

    @admin.display(description="status", ordering="proposed_status")
    def status_shown(self, obj: FinalizeApplied) -> str:
        return "online" if obj.proposed_status else "offline"


@admin.register(PendingRecovery)
class PendingRecoveryAdmin(ReadOnlyAdmin):
    list_display = (
        "member_name",
        "check_type_shown",
        "check_name",
        "domain_name",
        "endpoint",
        "is_ipv6",
        "decided_at",
        "proposal_id",
        "remembered_at",
    )
    list_filter = (MemberNameFilter, CheckTypeFilter, "check_name", IpFamilyFilter, "remembered_at")
    search_fields = ("member_name", "domain_name", "endpoint", "=proposal_id")
    ordering = ("-remembered_at", "-id")

    @admin.display(description="check type", ordering="check_type")
    def check_type_shown(self, obj: PendingRecovery) -> str:
        return CHECK_TYPE_WORDS.get(obj.check_type, obj.check_type)


# --- the listener's state, telemetry and Matrix login ----------------------------------------


@admin.register(ListenerState)
class ListenerStateAdmin(ReadOnlyAdmin):
    list_display = (
        "node_id",
        "connected",
        "durable_finalize",
        "last_heartbeat_sent",
        "started_at",
        "updated_at",
        "held_for_the_database",
        "dropped",
    )
    list_filter = ("connected", "durable_finalize", "updated_at")
    search_fields = ("node_id",)
    ordering = ("node_id",)

    @admin.display(description="held for the DB")
    def held_for_the_database(self, obj: ListenerState) -> str:
        return _counts_shown(obj.queue_depths)

    @admin.display(description="dropped since start")
    def dropped(self, obj: ListenerState) -> str:
        return _counts_shown(obj.queue_dropped)


def _counts_shown(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return "-"
    return ", ".join(f"{name} {value}" for name, value in sorted(counts.items()))


@admin.register(TelemetrySnapshot)
class TelemetrySnapshotAdmin(ReadOnlyAdmin):
    list_display = ("process", "sample_count", "updated_at")
    list_filter = ("updated_at",)
    search_fields = ("process",)
    ordering = ("process",)

    @admin.display(description="samples")
    def sample_count(self, obj: TelemetrySnapshot) -> int:
        return len(obj.samples) if isinstance(obj.samples, list) else 0


@admin.register(MatrixSession)
class MatrixSessionAdmin(ReadOnlyAdmin):
    """The bot's login. The access token is a credential: it is in no list, form or search."""

    list_display = ("username", "homeserver_url", "user_id", "device_id", "has_token", "logged_in_at", "updated_at")
    list_filter = ("homeserver_url", "logged_in_at")
    search_fields = ("username", "homeserver_url", "user_id", "device_id")
    exclude = ("access_token",)
    readonly_fields = ("has_token",)
    ordering = ("homeserver_url", "username")

    @admin.display(boolean=True, description="has an access token")
    def has_token(self, obj: MatrixSession) -> bool:
        return bool(obj.access_token)


# --- daily usage rollups (derived from `requests`; metrics/rollup_models.py) -----------------


class RollupAdmin(ReadOnlyAdmin):
    """Rebuilt from the raw rows; large, so pages never count or sort the whole table."""

    list_filter: tuple[Any, ...] = ("date",)
    ordering = ("-id",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100


@admin.register(RequestDaily)
class RequestDailyAdmin(RollupAdmin):
    list_display = (
        "date",
        "member_name",
        "domain_name",
        "country_code",
        "country_name",
        "network_asn",
        "network_name",
        "hits",
    )
    list_filter = (UsageMemberFilter, "date")
    search_fields = ("=member_name", "=network_asn", "=country_code", "^domain_name")


@admin.register(RequestDailyCountry)
class RequestDailyCountryAdmin(RollupAdmin):
    list_display = ("date", "country_code", "country_name", "hits")
    search_fields = ("=country_code", "^country_name")


@admin.register(RequestDailyAsn)
class RequestDailyAsnAdmin(RollupAdmin):
    list_display = ("date", "network_asn", "network_name", "hits")
    search_fields = ("=network_asn", "^network_name")


@admin.register(RequestDailyDomain)
class RequestDailyDomainAdmin(RollupAdmin):
    list_display = ("date", "domain_name", "hits")
    search_fields = ("^domain_name",)


@admin.register(RequestDailyMember)
class RequestDailyMemberAdmin(RollupAdmin):
    list_display = ("date", "member_name", "hits")
    list_filter = (UsageMemberFilter, "date")
    search_fields = ("=member_name",)
