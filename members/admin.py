"""Admin for the registry and the config history.

The registry tables are a cache of the config files (members/services.py writes them), so
they are read-only here: an edit would be undone by the next reload. To change a member or
a service, change the config and run `manage.py sync_config`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from members.models import ConfigSnapshot, Member, RegionPrice, Service, ServiceAssignment, ServiceProvider


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: the rows come from the config (or from the network), never from a form."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AssignmentOfMemberInline(ReadOnlyInline):
    model = ServiceAssignment
    fields = ("service", "service_active")
    readonly_fields = fields
    verbose_name_plural = "assigned services"

    @admin.display(boolean=True, description="service active")
    def service_active(self, obj: ServiceAssignment) -> bool:
        return obj.service.is_active


@admin.register(Member)
class MemberAdmin(ReadOnlyAdmin):
    list_display = (
        "member_index",
        "member_name",
        "active",
        "membership_level",
        "location_region",
        "services_assigned",
        "member_website",
        "membership_joined_ts",
    )
    list_filter = ("service_active", "membership_level", "location_region")
    search_fields = ("member_index", "member_name", "member_website", "service_ipv4", "service_ipv6")
    inlines = (AssignmentOfMemberInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Member]:
        return super().get_queryset(request).annotate(services_count=Count("assignments"))

    @admin.display(boolean=True, description="active", ordering="service_active")
    def active(self, obj: Member) -> bool:
        return obj.is_active

    @admin.display(description="services", ordering="services_count")
    def services_assigned(self, obj: Member) -> int:
        return obj.services_count  # type: ignore[attr-defined]


class ProviderInline(ReadOnlyInline):
    model = ServiceProvider
    fields = ("provider_index", "rpc_url_list")
    readonly_fields = fields

    @admin.display(description="RPC URLs")
    def rpc_url_list(self, obj: ServiceProvider) -> str:
        return format_html_join(mark_safe("<br>"), "{}", ((url,) for url in obj.rpc_urls)) or "-"


@admin.register(Service)
class ServiceAdmin(ReadOnlyAdmin):
    list_display = (
        "service_index",
        "configuration_displayname",
        "active",
        "configuration_type",
        "configuration_networktype",
        "configuration_member_level_req",
        "provisioned_nodes",
        "provisioned_cores",
        "provisioned_memory",
        "provisioned_disk",
        "provisioned_bandwidth",
        "members_assigned",
    )
    list_filter = (
        "configuration_active",
        "configuration_type",
        "configuration_networktype",
        "configuration_member_level_req",
        "configuration_relaynetwork",
    )
    search_fields = ("service_index", "configuration_name", "configuration_displayname", "configuration_networkname")
    inlines = (ProviderInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Service]:
        return super().get_queryset(request).annotate(members_count=Count("assignments"))

    @admin.display(boolean=True, description="active", ordering="configuration_active")
    def active(self, obj: Service) -> bool:
        return obj.is_active

    @admin.display(description="members", ordering="members_count")
    def members_assigned(self, obj: Service) -> int:
        return obj.members_count  # type: ignore[attr-defined]


@admin.register(ServiceProvider)
class ServiceProviderAdmin(ReadOnlyAdmin):
    list_display = ("service", "provider_index", "url_count", "rpc_url_list")
    list_filter = ("provider_index", "service__configuration_active")
    search_fields = (
        "service__service_index",
        "provider_index",
        "provider_rpc_url1",
        "provider_rpc_url2",
        "provider_rpc_url3",
    )
    list_select_related = ("service",)

    @admin.display(description="URLs")
    def url_count(self, obj: ServiceProvider) -> int:
        return len(obj.rpc_urls)

    @admin.display(description="RPC URLs")
    def rpc_url_list(self, obj: ServiceProvider) -> str:
        return format_html_join(mark_safe("<br>"), "{}", ((url,) for url in obj.rpc_urls)) or "-"


@admin.register(ServiceAssignment)
class ServiceAssignmentAdmin(ReadOnlyAdmin):
    list_display = ("member", "service", "service_active", "member_active")
    list_filter = ("member", "service__configuration_active", "service")
    search_fields = ("member__member_index", "member__member_name", "service__service_index")
    list_select_related = ("member", "service")

    @admin.display(boolean=True, description="service active", ordering="service__configuration_active")
    def service_active(self, obj: ServiceAssignment) -> bool:
        return obj.service.is_active

    @admin.display(boolean=True, description="member active", ordering="member__service_active")
    def member_active(self, obj: ServiceAssignment) -> bool:
        return obj.member.is_active


@admin.register(RegionPrice)
class RegionPriceAdmin(ReadOnlyAdmin):
    list_display = ("region", "cores", "memory", "disk", "bandwidth")
    search_fields = ("region",)


@admin.register(ConfigSnapshot)
class ConfigSnapshotAdmin(ReadOnlyAdmin):
    """The config history: what was loaded when, and why a load failed (DECISIONS 23)."""

    list_display = (
        "id",
        "status",
        "fetched_at",
        "applied_at",
        "attempts",
        "last_attempt_at",
        "summary",
        "warning_count",
        "first_error",
    )
    list_filter = ("status", "fetched_at")
    search_fields = ("content_hash",)
    date_hierarchy = "fetched_at"
    fields = (
        "status",
        "fetched_at",
        "applied_at",
        "attempts",
        "last_attempt_at",
        "content_hash",
        "summary",
        "error_list",
        "warning_list",
        "file_list",
    )
    readonly_fields = fields

    @admin.display(description="counts")
    def summary(self, obj: ConfigSnapshot) -> str:
        counts = obj.counts or {}
        if not counts:
            return "-"
        return (
            f"{counts.get('members', 0)} members, {counts.get('services', 0)} services "
            f"({counts.get('active_services', 0)} active), {counts.get('regions', 0)} regions, "
            f"{counts.get('assignments', 0)} assignments"
        )

    @admin.display(description="warnings")
    def warning_count(self, obj: ConfigSnapshot) -> int:
        return len(obj.warnings or [])

    @admin.display(description="error")
    def first_error(self, obj: ConfigSnapshot) -> str:
        errors = obj.errors or []
        return errors[0].get("message", "") if errors else ""

    @admin.display(description="errors")
    def error_list(self, obj: ConfigSnapshot) -> str:
        errors = obj.errors or []
        if not errors:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li><strong>{}</strong> {} <code>{}</code><br>{}</li>",
                (
                    (e.get("file", ""), e.get("field", "") and f"field {e['field']}", e.get("source", ""), e["message"])
                    for e in errors
                ),
            ),
        )

    @admin.display(description="warnings")
    def warning_list(self, obj: ConfigSnapshot) -> str:
        warnings = obj.warnings or []
        if not warnings:
            return "-"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((w,) for w in warnings)))

    @admin.display(description="files")
    def file_list(self, obj: ConfigSnapshot) -> str:
        files = obj.files or {}
        if not files:
            return "-"
        return format_html(
            "<table><tr><th>file</th><th>source</th><th>sha256</th><th>bytes</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                (
                    (key, entry.get("source", ""), entry.get("sha256", ""), len(entry.get("text", "").encode()))
                    for key, entry in sorted(files.items())
                ),
            ),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConfigSnapshot]:
        # The raw file texts are large; the list never shows them.
        qs = super().get_queryset(request)
        match = request.resolver_match
        return qs.defer("files") if match and (match.url_name or "").endswith("_changelist") else qs
