"""Query parameters and response shapes of the billing endpoints (api-contract §2.15–2.18).

The filter serializers validate the query string in the contract's order; the response
serializers document the bodies in /api/schema (the bodies themselves are built by the
billing selectors' `as_api()` and billing/pdf_index.py).
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from collator.api_common import BillingMonthFilterSerializer, TextParamField

_YEAR = re.compile(r"[0-9]{4}", re.ASCII)
_MONTH = re.compile(r"[0-9]{1,2}", re.ASCII)


def pdf_year(text: str) -> int | None:
    """A PDF endpoint's `year`: exactly 4 ASCII digits (§2.17), else None."""
    return int(text) if _YEAR.fullmatch(text) else None


def pdf_month(text: str) -> int | None:
    """A PDF endpoint's `month`: 1 or 2 ASCII digits, 1–12 (`9` and `09` alike), else None."""
    return int(text) if _MONTH.fullmatch(text) and 1 <= int(text) <= 12 else None


# --- filters ---------------------------------------------------------------------------------


class BreakdownFilterSerializer(BillingMonthFilterSerializer):
    """`month` (checked first), `year`, `member` (a member key, exact) and `include_downtime`."""

    member = TextParamField(help_text="Member key, exact and case-sensitive; unknown gives no members.")
    include_downtime = TextParamField(help_text="`true` adds each service's counted outages.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        attrs["member"] = attrs.get("member") or None
        attrs["include_downtime"] = attrs.get("include_downtime") == "true"
        return attrs


class PdfListFilterSerializer(serializers.Serializer):
    """`year` (checked first), `month`, `member`; each filter applies on its own (quirk Q20)."""

    year = TextParamField(help_text="Exactly 4 digits.")
    month = TextParamField(help_text="1-12, one or two digits.")
    member = TextParamField(help_text="Member name, ignoring case; overviews are then left out.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        year_text, month_text = attrs.get("year", ""), attrs.get("month", "")
        year = pdf_year(year_text) if year_text else None
        if year_text and year is None:
            raise serializers.ValidationError("Invalid year format")
        month = pdf_month(month_text) if month_text else None
        if month_text and month is None:
            raise serializers.ValidationError("Invalid month format")
        return {"year": year, "month": month, "member": attrs.get("member") or None}


class PdfDownloadFilterSerializer(serializers.Serializer):
    """§2.18's checks in its order: both of year and month, a member unless `type=overview`,
    then the year and month formats."""

    year = TextParamField(help_text="Exactly 4 digits (required).")
    month = TextParamField(help_text="1-12, one or two digits (required).")
    type = TextParamField(help_text="`overview` for the month's overview; anything else means a statement.")
    member = TextParamField(help_text="Member name, ignoring case (required unless type=overview).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        year_text, month_text = attrs.get("year", ""), attrs.get("month", "")
        overview = attrs.get("type") == "overview"
        member = attrs.get("member", "")
        if not year_text or not month_text:
            raise serializers.ValidationError("Year and month are required")
        if not overview and not member:
            raise serializers.ValidationError("Member name is required for non-overview PDFs")
        year, month = pdf_year(year_text), pdf_month(month_text)
        if year is None:
            raise serializers.ValidationError("Invalid year format")
        if month is None:
            raise serializers.ValidationError("Invalid month format")
        return {"year": year, "month": month, "overview": overview, "member": member}


# --- responses (documentation of the bodies) ---------------------------------------------------


class BreakdownEventSerializer(serializers.Serializer):
    """One outage counted against a service (site outages count against every service).

    The downtime/events object (api-contract §2.6), then the part of it the month counts.
    """

    id = serializers.IntegerField()
    member_name = serializers.CharField(help_text="The member's name in the outage rows (Details.Name)")
    check_type = serializers.CharField(help_text="site, domain or endpoint")
    check_name = serializers.CharField(allow_blank=True)
    domain_name = serializers.CharField(allow_blank=True)
    endpoint = serializers.CharField(allow_blank=True)
    start_time = serializers.CharField(help_text="RFC 3339 UTC")
    end_time = serializers.CharField(required=False, help_text="RFC 3339 UTC; omitted while ongoing (Q14)")
    duration = serializers.CharField(help_text="The counted part (counted_end − counted_start), e.g. `2h 5m`")
    error = serializers.CharField(required=False, help_text="Omitted when empty")
    is_ipv6 = serializers.BooleanField()
    status = serializers.CharField(help_text="ongoing or resolved")
    counted_start = serializers.CharField(help_text="Start of the part inside the month (UTC)")
    counted_end = serializers.CharField(help_text="End of the part counted (month end, or now while ongoing)")
    counted_seconds = serializers.IntegerField()


class BreakdownServiceSerializer(serializers.Serializer):
    name = serializers.CharField()
    base_cost = serializers.FloatField()
    uptime_percentage = serializers.FloatField(help_text="Floored to 6 decimals")
    billed_cost = serializers.FloatField()
    credits = serializers.FloatField()
    meets_sla = serializers.BooleanField()
    downtime_events = BreakdownEventSerializer(
        many=True, required=False, help_text="Only with include_downtime=true; then always a list."
    )


class BreakdownMemberSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Member key")
    level = serializers.IntegerField()
    services = BreakdownServiceSerializer(many=True)
    total_base_cost = serializers.FloatField()
    total_billed = serializers.FloatField()
    total_credits = serializers.FloatField()
    meets_sla = serializers.BooleanField()


class BreakdownSerializer(serializers.Serializer):
    members = BreakdownMemberSerializer(many=True)
    month = serializers.CharField(help_text="YYYY-MM")
    total_base_cost = serializers.FloatField()
    total_billed = serializers.FloatField()
    total_credits = serializers.FloatField()


class BillingSummarySerializer(serializers.Serializer):
    current_month_credits = serializers.FloatField()
    current_month_sla_violations = serializers.IntegerField()
    last_refresh = serializers.CharField(help_text="When the config in force was applied (RFC 3339 UTC)")
    service_distribution = serializers.DictField(child=serializers.IntegerField())
    total_base_cost_monthly = serializers.FloatField()
    total_members = serializers.IntegerField()
    total_services = serializers.IntegerField()
    unique_services = serializers.IntegerField()


class PdfEntrySerializer(serializers.Serializer):
    year = serializers.CharField()
    month = serializers.CharField(help_text="Two digits")
    member_name = serializers.CharField(required=False, help_text="Absent for the overview")
    is_overview = serializers.BooleanField()
    file_name = serializers.CharField()
    file_size = serializers.IntegerField()
    modified_time = serializers.CharField(help_text="RFC 3339 UTC, whole seconds")


class PdfMonthSerializer(serializers.Serializer):
    year = serializers.CharField()
    month = serializers.CharField()
    pdfs = PdfEntrySerializer(many=True)


class PdfListSerializer(serializers.Serializer):
    data = PdfMonthSerializer(many=True)
    total = serializers.IntegerField()


def breakdown_body(body: dict[str, Any], *, include_downtime: bool) -> dict[str, Any]:
    """With include_downtime, every service carries `downtime_events`, `[]` when none (Q14)."""
    if include_downtime:
        for member in body["members"]:
            for service in member["services"]:
                service.setdefault("downtime_events", [])
    return body
