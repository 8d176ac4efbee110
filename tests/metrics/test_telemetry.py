"""Prometheus telemetry: the listener's counters → its DB snapshot → `GET /metrics`.

The registry is process-wide and other tests bump it too, so every test reads the values
before and after and asserts the exact difference.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from metrics.matrix_models import TelemetrySnapshot
from metrics.nats_counters import ListenerCounters
from metrics.telemetry import (
    telemetry_alert_failed,
    telemetry_alert_sent,
    telemetry_collection_observed,
    telemetry_counter_observer,
    telemetry_flush_loop,
    telemetry_message_received,
    telemetry_message_rejected,
    telemetry_queue_depth_set,
    telemetry_rows_written,
    telemetry_snapshot_save,
)

PROCESS = "listener-test"


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted({"process": PROCESS, **labels}.items()))


@pytest.mark.django_db
def test_it_exposes_the_counters_at_metrics_and_they_move() -> None:
    """3 finalize messages, 2 rejects, 500 + 250 request rows, 1 alert sent, 1 failed, one
    12.5 s collection round (≤ 20 s bucket), queue depth 7."""
    client = Client()
    telemetry_snapshot_save(process=PROCESS)
    before = scrape(client)

    for _ in range(3):
        telemetry_message_received(subject="consensus.finalize")
    telemetry_message_rejected(reason="bad_json")
    telemetry_message_rejected(reason="bad_json")
    telemetry_rows_written(table="requests", count=500)
    telemetry_rows_written(table="requests", count=250)
    telemetry_rows_written(table="requests", count=0)
    telemetry_alert_sent(kind="offline")
    telemetry_alert_failed(kind="online", reason="MatrixUnavailableError")
    telemetry_collection_observed(seconds=12.5)
    telemetry_queue_depth_set(queue="matrix_alerts", depth=7)
    telemetry_snapshot_save(process=PROCESS)
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return after[key(name, **labels)] - before.get(key(name, **labels), 0.0)

    assert moved("collator_nats_messages_total", subject="consensus.finalize") == 3
    assert moved("collator_nats_rejects_total", reason="bad_json") == 2
    assert moved("collator_rows_written_total", table="requests") == 750
    assert moved("collator_matrix_alerts_sent_total", kind="offline") == 1
    assert moved("collator_matrix_alerts_failed_total", kind="online", reason="MatrixUnavailableError") == 1
    assert moved("collator_usage_collection_duration_seconds_count") == 1
    assert moved("collator_usage_collection_duration_seconds_sum") == 12.5
    assert moved("collator_usage_collection_duration_seconds_bucket", le="20.0") == 1
    assert moved("collator_usage_collection_duration_seconds_bucket", le="10.0") == 0
    assert after[key("collator_queue_depth", queue="matrix_alerts")] == 7
    stamp = after[key("collator_telemetry_snapshot_timestamp_seconds")]
    assert abs(stamp - datetime.now(UTC).timestamp()) < 60


@pytest.mark.django_db
def test_it_mirrors_the_listener_counters_through_the_observer() -> None:
    counters = ListenerCounters()
    counters.add_observer(telemetry_counter_observer)
    client = Client()
    telemetry_snapshot_save(process=PROCESS)
    before = scrape(client)

    counters.message("consensus.finalize")
    counters.message("_INBOX.COLLATOR-TEST.usageReply.1741080000000000000")
    counters.message("_INBOX.COLLATOR-TEST.usageReply.1741083600000000000")
    counters.reject("oversized", subject="dns.usage.usageData", detail="2097152 bytes")
    counters.finalize_outcome("opened")
    counters.finalize_outcome("duplicate")
    counters.finalize_outcome("duplicate")
    counters.rows_written("member_events", 1)
    telemetry_snapshot_save(process=PROCESS)
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return after[key(name, **labels)] - before.get(key(name, **labels), 0.0)

    assert moved("collator_nats_messages_total", subject="consensus.finalize") == 1
    assert moved("collator_nats_messages_total", subject="usage_reply") == 2  # one series for every inbox
    assert moved("collator_nats_rejects_total", reason="oversized") == 1
    assert moved("collator_finalize_outcomes_total", action="opened") == 1
    assert moved("collator_finalize_outcomes_total", action="duplicate") == 2
    assert moved("collator_rows_written_total", table="member_events") == 1
    assert counters.snapshot()["messages"] == {"consensus.finalize": 1, "usage_reply": 2}


@pytest.mark.django_db
def test_it_folds_raw_inbox_subjects_into_one_label() -> None:
    client = Client()
    telemetry_snapshot_save(process=PROCESS)
    before = scrape(client)

    telemetry_message_received(subject="_INBOX.abc.1")
    telemetry_message_received(subject="_INBOX.def.2")
    telemetry_snapshot_save(process=PROCESS)
    after = scrape(client)

    assert (
        after[key("collator_nats_messages_total", subject="_INBOX")]
        - before.get(key("collator_nats_messages_total", subject="_INBOX"), 0.0)
        == 2
    )
    assert not any(labels and "_INBOX.abc.1" in dict(labels).values() for _, labels in after)


@pytest.mark.django_db
def test_it_renders_each_process_snapshot_under_its_own_label() -> None:
    """Two listeners (say, before and after a move to another host) never sum into one series."""
    at = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    sample = {
        "family": "collator_nats_messages",
        "type": "counter",
        "help": "NATS messages received, by subject.",
        "name": "collator_nats_messages_total",
        "labels": {"subject": "consensus.finalize"},
    }
    TelemetrySnapshot.objects.create(process="collator-a", samples=[{**sample, "value": 41.0}], updated_at=at)
    TelemetrySnapshot.objects.create(process="collator-b", samples=[{**sample, "value": 2.0}], updated_at=at)

    values = scrape(Client())

    def value(process: str) -> float:
        return values[("collator_nats_messages_total", (("process", process), ("subject", "consensus.finalize")))]

    assert (value("collator-a"), value("collator-b")) == (41.0, 2.0)
    assert values[("collator_telemetry_snapshot_timestamp_seconds", (("process", "collator-a"),))] == at.timestamp()


@pytest.mark.django_db(transaction=True)
def test_it_saves_the_snapshot_periodically_and_once_more_when_stopped() -> None:
    async def scenario() -> tuple[float, float]:
        task = asyncio.create_task(telemetry_flush_loop(process="flush-test", interval=0.05))
        await asyncio.sleep(0.2)
        first = await asyncio.to_thread(_stored_finalize_count)
        telemetry_message_received(subject="consensus.finalize")
        task.cancel()  # the final save runs in the cancellation path
        with pytest.raises(asyncio.CancelledError):
            await task
        return first, await asyncio.to_thread(_stored_finalize_count)

    first, last = asyncio.run(scenario())

    assert last - first == 1


def _stored_finalize_count() -> float:
    from django.db import connections

    try:
        snapshot = TelemetrySnapshot.objects.get(process="flush-test")
        for sample in snapshot.samples:
            if sample["name"] == "collator_nats_messages_total" and sample["labels"] == {
                "subject": "consensus.finalize"
            }:
                return float(sample["value"])
        return 0.0
    finally:
        connections.close_all()
