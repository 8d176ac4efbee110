"""The response cache of /api/requests/* (metrics/api_cache.py) and the shared per-IP throttle.

The cache is exact: a rollup refresh invalidates every cached body at once, so the answer
always equals the rollups. Raw rows changed *without* a refresh are the proof that a body is
served from the cache (the rollups, not the raw table, are the source of truth for the API).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from django.conf import settings as django_settings
from django.core.cache import caches
from django.db import connection
from django.test import Client

from metrics.api_cache import VERSION_KEY, json_body, usage_rollups_version
from metrics.models import RequestStat
from metrics.rollups import usage_rollups_refresh
from tests.collator.api_fixtures import add_usage, api, get_json  # noqa: F401

DAY = date(2025, 3, 10)
COUNTRY = "/api/requests/country"


def _germany(hits: int) -> dict[str, Any]:
    return {"date": DAY, "country_code": "DE", "country_name": "Germany", "member_name": "Amforc", "hits": hits}


def _country_rows(client: Client, **params: str) -> Any:
    return get_json(client, COUNTRY, start="2025-03-01", end="2025-03-31", **params)


def test_it_serves_a_cached_body_until_the_rollups_are_refreshed(api: Client) -> None:  # noqa: F811
    """10 + 5 hits from two nodes → 15. The raw row of NODE-A is then raised to 100 without a
    refresh: still 15 (served from the cache). After the refresh the day is 100 + 5 = 105."""
    add_usage([_germany(10), {**_germany(5), "node_id": "NODE-B"}])
    expected = [{"date": "2025-03-10", "country": "DE", "country_name": "Germany", "requests": 15}]
    assert _country_rows(api) == expected
    RequestStat.objects.filter(node_id="NODE-A").update(hits=100)
    assert _country_rows(api) == expected
    usage_rollups_refresh(dates=[DAY])
    assert _country_rows(api) == [{**expected[0], "requests": 105}]


def test_it_keys_the_body_on_the_normalised_query(api: Client) -> None:  # noqa: F811
    """`country=de` and `country=DE` are one query (normalised before the key); another date
    range is another key, so it sees the raw change made behind the cache's back once the
    first range is cached: 7 then, for March 10 only, still 7 → after the refresh 70."""
    add_usage([_germany(7)])
    assert _country_rows(api, country="de") == _country_rows(api, country="DE")
    RequestStat.objects.update(hits=70)
    assert _country_rows(api, country="DE")[0]["requests"] == 7
    usage_rollups_refresh(dates=[DAY])
    assert _country_rows(api, country="de")[0]["requests"] == 70


def test_it_starts_a_new_version_when_the_token_is_lost(api: Client) -> None:  # noqa: F811
    """A cleared or evicted version token invalidates too: a new token, a fresh body."""
    add_usage([_germany(3)])
    before = usage_rollups_version()
    assert before is not None
    assert _country_rows(api)[0]["requests"] == 3
    RequestStat.objects.update(hits=30)
    with connection.cursor() as cursor:  # rollups rebuilt by hand, no bump: then the token is lost
        cursor.execute("UPDATE requests_daily_country SET hits = 30")
    caches["default"].delete(VERSION_KEY)
    caches["api_responses"].clear()
    assert _country_rows(api)[0]["requests"] == 30
    assert usage_rollups_version() not in (None, before)


def test_it_writes_the_same_bytes_as_drfs_renderer() -> None:
    """Compact, UTF-8 (not \\u-escaped), U+2028 escaped as DRF's JSONRenderer does."""
    from rest_framework.renderers import JSONRenderer

    data = [{"date": "2025-03-10", "country": "TR", "country_name": "Türkiye\u2028", "requests": 1}]
    assert json_body(data) == JSONRenderer().render(data)


def test_it_serves_uncached_when_the_shared_cache_fails(api: Client, settings: Any) -> None:  # noqa: F811
    """The cache table missing (not migrated yet): 200 with the right rows, throttling lets
    the request through; nothing fails."""
    add_usage([_germany(4)])
    broken = {**django_settings.CACHES}
    broken["default"] = {**broken["default"], "LOCATION": "no_such_cache_table"}
    if broken["default"]["BACKEND"].endswith("DatabaseCache"):
        settings.CACHES = broken
        assert usage_rollups_version() is None
    assert _country_rows(api)[0]["requests"] == 4


class TestThrottleAcrossProcesses:
    def _limit(self, settings: Any, rate: str) -> None:
        rest = dict(django_settings.REST_FRAMEWORK)
        rest["DEFAULT_THROTTLE_RATES"] = {"anon": rate}
        settings.REST_FRAMEWORK = rest

    def test_it_counts_in_the_shared_cache(self, api: Client, settings: Any) -> None:  # noqa: F811
        """The count lives in the "default" cache (the DB table or Redis), which every
        worker shares, not in a worker's memory."""
        self._limit(settings, "2/minute")
        assert caches["default"].__class__.__name__ in {"DatabaseCache", "RedisCache"}
        for _ in range(2):
            assert api.get("/api/services", REMOTE_ADDR="192.0.2.20").status_code == 200
        history = caches["default"].get("throttle_anon_192.0.2.20")
        assert isinstance(history, list) and len(history) == 2
        assert api.get("/api/services", REMOTE_ADDR="192.0.2.20").status_code == 429

    def test_it_ignores_x_forwarded_for_by_default(self, api: Client, settings: Any) -> None:  # noqa: F811
        """NUM_PROXIES = 0: a client cannot dodge the limit by inventing X-Forwarded-For."""
        self._limit(settings, "2/minute")
        codes = [
            api.get("/api/services", REMOTE_ADDR="192.0.2.30", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code
            for i in range(3)
        ]
        assert codes == [200, 200, 429]

    def test_it_trusts_the_proxys_address_with_num_proxies(self, api: Client, settings: Any) -> None:  # noqa: F811
        """NUM_PROXIES = 1 (one reverse proxy): the client is the last X-Forwarded-For entry,
        so two clients behind the same proxy are counted apart."""
        rest = dict(django_settings.REST_FRAMEWORK)
        rest["DEFAULT_THROTTLE_RATES"] = {"anon": "2/minute"}
        rest["NUM_PROXIES"] = 1
        settings.REST_FRAMEWORK = rest
        proxy = "10.0.0.1"
        first = [
            api.get("/api/services", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.5, 198.51.100.1").status_code
            for _ in range(3)
        ]
        assert first == [200, 200, 429]
        other = api.get("/api/services", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.2")
        assert other.status_code == 200


def test_it_keeps_the_response_headers(api: Client) -> None:  # noqa: F811
    """Cached or not: application/json, CORS for browsers."""
    add_usage([_germany(1)])
    for _ in range(2):
        response = api.get(COUNTRY, {"start": "2025-03-10", "end": "2025-03-10"}, HTTP_ORIGIN="https://x.example")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert response["Access-Control-Allow-Origin"] == "*"
        assert json.loads(response.content)[0]["requests"] == 1
