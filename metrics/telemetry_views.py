"""`GET /metrics`: Prometheus scrape of the listener's stored counters (metrics/telemetry.py)."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from metrics.telemetry import telemetry_render

logger = logging.getLogger(__name__)


@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    try:
        body = telemetry_render()
    except DatabaseError as exc:
        # A scrape failure must be visible to Prometheus (the target goes down), not a 500 page.
        logger.warning("event=metrics_scrape_failed error=%r", str(exc))
        return HttpResponse("telemetry unavailable: database error\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
