"""Anonymous clients are throttled per IP (DECISIONS 20)."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.test import Client

from tests.collator.api_fixtures import api  # noqa: F401


def test_it_answers_429_past_the_configured_rate(api: Client, settings: Any) -> None:  # noqa: F811
    """Rate 3/minute: the 4th call from one address is refused, another address still
    gets through, and health (for monitors) is never throttled."""
    rest = dict(django_settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {"anon": "3/minute"}
    settings.REST_FRAMEWORK = rest

    codes = [api.get("/api/services", REMOTE_ADDR="192.0.2.10").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = api.get("/api/services", REMOTE_ADDR="192.0.2.10")
    assert refused.json()["error"].startswith("Request was throttled.")
    assert int(refused["Retry-After"]) > 0
    assert api.get("/api/services", REMOTE_ADDR="192.0.2.11").status_code == 200
    assert all(api.get("/api/health", REMOTE_ADDR="192.0.2.10").status_code == 200 for _ in range(5))
