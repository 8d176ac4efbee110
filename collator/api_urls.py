"""API routes (api-contract §1.3). No trailing slash is needed, and one is accepted."""

from __future__ import annotations

from django.urls import URLPattern, re_path
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing.api import BillingBreakdownView, BillingPdfDownloadView, BillingPdfsView, BillingSummaryView
from collator.health import HealthView
from members.api import MembersView, ServicesSummaryView, ServicesView
from metrics.api import (
    DowntimeCurrentView,
    DowntimeEventsView,
    DowntimeSummaryView,
    MemberStatsView,
    RequestsAsnView,
    RequestsCountryView,
    RequestsMemberView,
    RequestsServiceView,
    RequestsSummaryView,
)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Billing's bearer tokens (collator/auth.py) as an OpenAPI `http`/`bearer` scheme.

    The billing views run this authenticator only while API_BILLING_REQUIRES_TOKEN is on, so
    the schema then marks them as needing it, and otherwise (public, DECISIONS 20) does not.
    """

    target_class = "collator.auth.ApiTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API token made in the admin"}


def schema_paths_without_slash(endpoints: list[tuple], **kwargs: object) -> list[tuple]:
    """Document each route as the contract writes it: `/api/members`, not `/api/members/`."""
    return [(path.rstrip("/") or path, regex, method, callback) for path, regex, method, callback in endpoints]


SCHEMA_SETTINGS = {"PREPROCESSING_HOOKS": ["collator.api_urls.schema_paths_without_slash"]}


def api_path(route: str, view: object, name: str) -> URLPattern:
    return re_path(rf"^api/{route}/?$", view, name=name)


urlpatterns: list = [
    api_path("requests/country", RequestsCountryView.as_view(), "api-requests-country"),
    api_path("requests/asn", RequestsAsnView.as_view(), "api-requests-asn"),
    api_path("requests/service", RequestsServiceView.as_view(), "api-requests-service"),
    api_path("requests/member", RequestsMemberView.as_view(), "api-requests-member"),
    api_path("requests/summary", RequestsSummaryView.as_view(), "api-requests-summary"),
    api_path("downtime/events", DowntimeEventsView.as_view(), "api-downtime-events"),
    api_path("downtime/current", DowntimeCurrentView.as_view(), "api-downtime-current"),
    api_path("downtime/summary", DowntimeSummaryView.as_view(), "api-downtime-summary"),
    api_path("members", MembersView.as_view(), "api-members"),
    api_path("members/stats", MemberStatsView.as_view(), "api-members-stats"),
    api_path("services", ServicesView.as_view(), "api-services"),
    api_path("services/summary", ServicesSummaryView.as_view(), "api-services-summary"),
    api_path("health", HealthView.as_view(), "api-health"),
    api_path("billing/breakdown", BillingBreakdownView.as_view(), "api-billing-breakdown"),
    api_path("billing/summary", BillingSummaryView.as_view(), "api-billing-summary"),
    api_path("billing/pdfs", BillingPdfsView.as_view(), "api-billing-pdfs"),
    api_path("billing/pdfs/download", BillingPdfDownloadView.as_view(), "api-billing-pdfs-download"),
    api_path("schema", SpectacularAPIView.as_view(custom_settings=SCHEMA_SETTINGS), "api-schema"),
    api_path("docs", SpectacularSwaggerView.as_view(url_name="api-schema"), "api-docs"),
]
