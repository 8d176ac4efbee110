"""Per-IP throttling of anonymous clients (DECISIONS 20), the rate from the settings.

The counts live in the shared cache (settings CACHES "default": the database's cache table or
Redis), so every gunicorn worker counts one address alike. The address is the connecting
one; X-Forwarded-For is used only with NUM_PROXIES > 0 (DRF's own rule for that setting).
Its own module, without DRF's views, so that the settings can name it.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle

logger = logging.getLogger("collator.api")


class AnonThrottle(AnonRateThrottle):
    """DRF's class reads the rate once at import; this one reads it per request, so a changed
    setting applies at once."""

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Request, view: Any) -> bool:
        """A cache that fails (e.g. its table not created yet) lets the request through,
        logged: throttling protects the API, it must not take it down."""
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            logger.error("event=throttle_unavailable path=%s error=%r", request.path, str(exc))
            return True
