"""Prometheus metrics of the NATS listener, and how the web process serves them.

Why a DB snapshot and not prometheus_client's multiprocess mode: the listener
(`run_nats_listener`) and the web server are separate processes, and in the Docker and
systemd layouts they may not share a filesystem or even a host; they always share the
database. Multiprocess mode needs `PROMETHEUS_MULTIPROC_DIR` set before the library is
imported in every process, a directory wiped by whoever starts first (and never while
another process writes to it), and `mark_process_dead` for gauges; a listener killed with
SIGKILL leaves stale gauge files behind. Instead the listener keeps ordinary in-process
metrics and writes their current samples to one `telemetry_snapshot` row (keyed by its
process name) every few seconds and at shutdown; `/metrics` renders every row, adding a
`process` label and `collator_telemetry_snapshot_timestamp_seconds`, so that a stale or
stopped listener is visible (`time() - that > 30`). Counters restart from 0 when the
listener restarts, which Prometheus' `rate()` and `increase()` handle as a reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.db import close_old_connections
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from metrics.matrix_models import TelemetrySnapshot

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES = Counter("collator_nats_messages", "NATS messages received, by subject.", ["subject"], registry=REGISTRY)
REJECTS = Counter(
    "collator_nats_rejects",
    "Messages or replies rejected (logged, not applied), by reason.",
    ["reason"],
    registry=REGISTRY,
)
ROWS_WRITTEN = Counter("collator_rows_written", "Database rows written, by table.", ["table"], registry=REGISTRY)
ALERTS_SENT = Counter(
    "collator_matrix_alerts_sent", "Matrix messages sent or edited, by kind.", ["kind"], registry=REGISTRY
)
ALERTS_FAILED = Counter(
    "collator_matrix_alerts_failed",
    "Matrix alerts given up on, by kind and reason.",
    ["kind", "reason"],
    registry=REGISTRY,
)
COLLECTION_DURATION = Histogram(
    "collator_usage_collection_duration_seconds",
    "Wall time of one usage collection round (request to last reply stored).",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("collator_queue_depth", "Items waiting in an in-process queue.", ["queue"], registry=REGISTRY)
FINALIZE_OUTCOMES = Counter(
    "collator_finalize_outcomes",
    "consensus.finalize decisions by what they did to member_events (opened, closed, duplicate, ...).",
    ["action"],
    registry=REGISTRY,
)

SNAPSHOT_TIMESTAMP = "collator_telemetry_snapshot_timestamp_seconds"
MAX_LABEL_LENGTH = 96


def _label(value: str) -> str:
    """Labels come from the wire; keep their number and size bounded."""
    text = str(value) if value is not None else ""
    return text[:MAX_LABEL_LENGTH] or "-"


def _subject_label(subject: str) -> str:
    # Each usage round replies on a fresh inbox; one series per inbox would grow for ever.
    if subject.startswith("_INBOX."):
        return "_INBOX"
    return _label(subject)


# --- What the listener calls (cheap, thread-safe, never touch the DB) ---------------------


def telemetry_message_received(*, subject: str) -> None:
    MESSAGES.labels(subject=_subject_label(subject)).inc()


def telemetry_message_rejected(*, reason: str) -> None:
    REJECTS.labels(reason=_label(reason)).inc()


def telemetry_rows_written(*, table: str, count: int) -> None:
    if count > 0:
        ROWS_WRITTEN.labels(table=_label(table)).inc(count)


def telemetry_alert_sent(*, kind: str) -> None:
    ALERTS_SENT.labels(kind=_label(kind)).inc()


def telemetry_alert_failed(*, kind: str, reason: str) -> None:
    ALERTS_FAILED.labels(kind=_label(kind), reason=_label(reason)).inc()


def telemetry_collection_observed(*, seconds: float) -> None:
    COLLECTION_DURATION.observe(max(0.0, seconds))


def telemetry_queue_depth_set(*, queue: str, depth: int) -> None:
    QUEUE_DEPTH.labels(queue=_label(queue)).set(depth)


def telemetry_finalize_outcome(*, action: str) -> None:
    FINALIZE_OUTCOMES.labels(action=_label(action)).inc()


def telemetry_counter_observer(kind: str, label: str, amount: int) -> None:
    """Feeds metrics.nats_counters.ListenerCounters into Prometheus: `counters.add_observer(this)`.

    The listener counts in one place; this observer mirrors each bump here, so its counters
    and /metrics can never disagree.
    """
    if kind == "message":
        MESSAGES.labels(subject=_subject_label(label)).inc(amount)
    elif kind == "reject":
        REJECTS.labels(reason=_label(label)).inc(amount)
    elif kind == "rows":
        telemetry_rows_written(table=label, count=amount)
    elif kind == "finalize":
        FINALIZE_OUTCOMES.labels(action=_label(label)).inc(amount)


# --- Snapshot: listener → DB → web ---------------------------------------------------------


def telemetry_samples(registry: CollectorRegistry = REGISTRY) -> list[dict[str, Any]]:
    """The registry's current samples as JSON-ready dicts (`_created` timestamps left out)."""
    samples: list[dict[str, Any]] = []
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples.append(
                {
                    "family": family.name,
                    "type": family.type,
                    "help": family.documentation,
                    "name": sample.name,
                    "labels": dict(sample.labels),
                    "value": sample.value,
                }
            )
    return samples


