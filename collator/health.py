"""`/api/health`: what an operator needs to know at a glance (api-contract §2.19, DECISIONS 23).

The reference always answers 200 "healthy" without looking at anything. This one checks
the database (503 when it cannot be reached: nothing else can work then), and reports the
NATS listener's heartbeat, the config loads, the last usage day, the last statement run,
the TLS state and the version. Each part is read defensively: a part that cannot be read
says "unknown" rather than failing the whole answer.
"""

from __future__ import annotations

import logging
import os
import ssl
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from collator.api_common import PublicApiView
from metrics.serializers import rfc3339

logger = logging.getLogger("collator.health")

# The listener announces itself every 90 s (nats-protocol §6); three missed beats is stale.
HEARTBEAT_STALE_AFTER = timedelta(seconds=270)
# The listener saves its state every 5 s; a minute without a save means it is not running.
LISTENER_STATE_STALE_AFTER = timedelta(seconds=60)


def _when(moment: datetime | None) -> str | None:
    return rfc3339(moment) if moment is not None else None


def database_check() -> str | None:
    """None when a query runs, else the error text."""
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def ssl_state() -> str:
    """`disabled` without SSL_CERT/SSL_KEY; `enabled` when the pair loads; `error` otherwise."""
    cert, key = os.environ.get("SSL_CERT", ""), os.environ.get("SSL_KEY", "")
    if not (cert and key):
        return "disabled"
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError):
        return "error"
    return "enabled"


def nats_listener_state(*, now: datetime) -> dict[str, Any]:
    from metrics.models import ClusterNode

    node_id = settings.COLLATOR.nats.node_id
    node = ClusterNode.objects.filter(node_id=node_id).first()
    if node is None:
        state: dict[str, Any] = {"last_heard": None, "node_id": node_id, "state": "unknown"}
    else:
        age = now - node.last_heard
        state = {
            "age_seconds": int(age.total_seconds()),
            "last_heard": _when(node.last_heard),
            "node_id": node_id,
            "state": "ok" if age <= HEARTBEAT_STALE_AFTER else "stale",
        }
    state.update(listener_process_state(node_id=node_id, now=now))
    return dict(sorted(state.items()))


def listener_process_state(*, node_id: str, now: datetime) -> dict[str, Any]:
    """What the running listener saved (metrics/listener_state.py); {} before it ever ran.

    `process` is `ok` while the listener saves every few seconds, `stale` when it has not
    for LISTENER_STATE_STALE_AFTER (stopped, crashed, or cut off from the database).
    """
    from metrics.listener_state_models import ListenerState

    row = ListenerState.objects.filter(node_id=node_id).first()
    if row is None:
        return {}
    fresh = now - row.updated_at <= LISTENER_STATE_STALE_AFTER
    return {
        "connected": bool(row.connected and fresh),
        "durable_finalize": row.durable_finalize,
        "last_collection": dict(sorted((row.last_collection or {}).items())),
        "last_heartbeat_sent": _when(row.last_heartbeat_sent),
        "process": "ok" if fresh else "stale",
        "process_updated_at": _when(row.updated_at),
        "queue_depth": dict(sorted((row.queue_depths or {}).items())),
        "queue_dropped": dict(sorted((row.queue_dropped or {}).items())),
    }


def config_state() -> dict[str, Any]:
    from members.selectors import config_snapshot_latest_applied, config_snapshot_latest_failed

    applied = config_snapshot_latest_applied()
    failed = config_snapshot_latest_failed()
    state: dict[str, Any] = {
        "last_good_load": _when(applied.applied_at) if applied else None,
        "snapshot_id": applied.pk if applied else None,
        "last_error": None,
        "last_error_at": None,
    }
    if failed is not None:
        errors = failed.errors or []
        first = errors[0] if errors else {}
        state["last_error"] = first.get("message", str(first)) if isinstance(first, dict) else str(first)
        state["last_error_at"] = _when(failed.last_attempt_at or failed.fetched_at)
    return state


def last_usage_date() -> str | None:
    from metrics.models import RequestStat

    latest = RequestStat.objects.aggregate(latest=Max("date"))["latest"]
    return latest.isoformat() if latest else None


def last_statement_run() -> str | None:
    """When the last statement was written, if the billing app has statements."""
    try:
        statement = apps.get_model("billing", "Statement")
    except LookupError:
        return None
    field = "created_at" if any(f.name == "created_at" for f in statement._meta.get_fields()) else None
    if field is None:
        return None
    return _when(statement.objects.aggregate(latest=Max(field))["latest"])


def _part(name: str, read: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return read(*args, **kwargs)
    except DatabaseError:
        logger.exception("event=health_part_failed part=%s", name)
        return "unknown"


def health_report(*, now: datetime) -> tuple[dict[str, Any], int]:
    db_error = database_check()
    report: dict[str, Any] = {
        "database": {"error": db_error, "ok": db_error is None},
        "ssl": ssl_state(),
        "status": "healthy" if db_error is None else "unhealthy",
        "timestamp": _when(now),
        "version": settings.VERSION,
    }
    if db_error is not None:
        logger.error("event=health_database_unreachable error=%s", db_error)
        report.update(config="unknown", last_statement_run=None, last_usage_date=None, nats_listener="unknown")
        return dict(sorted(report.items())), 503
    report["config"] = _part("config", config_state)
    report["last_statement_run"] = _part("statements", last_statement_run)
    report["last_usage_date"] = _part("usage", last_usage_date)
    report["nats_listener"] = _part("nats", nats_listener_state, now=now)
    return dict(sorted(report.items())), 200


class HealthSerializer(serializers.Serializer):
    config = serializers.JSONField(help_text="last_good_load, snapshot_id, last_error, last_error_at")
    database = serializers.JSONField(help_text="ok, error")
    last_statement_run = serializers.DateTimeField(allow_null=True)
    last_usage_date = serializers.DateField(allow_null=True)
    nats_listener = serializers.JSONField(
        help_text="state (ok, stale, unknown), node_id, last_heard; once the listener ran also connected, "
        "last_heartbeat_sent, last_collection (per node), queue_depth, queue_dropped, durable_finalize, "
        "process (ok, stale), process_updated_at"
    )
    ssl = serializers.ChoiceField(choices=["disabled", "enabled", "error"])
    status = serializers.ChoiceField(choices=["healthy", "unhealthy"])
    timestamp = serializers.DateTimeField()
    version = serializers.CharField()


class HealthView(PublicApiView):
    # Monitors poll this; it is cheap and must keep answering when clients are throttled.
    throttle_classes: list[type] = []

    @extend_schema(summary="Service health", responses={200: HealthSerializer, 503: HealthSerializer})
    def get(self, request: Request) -> Response:
        body, status_code = health_report(now=timezone.now())
        return Response(body, status=status_code)
