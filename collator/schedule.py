"""The celery-beat schedule, owned by code (DECISIONS 17).

django-celery-beat reads its schedule from the database. The entries below are the source
of truth for the periodic tasks the collator needs: `beat_schedule_sync()` writes them as
PeriodicTask rows, at beat start-up (the `beat_init` signal) and with
`manage.py sync_schedule`. Rows it wrote and that are no longer listed are deleted; rows an
operator added in the admin are left alone. All times are UTC.

To add a periodic task, add one `ScheduleEntry` line to `beat_schedule()`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from celery.signals import beat_init
from django.conf import settings

logger = logging.getLogger("collator.schedule")

# Marks the PeriodicTask rows this module owns, so that it never touches an operator's rows.
CODE_OWNED = "code-owned: collator/schedule.py (edits here are overwritten at beat start-up)"


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    task: str
    every_seconds: int | None = None
    # Five crontab fields, "minute hour day_of_month month_of_year day_of_week", in UTC.
    crontab: str | None = None

    def __post_init__(self) -> None:
        if (self.every_seconds is None) == (self.crontab is None):
            raise ValueError(f"schedule entry {self.name!r}: give exactly one of every_seconds and crontab")
        if self.every_seconds is not None and self.every_seconds <= 0:
            raise ValueError(f"schedule entry {self.name!r}: every_seconds must be positive")
        if self.crontab is not None and len(self.crontab.split()) != 5:
            raise ValueError(f"schedule entry {self.name!r}: crontab needs five fields, got {self.crontab!r}")


def beat_schedule() -> list[ScheduleEntry]:
    """Every code-owned periodic task. A function, so that settings are read when it runs."""
    return [
        ScheduleEntry(
            name="config-reload",
            task="members.tasks.config_sync_task",
            every_seconds=settings.COLLATOR.system.config_reload_seconds,
        ),
        # DECISIONS 17: the daily service cost document at 00:05 UTC, and the previous month's
        # statements on the 1st at 00:05 UTC, every month (never the Go "every other month", B17).
        ScheduleEntry(
            name="billing-cost-summary-daily", task="billing.tasks.cost_summary_daily_task", crontab="5 0 * * *"
        ),
        ScheduleEntry(
            name="billing-statements-monthly", task="billing.tasks.statements_previous_month_task", crontab="5 0 1 * *"
        ),
    ]


@dataclass(frozen=True)
class ScheduleSyncResult:
    created: tuple[str, ...]
    updated: tuple[str, ...]
    deleted: tuple[str, ...]


def _schedule_for(entry: ScheduleEntry) -> dict[str, Any]:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule

    if entry.every_seconds is not None:
        interval, _ = IntervalSchedule.objects.get_or_create(every=entry.every_seconds, period=IntervalSchedule.SECONDS)
        return {"interval": interval, "crontab": None}
    minute, hour, day_of_month, month_of_year, day_of_week = entry.crontab.split()  # type: ignore[union-attr]
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone="UTC",
    )
    return {"interval": None, "crontab": crontab}


def beat_schedule_sync(*, entries: list[ScheduleEntry] | None = None) -> ScheduleSyncResult:
    """Make the PeriodicTask rows match the code-owned entries. Idempotent: no change, no write.

    An operator may disable a code-owned task in the admin; that choice is kept.
    """
    from django.db import transaction
    from django_celery_beat.models import PeriodicTask

    entries = beat_schedule() if entries is None else entries
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"schedule entries must have unique names: {names}")
    created: list[str] = []
    updated: list[str] = []
    with transaction.atomic():
        existing = {task.name: task for task in PeriodicTask.objects.filter(name__in=names)}
        for entry in entries:
            values = {"task": entry.task, "description": CODE_OWNED, **_schedule_for(entry)}
            task = existing.get(entry.name)
            if task is None:
                PeriodicTask.objects.create(name=entry.name, enabled=True, **values)
                created.append(entry.name)
                continue
            changed = [field for field, value in values.items() if getattr(task, field) != value]
            if changed:
                for field in changed:
                    setattr(task, field, values[field])
                # save() (not update()) so that django-celery-beat notices the change.
                task.save()
                updated.append(entry.name)
        deleted: list[str] = []
        for task in PeriodicTask.objects.filter(description=CODE_OWNED).exclude(name__in=names):
            task.delete()
            deleted.append(task.name)
    result = ScheduleSyncResult(created=tuple(created), updated=tuple(updated), deleted=tuple(deleted))
    logger.info(
        "event=beat_schedule_synced entries=%d created=%s updated=%s deleted=%s",
        len(entries),
        ",".join(result.created) or "-",
        ",".join(result.updated) or "-",
        ",".join(result.deleted) or "-",
    )
    return result


@beat_init.connect
def _sync_at_beat_start(sender: Any = None, **kwargs: Any) -> None:
    beat_schedule_sync()