def telemetry_snapshot_save(*, process: str, registry: CollectorRegistry = REGISTRY) -> TelemetrySnapshot:
    """Write this process's current samples to its snapshot row (one UPDATE or INSERT)."""
    snapshot, _ = TelemetrySnapshot.objects.update_or_create(
        process=process, defaults={"samples": telemetry_samples(registry), "updated_at": datetime.now(UTC)}
    )
    return snapshot


async def telemetry_flush_loop(*, process: str, interval: float = 5.0) -> None:
    """Save the snapshot every `interval` seconds until cancelled, then once more.

    A DB outage is logged and the next round tries again; the counters stay in memory.
    """
    try:
        while True:
            await _save_in_thread(process)
            await asyncio.sleep(interval)
    finally:
        # Cancellation lands here: the last values of a stopping listener are kept.
        await asyncio.shield(_save_in_thread(process))


async def _save_in_thread(process: str) -> None:
    def save() -> None:
        close_old_connections()
        try:
            telemetry_snapshot_save(process=process)
        except Exception as exc:  # a DB outage must not stop the listener
            logger.warning("event=telemetry_snapshot_failed process=%s error=%r", process, str(exc))

    await asyncio.to_thread(save)


class SnapshotCollector(Collector):
    """Renders the stored snapshots as metric families, with a `process` label added."""

    def __init__(self, snapshots: Iterable[TelemetrySnapshot]) -> None:
        self._snapshots = list(snapshots)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        stamp = Metric(SNAPSHOT_TIMESTAMP, "When each process last saved its metrics (Unix time).", "gauge")
        for snapshot in sorted(self._snapshots, key=lambda s: s.process):
            stamp.add_sample(SNAPSHOT_TIMESTAMP, {"process": snapshot.process}, snapshot.updated_at.timestamp())
            for sample in snapshot.samples or []:
                family = families.get(sample["family"])
                if family is None:
                    family = Metric(sample["family"], sample.get("help", ""), sample.get("type", "untyped"))
                    families[sample["family"]] = family
                labels = {"process": snapshot.process, **sample.get("labels", {})}
                family.add_sample(sample["name"], labels, float(sample["value"]))
        yield stamp
        yield from families.values()


def telemetry_render() -> bytes:
    """The Prometheus text exposition of every process's latest snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(TelemetrySnapshot.objects.all()))
    return generate_latest(registry)
