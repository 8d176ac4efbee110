"""Query-parameter validation and response shapes of the requests and downtime API.

The FilterSerializers validate and normalise query strings (api-contract §1.8, with the
fixes of quirks Q7–Q9). The response serializers describe the bodies for the OpenAPI
schema; the views build the bodies as plain dicts (a month of ASN rows is thousands of
rows, and DRF field-by-field serialisation would dominate the response time).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from collator.api_common import CommaListField, DateRangeFilterSerializer, TextParamField, clean_piece
from metrics.models import MemberEvent
from metrics.selectors import check_type_canonical, check_type_word

# Per-parameter caps (quirk Q8): the dashboard sends about two domains per selected service.
MAX_COUNTRIES = 250
MAX_ASNS = 500
MAX_NETWORKS = 50
MAX_SERVICES = 200
MAX_MEMBERS = 100
MAX_DOMAINS = 400
MAX_NETWORK_BYTES = 100

_COUNTRY = re.compile(r"[A-Z]{2}")
_ASN = re.compile(r"(?:AS)?([0-9]{1,10})")
_KEY = re.compile(r"[A-Za-z0-9_.-]+")
# Unicode letters and digits, space and . - _ ' ( ) & (quirk Q7); no control characters.
_MEMBER = re.compile(r"[\w .'()&-]{1,128}")


def country_code(piece: str) -> str | None:
    # Checked for ASCII first: Python upper-cases 'ß' to 'SS'.
    upper = piece.upper() if piece.isascii() else ""
    return upper if _COUNTRY.fullmatch(upper) else None


def asn(piece: str) -> str | None:
    """`AS13335`, `as13335` and `13335` all mean `AS13335` (DECISIONS 8)."""
    match = _ASN.fullmatch(piece.upper()) if piece.isascii() else None
    return f"AS{int(match.group(1))}" if match else None


def network_name(piece: str) -> str | None:
    return piece if len(piece.encode("utf-8")) <= MAX_NETWORK_BYTES else None


def service_key(piece: str) -> str | None:
    return piece if _KEY.fullmatch(piece) else None


def member_name(piece: str) -> str | None:
    return piece if _MEMBER.fullmatch(piece) else None


def domain_name(piece: str) -> str | None:
    """Domains are stored lower-case without a trailing dot (DECISIONS 8)."""
    if not _KEY.fullmatch(piece):
        return None
    lowered = piece.lower().rstrip(".")
    return lowered or None


class RequestsFilterSerializer(DateRangeFilterSerializer):
    country = CommaListField(
        check=country_code,
        invalid="Invalid filter: invalid country code: {value}",
        max_items=MAX_COUNTRIES,
        help_text="Comma list of ISO country codes (any case).",
    )
    asn = CommaListField(
        check=asn,
        invalid="Invalid filter: invalid ASN: {value}",
        max_items=MAX_ASNS,
        help_text="Comma list of ASNs: AS13335, as13335 or 13335.",
    )
    network = CommaListField(
        check=network_name,
        invalid="Invalid filter: network name too long",
        max_items=MAX_NETWORKS,
        help_text="Comma list of network-name substrings (literal, case-insensitive).",
    )
    service = CommaListField(
        check=service_key,
        invalid="Invalid filter: invalid service name: {value}",
        max_items=MAX_SERVICES,
        help_text="Comma list of service keys; each selects the domains of that service.",
    )
    member = CommaListField(
        check=member_name,
        invalid="Invalid filter: invalid member name: {value}",
        max_items=MAX_MEMBERS,
        help_text="Comma list of member names.",
    )
    domain = CommaListField(
        check=domain_name,
        invalid="Invalid filter: invalid domain name: {value}",
        max_items=MAX_DOMAINS,
        help_text="Comma list of domain names.",
    )


@extend_schema_field(OpenApiTypes.STR)
class _SingleValueField(serializers.Field):
    """One value: NULs removed, trimmed, checked; empty means not given."""

    def __init__(self, *, check: Any, invalid: str, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        self.check, self.invalid = check, invalid
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = clean_piece(data) if isinstance(data, str) else None
        if value is None:
            raise serializers.ValidationError(self.invalid)
        if not value:
            return ""
        checked = self.check(value)
        if checked is None:
            raise serializers.ValidationError(self.invalid)
        return checked

    def to_representation(self, value: str) -> str:
        return value


def _status(value: str) -> str | None:
    return value if value in ("ongoing", "resolved") else None


class DowntimeEventsFilterSerializer(DateRangeFilterSerializer):
    member = _SingleValueField(check=member_name, invalid="Invalid member name", help_text="Member key or name.")
    service = _SingleValueField(check=service_key, invalid="Invalid service name", help_text="Service key.")
    domain = _SingleValueField(check=service_key, invalid="Invalid domain", help_text="Domain name, exact.")
    check_type = _SingleValueField(
        check=check_type_canonical, invalid="Invalid check type", help_text="site, domain or endpoint (or 1, 2, 3)."
    )
    status = _SingleValueField(check=_status, invalid="Invalid status", help_text="ongoing or resolved.")


class MemberStatsFilterSerializer(DateRangeFilterSerializer):
    name = TextParamField(help_text="Member key.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        name = clean_piece(attrs.get("name", ""))
        if not name:
            raise serializers.ValidationError("Member name required")
        attrs["name"] = name
        return attrs


# --- response formatting ---------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    """UTC with a `Z`, fractional seconds only when non-zero (api-contract §1.5)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _truncated_div(value: int, divisor: int) -> int:
    quotient = abs(value) // divisor
    return quotient if value >= 0 else -quotient


