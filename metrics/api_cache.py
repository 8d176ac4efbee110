"""Cached JSON bodies of the usage endpoints (/api/requests/*), exact by construction.

A body is stored under (endpoint, validated query, config in force, rollup version). The
rollup version is a random token in the shared cache; `usage_rollups_version_bump` replaces it
whenever `metrics.rollups.usage_rollups_refresh` has rebuilt a day, so the next request of
any process computes afresh and an old body is never served again. A token that went
missing (evicted, cache cleared) is replaced by a new one, which also invalidates everything.

Two levels: this process's memory ("api_responses", no copying across processes), then the
shared cache (zlib-compressed, so one computation serves every gunicorn worker). A failing
cache never fails a request: the body is then computed and served uncached, and logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import zlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import transaction

logger = logging.getLogger("metrics.api_cache")

VERSION_KEY = "usage-rollups:version"
_BODY_PREFIX = "usage-api:"
# Bodies above this are served but not kept (a year of ASNs with no filter is a few MB).
MAX_CACHED_BYTES = 8 * 1024 * 1024


def json_body(data: Any) -> bytes:
    """What DRF's JSONRenderer writes (compact, UTF-8, U+2028/2029 escaped), without its overhead."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def usage_rollups_version() -> str | None:
    """The current rollup version token (made when missing); None when the cache is unusable."""
    shared = caches["default"]
    try:
        token = shared.get(VERSION_KEY)
        if token is None:
            shared.add(VERSION_KEY, uuid.uuid4().hex, timeout=None)
            token = shared.get(VERSION_KEY)
    except Exception as exc:  # any backend error: serve uncached
        logger.warning("event=api_cache_unavailable error=%r", str(exc))
        return None
    return token if isinstance(token, str) else None


def _version_replace() -> None:
    try:
        caches["default"].set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception as exc:
        # Cannot invalidate: drop the token instead; a reader then makes a new one.
        logger.error("event=api_cache_bump_failed error=%r", str(exc))
        try:
            caches["default"].delete(VERSION_KEY)
        except Exception:
            logger.error("event=api_cache_delete_failed")


def usage_rollups_version_bump() -> None:
    """Invalidate every cached usage body: now, and again once the surrounding transaction
    commits (a reader between the two could otherwise cache the rows the transaction has
    not yet made visible under the new token). Outside a transaction both run at once."""
    _version_replace()
    transaction.on_commit(_version_replace)


def _body_key(endpoint: str, query: str, version: str) -> str:
    digest = hashlib.sha256(query.encode()).hexdigest()[:40]
    return f"{_BODY_PREFIX}{endpoint}:{version}:{digest}"


def cached_json(*, endpoint: str, query: str, compute: Callable[[], Any]) -> bytes:
    """The JSON body for (endpoint, query), from the caches or from `compute()`.

    `query` must name everything the body depends on besides the rollups (the validated
    filters, resolved dates, and the config when it is used).
    """
    version = usage_rollups_version()
    if version is None:
        return json_body(compute())
    key = _body_key(endpoint, query, version)
    local, shared = caches["api_responses"], caches["default"]
    body = local.get(key)
    if body is not None:
        return body
    try:
        packed = shared.get(key)
    except Exception as exc:
        logger.warning("event=api_cache_unavailable error=%r", str(exc))
        packed = None
    if packed is not None:
        body = zlib.decompress(packed)
        local.set(key, body, timeout=_seconds())
        return body
    body = json_body(compute())
    if len(body) <= MAX_CACHED_BYTES:
        local.set(key, body, timeout=_seconds())
        try:
            shared.set(key, zlib.compress(body, 1), timeout=_seconds())
        except Exception as exc:
            logger.warning("event=api_cache_store_failed error=%r", str(exc))
    return body


def _seconds() -> int:
    return int(getattr(settings, "API_RESPONSE_CACHE_SECONDS", 3600))
