"""The members and services endpoints (api-contract §2.9, §2.11–2.14): the config in force."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from collator.api_common import ErrorSerializer, PublicApiView, clean_piece, not_found, validated_query
from members import selectors
from members.serializers import (
    MemberSerializer,
    MembersFilterSerializer,
    ServiceHierarchySerializer,
    ServiceListSerializer,
    ServiceSerializer,
    ServicesFilterSerializer,
    ServiceSummarySerializer,
)


class MembersView(PublicApiView):
    @extend_schema(
        summary="Member directory; with `name`, that member alone",
        parameters=[MembersFilterSerializer],
        responses={
            200: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="MembersOrMember",
                    many=False,
                    serializers=[MemberSerializer(many=True), MemberSerializer],
                    resource_type_field_name=None,
                ),
                description="An array of members; a single member when `name` is given.",
            ),
            400: ErrorSerializer,
            404: ErrorSerializer,
            429: ErrorSerializer,
        },
    )
    def get(self, request: Request) -> Response:
        query = validated_query(MembersFilterSerializer, request)
        config = selectors.network_config_current()
        name = clean_piece(query.get("name", ""))
        if not name:
            return Response(selectors.member_directory(config=config))
        member = selectors.member_lookup(config=config, name=name)
        if member is None:
            raise not_found("Member not found")
        return Response(selectors.member_json(member=member))


class ServicesView(PublicApiView):
    @extend_schema(
        summary="Service catalogue: flat, one service (`name`), or by relay (`hierarchy=true`)",
        parameters=[ServicesFilterSerializer],
        responses={
            200: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="ServicesResponse",
                    serializers=[ServiceListSerializer, ServiceSerializer, ServiceHierarchySerializer],
                    resource_type_field_name=None,
                ),
                description="`{services, total}`; one service with `name`; `{relay_chains, orphans}` with `hierarchy=true`.",
            ),
            400: ErrorSerializer,
            404: ErrorSerializer,
            429: ErrorSerializer,
        },
    )
    def get(self, request: Request) -> Response:
        query = validated_query(ServicesFilterSerializer, request)
        config = selectors.network_config_current()
        name = query.get("name", "")
        if name:
            service = selectors.service_lookup(config=config, name=name)
            if service is None:
                raise not_found("Service not found")
            return Response(service)
        if query.get("hierarchy") == "true":
            return Response(selectors.service_hierarchy(config=config))
        services = selectors.service_catalogue(config=config)
        return Response({"services": services, "total": len(services)})


class ServicesSummaryView(PublicApiView):
    @extend_schema(
        summary="Service counts and total resources",
        responses={200: ServiceSummarySerializer, 429: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        return Response(selectors.service_summary(config=selectors.network_config_current()))