def duration_text(seconds: int) -> str:
    """`1d 2h 0m`, `2h 5m` or `47m` (api-contract §1.10.2), truncating toward zero like Go."""
    total_hours = _truncated_div(seconds, 3600)
    days = _truncated_div(total_hours, 24)
    hours = total_hours - days * 24
    total_minutes = _truncated_div(seconds, 60)
    minutes = total_minutes - _truncated_div(total_minutes, 60) * 60
    if days > 0:
        return f"{days}d {hours}h {minutes}m"
    if hours > 0:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def event_json(event: MemberEvent, *, now: datetime) -> dict[str, Any]:
    """An outage row as the dashboard reads it (api-contract §2.6): empty keys left out."""
    item: dict[str, Any] = {
        "id": event.id,
        "member_name": event.member_name,
        "check_type": check_type_word(event.check_type),
        "check_name": event.check_name,
    }
    if event.domain_name:
        item["domain_name"] = event.domain_name
    if event.endpoint:
        item["endpoint"] = event.endpoint
    item["start_time"] = rfc3339(event.start_time)
    if event.end_time is not None:
        item["end_time"] = rfc3339(event.end_time)
    until = event.end_time if event.end_time is not None else now
    item["duration"] = duration_text(int((until - event.start_time).total_seconds()))
    if event.error:
        item["error"] = event.error
    item["is_ipv6"] = bool(event.is_ipv6)
    item["status"] = "resolved" if event.end_time is not None else "ongoing"
    return item


# --- response shapes (OpenAPI) ---------------------------------------------------------------


class RequestsCountryRowSerializer(serializers.Serializer):
    date = serializers.DateField()
    country = serializers.CharField(required=False, help_text="Left out when the code is empty.")
    country_name = serializers.CharField(required=False, help_text="Left out when empty.")
    requests = serializers.IntegerField(min_value=0)


class RequestsAsnRowSerializer(serializers.Serializer):
    date = serializers.DateField()
    asn = serializers.CharField(required=False, help_text="Left out when unknown.")
    network = serializers.CharField(required=False, help_text="Left out when unknown.")
    requests = serializers.IntegerField(min_value=0)


class RequestsServiceRowSerializer(serializers.Serializer):
    date = serializers.DateField()
    service = serializers.CharField()
    domain = serializers.CharField()
    requests = serializers.IntegerField(min_value=0)


class RequestsMemberRowSerializer(serializers.Serializer):
    date = serializers.DateField()
    member = serializers.CharField(required=False, help_text="Left out when empty.")
    requests = serializers.IntegerField(min_value=0)


class RequestsSummarySerializer(serializers.Serializer):
    end_date = serializers.DateField()
    start_date = serializers.DateField()
    total_requests = serializers.IntegerField(min_value=0)
    unique_asns = serializers.IntegerField(min_value=0)
    unique_countries = serializers.IntegerField(min_value=0)
    unique_domains = serializers.IntegerField(min_value=0)
    unique_members = serializers.IntegerField(min_value=0)


class DowntimeEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    member_name = serializers.CharField(allow_blank=True)
    check_type = serializers.CharField(help_text="site, domain or endpoint")
    check_name = serializers.CharField(allow_blank=True)
    domain_name = serializers.CharField(required=False)
    endpoint = serializers.CharField(required=False)
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField(required=False, help_text="Left out while the outage is ongoing.")
    duration = serializers.CharField()
    error = serializers.CharField(required=False)
    is_ipv6 = serializers.BooleanField()
    status = serializers.ChoiceField(choices=["ongoing", "resolved"])


class DowntimeSummarySerializer(serializers.Serializer):
    affected_members = serializers.IntegerField(min_value=0)
    average_downtime_hours = serializers.FloatField(min_value=0)
    end_date = serializers.DateField()
    ongoing_events = serializers.IntegerField(min_value=0)
    resolved_events = serializers.IntegerField(min_value=0)
    start_date = serializers.DateField()
    total_downtime_hours = serializers.FloatField(min_value=0)
    total_events = serializers.IntegerField(min_value=0)


class TopCountrySerializer(serializers.Serializer):
    country = serializers.CharField(allow_blank=True)
    name = serializers.CharField(allow_blank=True)
    requests = serializers.IntegerField(min_value=0)


class ServiceBreakdownRowSerializer(serializers.Serializer):
    service = serializers.CharField()
    domain = serializers.CharField()
    requests = serializers.IntegerField(min_value=0)


class MemberStatsSerializer(serializers.Serializer):
    end_date = serializers.DateField()
    member_name = serializers.CharField()
    service_breakdown = ServiceBreakdownRowSerializer(many=True)
    start_date = serializers.DateField()
    top_countries = TopCountrySerializer(many=True)
    total_downtime_events = serializers.IntegerField(min_value=0)
    total_downtime_hours = serializers.FloatField(min_value=0)
    total_requests = serializers.IntegerField(min_value=0)
    uptime_percentage = serializers.FloatField(min_value=0, max_value=100)
