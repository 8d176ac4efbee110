"""The billing schedule (DECISIONS 17) and its thin tasks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine
from celery.signals import worker_ready
from django_celery_beat.models import PeriodicTask

from billing.models import BillingRun, Statement
from billing.tasks import cost_summary_daily_task, statements_catch_up_task, statements_previous_month_task
from collator.celery import app
from collator.schedule import beat_schedule, beat_schedule_sync
from tests.billing.conftest import SnapshotFactory
from tests.billing.worked_example import example_files, utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def config_in_force(snapshot_applied: SnapshotFactory, work_dir: Path) -> None:
    snapshot_applied(example_files(), applied_at=utc(2025, 1, 1))


@pytest.fixture
def eager() -> Iterator[None]:
    # The app reads its settings with the CELERY_ namespace, so that is the key to set.
    previous = app.conf.task_always_eager
    app.conf.CELERY_TASK_ALWAYS_EAGER = True
    try:
        yield
    finally:
        app.conf.CELERY_TASK_ALWAYS_EAGER = previous


def test_it_schedules_the_daily_costs_and_the_monthly_statements_at_00_05_utc() -> None:
    entries = {entry.name: entry for entry in beat_schedule()}
    assert entries["billing-cost-summary-daily"].crontab == "5 0 * * *"
    assert entries["billing-statements-monthly"].crontab == "5 0 1 * *"
    beat_schedule_sync()
    monthly = PeriodicTask.objects.get(name="billing-statements-monthly")
    assert monthly.task == "billing.tasks.statements_previous_month_task"
    cron = monthly.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, str(cron.timezone)) == (
        "5",
        "0",
        "1",
        "*",
        "UTC",
    )
    for name in ("billing-cost-summary-daily", "billing-statements-monthly"):
        assert entries[name].task in app.tasks, f"{entries[name].task} is not a registered task"


def test_it_issues_the_previous_month_on_the_first_and_is_idempotent(config_in_force: None) -> None:
    with time_machine.travel(utc(2025, 4, 1, 0, 5), tick=False):
        first = statements_previous_month_task()
        second = statements_previous_month_task()
    assert first["month"] == "2025-03" and first["statements"] == {"created": 2}
    assert second["statements"] == {"unchanged": 2}
    assert Statement.objects.filter(month="2025-03-01").count() == 2


def test_it_writes_the_daily_cost_summary(config_in_force: None, work_dir: Path) -> None:
    with time_machine.travel(utc(2025, 4, 2, 0, 5), tick=False):
        path = cost_summary_daily_task()
    assert path == str(work_dir / "tmp" / "service_cost_20250402.json")


def test_it_catches_up_the_previous_month_when_a_worker_starts(config_in_force: None, eager: None) -> None:
    """worker_ready queues the catch-up; eagerly here. May 3: April has no statements, so it is
    issued; a second start finds the persisted marker and does nothing."""
    with time_machine.travel(utc(2025, 5, 3, 9), tick=False):
        worker_ready.send(sender=None)
        assert Statement.objects.filter(month="2025-04-01").count() == 2
        assert BillingRun.objects.get(month="2025-04-01").generated_at == utc(2025, 5, 3, 9)
        assert statements_catch_up_task() == {"outcome": "nothing_to_do"}
    assert Statement.objects.count() == 2


@pytest.mark.parametrize("task", [statements_previous_month_task, cost_summary_daily_task, statements_catch_up_task])
def test_it_retries_a_task_the_database_or_the_disk_failed(task: object) -> None:
    """A database blip at 00:05 on the 1st used to cost the month's statements until the
    next worker start. Retried 15 times, 60 s doubling to 600 s: 60+120+240+480+11×600 s,
    about 2 h 5 min (the tasks are idempotent, so a retry never issues twice)."""
    from django.db import DatabaseError

    assert task.autoretry_for == (DatabaseError, OSError)  # type: ignore[attr-defined]
    assert (task.max_retries, task.retry_backoff, task.retry_backoff_max) == (15, 60, 600)  # type: ignore[attr-defined]
