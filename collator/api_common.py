"""What every API view shares: the base view, errors, throttling and query-parameter fields.

Errors are `{"error": "<message>"}` (api-contract §1.6). Bad input is a 400 with a message
that says what was wrong; an unexpected failure is a 500 whose log line and response carry
the same request id, so an operator can find one from the other.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, exception_handler, set_rollback

from collator.throttling import AnonThrottle

logger = logging.getLogger("collator.api")

MAX_SPAN_DAYS = 366
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ApiError(APIException):
    """An error with the contract's message, answered as `{"error": message}`."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, status_code: int = status.HTTP_400_BAD_REQUEST) -> None:
        super().__init__(detail=message)
        self.status_code = status_code


class ErrorSerializer(serializers.Serializer):
    """Every error body (api-contract §1.6)."""

    error = serializers.CharField()
    request_id = serializers.CharField(required=False, help_text="On 500s: the id of the logged error.")


def not_found(message: str) -> ApiError:
    return ApiError(message, status_code=status.HTTP_404_NOT_FOUND)


def request_id_of(request: HttpRequest | Request) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one."""
    given = request.META.get("HTTP_X_REQUEST_ID", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]


def _message(detail: Any) -> str:
    """The first human-readable message in a DRF error detail (str, list or dict)."""
    if isinstance(detail, Mapping):
        for value in detail.values():
            return _message(value)
        return "Bad request"
    if isinstance(detail, list | tuple):
        return _message(detail[0]) if detail else "Bad request"
    return str(detail)


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response:
    """DRF's handler, reshaped to `{"error": ...}`; anything unexpected becomes a logged 500."""
    response = exception_handler(exc, dict(context))
    if response is not None:
        response.data = {"error": _message(response.data)}
        return response
    set_rollback()
    request = context.get("request")
    request_id = request_id_of(request) if request is not None else uuid.uuid4().hex[:16]
    logger.error(
        "event=api_error request_id=%s method=%s path=%s error=%s",
        request_id,
        getattr(request, "method", "-"),
        getattr(request, "path", "-"),
        type(exc).__name__,
        exc_info=exc,
    )
    # api-contract §1.6 names a failed query `Database error`; anything else is ours to hide.
    message = "Database error" if isinstance(exc, DatabaseError) else "Internal server error"
    response = Response({"error": message, "request_id": request_id}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    response["X-Request-ID"] = request_id
    return response


class PublicApiView(APIView):
    """Read-only, public, JSON only (api-contract §4); other methods get 405."""

    http_method_names = ["get", "head", "options"]
    renderer_classes = [JSONRenderer]
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [AnonThrottle]

    def get_exception_handler(self) -> Callable[[Exception, Mapping[str, Any]], Response]:
        return api_exception_handler


# --- query parameters ------------------------------------------------------------------------


def first_query_values(request: Request) -> dict[str, str]:
    """Each parameter's *first* value, as the reference reads them (api-contract §1.3)."""
    return {key: values[0] for key, values in request.query_params.lists() if values}


def validated_query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """Validate the query string; the first error, in field order, becomes a 400."""
    serializer = serializer_class(data=first_query_values(request))
    if not serializer.is_valid():
        raise ApiError(_message(_ordered_errors(serializer)))
    return dict(serializer.validated_data)


def _ordered_errors(serializer: serializers.Serializer) -> dict[str, Any]:
    errors = serializer.errors
    ordered = {name: errors[name] for name in serializer.fields if name in errors}
    if api_settings.NON_FIELD_ERRORS_KEY in errors:
        ordered[api_settings.NON_FIELD_ERRORS_KEY] = errors[api_settings.NON_FIELD_ERRORS_KEY]
    return ordered


def clean_piece(value: str) -> str:
    """NUL characters removed and surrounding whitespace trimmed (api-contract §1.8.2)."""
    return value.replace("\x00", "").strip()


def today_utc() -> date:
    return datetime.now(tz=UTC).date()


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class TextParamField(serializers.CharField):
    """Free text: NUL characters removed and trimmed (api-contract §1.8.3), empty allowed."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            data = clean_piece(data)
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.DATE)
class StrictDateField(serializers.Field):
    """`YYYY-MM-DD`, exactly, and a real calendar day; empty means "not given"."""

    default_error_messages = {"invalid": "Invalid date format"}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> date:
        text = data if isinstance(data, str) else ""
        if not _DATE.fullmatch(text):
            self.fail("invalid")
        try:
            return date.fromisoformat(text)
        except ValueError:
            self.fail("invalid")
            raise  # unreachable: fail() raises

    def to_representation(self, value: date) -> str:
        return value.isoformat()


class DateRangeFilterSerializer(serializers.Serializer):
    """`start`/`end`, inclusive, each defaulting to today (UTC), at most 366 days apart."""

    start = StrictDateField(help_text="First day, YYYY-MM-DD (UTC); default today.")
    end = StrictDateField(help_text="Last day, inclusive, YYYY-MM-DD (UTC); default today.")

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # An empty value means "not given", as in the reference.
        cleaned = {key: value for key, value in data.items() if not (key in ("start", "end") and value == "")}
        return super().to_internal_value(cleaned)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        today = today_utc()
        attrs.setdefault("start", today)
        attrs.setdefault("end", today)
        if attrs["start"] > attrs["end"]:
            raise serializers.ValidationError("start must not be after end")
        if (attrs["end"] - attrs["start"]).days + 1 > MAX_SPAN_DAYS:
            raise serializers.ValidationError(f"the date range must not span more than {MAX_SPAN_DAYS} days")
        return attrs


def window_of(start: date, end: date) -> tuple[datetime, datetime]:
    """Days [start, end] as the half-open instants [start 00:00, end + 1 day 00:00) UTC."""
    return (
        datetime(start.year, start.month, start.day, tzinfo=UTC),
        datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1),
    )


@extend_schema_field(OpenApiTypes.STR)
class CommaListField(serializers.Field):
    """A comma list: pieces trimmed, NULs removed, empties dropped, each checked, capped.

    The cap counts this parameter only (quirk Q8): 40 selected services are about 80
    domains, which the dashboard sends in one `domain` list.
    """

    def __init__(
        self,
        *,
        check: Callable[[str], str | None],
        invalid: str,
        max_items: int,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("required", False)
        self.check = check
        self.invalid = invalid
        self.max_items = max_items
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        if not isinstance(data, str):
            raise serializers.ValidationError(self.invalid.format(value=""))
        pieces = [clean_piece(piece) for piece in data.split(",")]
        values: list[str] = []
        for piece in pieces:
            if not piece:
                continue
            normalised = self.check(piece)
            if normalised is None:
                raise serializers.ValidationError(self.invalid.format(value=piece))
            if normalised not in values:
                values.append(normalised)
        if len(values) > self.max_items:
            raise serializers.ValidationError(
                f"Invalid filter: too many values for {self.field_name} (max {self.max_items})"
            )
        return values

    def to_representation(self, value: list[str]) -> str:
        return ",".join(value)


# --- billing month parameters (for the billing endpoints) -----------------------------------

_SIGNED_INT = re.compile(r"[+-]?[0-9]{1,6}")


@extend_schema_field(OpenApiTypes.INT)
class _BoundedIntField(serializers.Field):
    """An integer written as an optional sign then ASCII digits, within [low, high]."""

    def __init__(self, *, low: int, high: int, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        self.low, self.high, self.message = low, high, message
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        text = data if isinstance(data, str) else ""
        if not _SIGNED_INT.fullmatch(text) or not self.low <= int(text) <= self.high:
            raise serializers.ValidationError(self.message)
        return int(text)

    def to_representation(self, value: int) -> int:
        return value


def month_field(**kwargs: Any) -> serializers.Field:
    return _BoundedIntField(low=1, high=12, message="Invalid month", help_text="Month 1-12.", **kwargs)


def year_field(**kwargs: Any) -> serializers.Field:
    return _BoundedIntField(low=2020, high=2100, message="Invalid year", help_text="Year 2020-2100.", **kwargs)


def previous_month(today: date) -> tuple[int, int]:
    """(year, month) of the month before today's: the first of this month minus one day (Q12)."""
    last_day = today.replace(day=1) - timedelta(days=1)
    return last_day.year, last_day.month


class BillingMonthFilterSerializer(serializers.Serializer):
    """`month`/`year` of the billing endpoints; a missing part comes from the previous month."""

    month = month_field()
    year = year_field()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        cleaned = {key: value for key, value in data.items() if not (key in ("month", "year") and value == "")}
        return super().to_internal_value(cleaned)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        default_year, default_month = previous_month(today_utc())
        attrs.setdefault("year", default_year)
        attrs.setdefault("month", default_month)
        return attrs
