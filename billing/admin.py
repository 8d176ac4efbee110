"""Admin for statements: read-only records, filters, and a re-generate action that shows a diff.

Issued figures are never edited by hand (DECISIONS 16): the only write is re-generating a
month through `statement_generate_month`, which adds a revision when the inputs changed
(or, with the forcing action, always) and keeps the old one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from billing.models import BillingRun, CostSummaryRun, MonthlyOverview, Statement, StatementLine
from billing.pdf.admin_links import PdfLinkAdminMixin
from billing.selectors import statement_revision_diff
from billing.services import BillingError, MonthRunResult, statement_generate_month


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MonthFilter(admin.SimpleListFilter):
    title = "month"
    parameter_name = "month"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> Iterable[tuple[str, str]]:
        months = model_admin.model.objects.order_by("-month").values_list("month", flat=True).distinct()
        return [(f"{m:%Y-%m-%d}", f"{m:%Y-%m}") for m in months]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(month=self.value()) if self.value() else queryset


class MemberFilter(admin.SimpleListFilter):
    title = "member"
    parameter_name = "member"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> Iterable[tuple[str, str]]:
        keys = Statement.objects.order_by("member_key").values_list("member_key", flat=True).distinct()
        return [(key, key) for key in keys]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(member_key=self.value()) if self.value() else queryset


class StatementLineInline(admin.TabularInline):
    model = StatementLine
    extra = 0
    can_delete = False
    fields = (
        "service_key",
        "nodes",
        "base",
        "downtime_seconds",
        "uptime_percent",
        "meets_sla",
        "credit",
        "billed",
        "service_outage_ids",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _regenerate(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *, force: bool
) -> HttpResponse | None:
    results: list[dict[str, Any]] = []
    for month in sorted({row.month for row in queryset}):
        try:
            result = statement_generate_month(month=f"{month:%Y-%m}", force=force)
        except BillingError as exc:
            messages.error(request, f"{month:%Y-%m}: {exc}")
            continue
        except OSError as exc:  # the work dir: full, read-only, gone
            messages.error(request, f"{month:%Y-%m}: the statement files could not be written: {exc}")
            continue
        results.append(_result_for_page(result))
    if not results:
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Re-generated statements",
        "results": results,
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "admin/billing/regenerate_result.html", context)


def _result_for_page(result: MonthRunResult) -> dict[str, Any]:
    rows = []
    for outcome in result.statements:
        changes = statement_revision_diff(statement=outcome.statement) if outcome.action == "revised" else []
        rows.append({"outcome": outcome, "changes": changes})
    return {"result": result, "rows": rows}


@admin.action(
    description="Re-generate the selected months (a new revision where the inputs changed)",
    permissions=["regenerate"],
)
def regenerate_months(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    return _regenerate(modeladmin, request, queryset, force=False)


@admin.action(
    description="Re-generate the selected months as a new revision, even if nothing changed",
    permissions=["regenerate"],
)
def regenerate_months_forced(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    return _regenerate(modeladmin, request, queryset, force=True)


@admin.register(Statement)
class StatementAdmin(PdfLinkAdminMixin, ReadOnlyAdmin):
    list_display = (
        "number",
        "revision",
        "member_key",
        "month_label",
        "status",
        "base_total",
        "credit_total",
        "billed_total",
        "meets_sla",
        "services_missing_sla",
        "config_postdates_month",
        "created_at",
        "pdf_link",
    )
    readonly_fields = ("pdf_link",)
    list_filter = (MonthFilter, MemberFilter, "status", "meets_sla", "config_postdates_month")
    search_fields = ("number", "member_key", "member_name")
    ordering = ("-month", "member_key", "-revision")
    inlines = (StatementLineInline,)
    actions = (regenerate_months, regenerate_months_forced)

    def has_regenerate_permission(self, request: HttpRequest) -> bool:
        """The actions above issue revisions: only for users given `regenerate_statement`."""
        return request.user.has_perm("billing.regenerate_statement")


@admin.register(StatementLine)
class StatementLineAdmin(ReadOnlyAdmin):
    list_display = (
        "statement",
        "service_key",
        "base",
        "downtime_seconds",
        "uptime_percent",
        "meets_sla",
        "credit",
        "billed",
    )
    list_filter = ("meets_sla", "statement__status", "statement__month", "statement__member_key")
    search_fields = ("service_key", "statement__number", "statement__member_key")
    list_select_related = ("statement",)


@admin.register(MonthlyOverview)
class MonthlyOverviewAdmin(PdfLinkAdminMixin, ReadOnlyAdmin):
    list_display = (
        "month_label",
        "revision",
        "status",
        "active_members",
        "inactive_members",
        "base_total",
        "credit_total",
        "billed_total",
        "services_missing_sla",
        "created_at",
        "pdf_link",
    )
    readonly_fields = ("pdf_link",)
    list_filter = (MonthFilter, "status")


@admin.register(BillingRun)
class BillingRunAdmin(ReadOnlyAdmin):
    list_display = ("month", "generated_at", "last_outcome", "last_started_at", "last_finished_at", "locked_by", "runs")
    readonly_fields = ("last_summary", "last_error")


@admin.register(CostSummaryRun)
class CostSummaryRunAdmin(ReadOnlyAdmin):
    list_display = ("day", "last_outcome", "last_started_at", "last_finished_at", "locked_by", "runs")
    readonly_fields = ("last_error",)
