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
MATRIX_QUEUE = "matrix_alerts"  # metrics/alerts.py QUEUE_NAME
QUEUE_DEPTH_SAMPLE = "collator_queue_depth"


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
    queue_depths = dict(row.queue_depths or {})
    queue_depths.setdefault(MATRIX_QUEUE, matrix_alert_queue_depth(process=node_id))
    return {
        "connected": bool(row.connected and fresh),
        "durable_finalize": row.durable_finalize,
        "last_collection": dict(sorted((row.last_collection or {}).items())),
        "last_heartbeat_sent": _when(row.last_heartbeat_sent),
        "process": "ok" if fresh else "stale",
        "process_updated_at": _when(row.updated_at),
        "queue_depth": dict(sorted(queue_depths.items())),
        "queue_dropped": dict(sorted((row.queue_dropped or {}).items())),
    }


def matrix_alert_queue_depth(*, process: str) -> int:
    """Matrix alerts the listener has not sent yet (queued or waiting for the homeserver).

    The sender publishes it as `collator_queue_depth{queue="matrix_alerts"}`, and the listener
    saves its samples every few seconds (metrics/telemetry.py); 0 when Matrix is off.
    """
    from metrics.matrix_models import TelemetrySnapshot

    snapshot = TelemetrySnapshot.objects.filter(process=process).first()
    for sample in snapshot.samples if snapshot is not None else []:
        if sample.get("name") == QUEUE_DEPTH_SAMPLE and (sample.get("labels") or {}).get("queue") == MATRIX_QUEUE:
            return int(sample.get("value") or 0)
    return 0


def config_state() -> dict[str, Any]:
    from members.selectors import config_snapshot_latest_applied, config_snapshot_latest_failed

    applied = config_snapshot_latest_applied()
    failed = config_snapshot_latest_failed()
    last_good_check = (applied.last_checked_at or applied.applied_at) if applied else None
    state: dict[str, Any] = {
        "last_good_load": _when(applied.applied_at) if applied else None,
        "last_good_check": _when(last_good_check),
        "snapshot_id": applied.pk if applied else None,
        "last_error": None,
        "last_error_at": None,
    }
    failed_at = (failed.last_attempt_at or failed.fetched_at) if failed else None
    # A failure is news only until a later reload loads the config and finds it good; an
    # unchanged reload writes no snapshot, so `last_checked_at` is what says so.
    if failed is not None and (last_good_check is None or failed_at is None or failed_at >= last_good_check):
        errors = failed.errors or []
        first = errors[0] if errors else {}
        state["last_error"] = first.get("message", str(first)) if isinstance(first, dict) else str(first)
        state["last_error_at"] = _when(failed_at)
    return state


def last_usage_date() -> str | None:
    from metrics.models import RequestStat

    latest = RequestStat.objects.aggregate(latest=Max("date"))["latest"]
    return latest.isoformat() if latest else None


def last_statement_run() -> dict[str, Any] | None:
    """The last billing run that finished, whatever its outcome (billing_run, one row a month).

    Not the newest Statement: an unchanged re-run writes no statement and a failed run
    writes nothing, yet both are what an operator wants to see.
    """
    from billing.models import BillingRun

    run = BillingRun.objects.filter(last_finished_at__isnull=False).order_by("-last_finished_at", "-id").first()
    if run is None:
        return None
    return {
        "error": run.last_error or None,
        "finished_at": _when(run.last_finished_at),
        "month": f"{run.month:%Y-%m}",
        "outcome": run.last_outcome,
    }


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


class StatementRunSerializer(serializers.Serializer):
    error = serializers.CharField(allow_null=True, help_text="Why the run failed; null when it did not")
    finished_at = serializers.DateTimeField()
    month = serializers.CharField(help_text="YYYY-MM, the month billed")
    outcome = serializers.CharField(help_text="changed, unchanged, draft or failed")


class HealthSerializer(serializers.Serializer):
    config = serializers.JSONField(
        help_text="last_good_load, last_good_check, snapshot_id, last_error, last_error_at "
        "(an error only while no later reload found the config good)"
    )
    database = serializers.JSONField(help_text="ok, error")
    last_statement_run = StatementRunSerializer(allow_null=True, help_text="The last billing run that finished")
    last_usage_date = serializers.DateField(allow_null=True)
    nats_listener = serializers.JSONField(
        help_text="state (ok, stale, unknown), node_id, last_heard; once the listener ran also connected, "
        "last_heartbeat_sent, last_collection (per node), queue_depth (matrix_alerts included), queue_dropped, "
        "durable_finalize, "
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
