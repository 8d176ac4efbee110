"""The requests, downtime and member-stats endpoints (api-contract §2.1–2.8, §2.10). Thin:
validate the query, call a selector, answer."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from collator.api_common import (
    DateRangeFilterSerializer,
    ErrorSerializer,
    PublicApiView,
    validated_query,
    window_of,
)
from members.selectors import network_config_current
from metrics import selectors
from metrics.api_cache import cached_json
from metrics.serializers import (
    DowntimeEventSerializer,
    DowntimeEventsFilterSerializer,
    DowntimeSummarySerializer,
    MemberStatsFilterSerializer,
    MemberStatsSerializer,
    RequestsAsnRowSerializer,
    RequestsCountryRowSerializer,
    RequestsFilterSerializer,
    RequestsMemberRowSerializer,
    RequestsServiceRowSerializer,
    RequestsSummarySerializer,
    event_json,
)

_ERRORS = {400: ErrorSerializer, 429: ErrorSerializer}


def _usage_filter(query: dict[str, Any]) -> selectors.UsageFilter:
    return selectors.UsageFilter(
        start=query["start"],
        end=query["end"],
        countries=tuple(query.get("country", ())),
        asns=tuple(query.get("asn", ())),
        networks=tuple(query.get("network", ())),
        services=tuple(query.get("service", ())),
        members=tuple(query.get("member", ())),
        domains=tuple(query.get("domain", ())),
    )


class _RequestsView(PublicApiView):
    """Month-long queries are asked again and again (every dashboard visitor asks the same
    month); the body is cached per query until the rollups change (metrics/api_cache.py)."""

    selector = staticmethod(selectors.requests_by_country)
    endpoint = "country"
    needs_config = False

    def get(self, request: Request) -> HttpResponse:
        filters = _usage_filter(validated_query(RequestsFilterSerializer, request))
        # The config is read only when it matters: the service filter and domain names.
        uses_config = self.needs_config or bool(filters.services)
        config_key = selectors.config_applied_identity() if uses_config else ""

        def compute() -> list[dict[str, Any]]:
            return self.selector(filters=filters, config=network_config_current() if uses_config else None)

        body = cached_json(endpoint=self.endpoint, query=f"{filters!r}|{config_key}", compute=compute)
        return HttpResponse(body, content_type="application/json")


@extend_schema(
    summary="Daily requests per country",
    parameters=[RequestsFilterSerializer],
    responses={200: RequestsCountryRowSerializer(many=True), **_ERRORS},
)
class RequestsCountryView(_RequestsView):
    selector = staticmethod(selectors.requests_by_country)


@extend_schema(
    summary="Daily requests per network (ASN)",
    parameters=[RequestsFilterSerializer],
    responses={200: RequestsAsnRowSerializer(many=True), **_ERRORS},
)
class RequestsAsnView(_RequestsView):
    selector = staticmethod(selectors.requests_by_asn)
    endpoint = "asn"


@extend_schema(
    summary="Daily requests per domain, with its service",
    parameters=[RequestsFilterSerializer],
    responses={200: RequestsServiceRowSerializer(many=True), **_ERRORS},
)
class RequestsServiceView(_RequestsView):
    selector = staticmethod(selectors.requests_by_service)
    endpoint = "service"
    needs_config = True


@extend_schema(
    summary="Daily requests per member",
    parameters=[RequestsFilterSerializer],
    responses={200: RequestsMemberRowSerializer(many=True), **_ERRORS},
)
class RequestsMemberView(_RequestsView):
    selector = staticmethod(selectors.requests_by_member)
    endpoint = "member"


class RequestsSummaryView(PublicApiView):
    @extend_schema(
        summary="Request totals for a date range",
        parameters=[DateRangeFilterSerializer],
        responses={200: RequestsSummarySerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = validated_query(DateRangeFilterSerializer, request)
        return Response(selectors.requests_summary(start=query["start"], end=query["end"]))


class DowntimeEventsView(PublicApiView):
    @extend_schema(
        summary="Outages overlapping a date range, newest first",
        parameters=[DowntimeEventsFilterSerializer],
        responses={200: DowntimeEventSerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = validated_query(DowntimeEventsFilterSerializer, request)
        window_start, window_end = window_of(query["start"], query["end"])
        filters = selectors.EventFilter(
            start=query["start"],
            end=query["end"],
            member=query.get("member", ""),
            service=query.get("service", ""),
            domain=query.get("domain", ""),
            check_type=query.get("check_type", ""),
            status=query.get("status", ""),
        )
        needs_config = bool(filters.member or filters.service)
        events = selectors.downtime_events(
            filters=filters,
            window_start=window_start,
            window_end=window_end,
            config=network_config_current() if needs_config else None,
        )
        now = timezone.now()
        return Response([event_json(event, now=now) for event in events])


class DowntimeCurrentView(PublicApiView):
    @extend_schema(
        summary="Outages still open, newest first",
        responses={200: DowntimeEventSerializer(many=True), 429: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        now = timezone.now()
        return Response([event_json(event, now=now) for event in selectors.downtime_current()])


class DowntimeSummaryView(PublicApiView):
    @extend_schema(
        summary="Outage counts and hours for a date range (merged per member)",
        parameters=[DateRangeFilterSerializer],
        responses={200: DowntimeSummarySerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = validated_query(DateRangeFilterSerializer, request)
        window_start, window_end = window_of(query["start"], query["end"])
        return Response(
            selectors.downtime_summary(
                start=query["start"],
                end=query["end"],
                window_start=window_start,
                window_end=window_end,
                now=timezone.now(),
            )
        )


class MemberStatsView(PublicApiView):
    @extend_schema(
        summary="Usage and downtime of one member (an unknown member gives zeros)",
        parameters=[MemberStatsFilterSerializer],
        responses={200: MemberStatsSerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = validated_query(MemberStatsFilterSerializer, request)
        config = network_config_current()
        names = selectors.member_db_names(name=query["name"], config=config)
        window_start, window_end = window_of(query["start"], query["end"])
        usage = selectors.member_usage(member_names=names, start=query["start"], end=query["end"], config=config)
        downtime = selectors.member_downtime_stats(
            member_names=names, window_start=window_start, window_end=window_end, now=timezone.now()
        )
        body = {
            "end_date": query["end"].isoformat(),
            "member_name": query["name"],
            "service_breakdown": usage["service_breakdown"],
            "start_date": query["start"].isoformat(),
            "top_countries": usage["top_countries"],
            "total_downtime_events": downtime["total_downtime_events"],
            "total_downtime_hours": downtime["total_downtime_hours"],
            "total_requests": usage["total_requests"],
            "uptime_percentage": downtime["uptime_percentage"],
        }
        return Response(body)
