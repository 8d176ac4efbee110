"""The billing endpoints (api-contract §2.15–2.18). Thin: validate the query, call a selector,
answer. Public by default; behind bearer tokens with API_BILLING_REQUIRES_TOKEN (DECISIONS 20)."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from urllib.parse import quote

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from billing import pdf_index
from billing.selectors import billing_breakdown, billing_summary
from billing.serializers import (
    BillingSummarySerializer,
    BreakdownFilterSerializer,
    BreakdownSerializer,
    PdfDownloadFilterSerializer,
    PdfListFilterSerializer,
    PdfListSerializer,
    breakdown_body,
)
from collator.api_common import ErrorSerializer, PublicApiView, not_found, validated_query
from collator.auth import BillingAccessMixin

_ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 429: ErrorSerializer}


class BillingBreakdownView(BillingAccessMixin, PublicApiView):
    """Per member and service: base cost, uptime, credits and billed amount for a month."""

    @extend_schema(
        summary="SLA-adjusted billing per member and service for a month (issued figures for closed months)",
        parameters=[BreakdownFilterSerializer],
        responses={200: BreakdownSerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = validated_query(BreakdownFilterSerializer, request)
        member = query["member"]
        breakdown = billing_breakdown(
            year=query["year"], month=query["month"], member=member, include_downtime=query["include_downtime"]
        )
        if member is not None:
            # The key is exact and case-sensitive (§2.15); MariaDB's collation is not, so a
            # stored statement of `Stake Plus` must not answer `stake plus`.
            breakdown = replace(breakdown, members=[m for m in breakdown.members if m.name == member])
        return Response(breakdown_body(breakdown.as_api(), include_downtime=query["include_downtime"]))


class BillingSummaryView(BillingAccessMixin, PublicApiView):
    """Network base cost, and the current month's credits and SLA misses to date."""

    @extend_schema(
        summary="Base costs and the current month's credits to date",
        responses={200: BillingSummarySerializer, 401: ErrorSerializer, 429: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        return Response(billing_summary().as_api())


class BillingPdfsView(BillingAccessMixin, PublicApiView):
    """The monthly overview and member statement PDFs, grouped by month."""

    @extend_schema(
        summary="Billing PDFs, newest month first",
        parameters=[PdfListFilterSerializer],
        responses={200: PdfListSerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = validated_query(PdfListFilterSerializer, request)
        entries = pdf_index.pdf_entries(year=query["year"], month=query["month"], member=query["member"])
        return Response({"data": pdf_index.pdf_months(entries), "total": len(entries)})


def content_disposition(file_name: str) -> str:
    """`attachment` with a quoted ASCII `filename` (anything else becomes `_`) and, for a
    non-ASCII name, the exact name as RFC 6266/5987 `filename*`."""
    fallback = unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode("ascii")
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in fallback) or "download.pdf"
    header = f'attachment; filename="{fallback}"'
    if fallback != file_name:
        header += f"; filename*=UTF-8''{quote(file_name, safe='')}"
    return header


class BillingPdfDownloadView(BillingAccessMixin, PublicApiView):
    """Download one listed PDF; nothing the client sends is used to build a path."""

    @extend_schema(
        summary="One billing PDF: the month's overview, or a member's statement",
        parameters=[PdfDownloadFilterSerializer],
        responses={
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="The PDF's bytes"),
            (400, "application/json"): ErrorSerializer,
            (401, "application/json"): ErrorSerializer,
            (404, "application/json"): ErrorSerializer,
            (429, "application/json"): ErrorSerializer,
        },
    )
    def get(self, request: Request) -> FileResponse:
        query = validated_query(PdfDownloadFilterSerializer, request)
        try:
            entry = pdf_index.pdf_for_download(
                year=query["year"], month=query["month"], overview=query["overview"], member=query["member"]
            )
            handle = pdf_index.pdf_open(entry)
        except pdf_index.PdfNotFound as exc:
            raise not_found(str(exc)) from None
        response = FileResponse(handle, content_type="application/pdf")
        response["Content-Disposition"] = content_disposition(entry.file_name)
        response["X-Content-Type-Options"] = "nosniff"
        return response
