"""The code-owned celery-beat schedule, written as django-celery-beat rows."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from collator.schedule import CODE_OWNED, ScheduleEntry, beat_schedule, beat_schedule_sync

pytestmark = pytest.mark.django_db

RELOAD = ScheduleEntry(name="config-reload", task="members.tasks.config_sync_task", every_seconds=3600)
DAILY = ScheduleEntry(name="daily-cost", task="billing.tasks.daily", crontab="5 0 * * *")
MONTHLY = ScheduleEntry(name="monthly-statements", task="billing.tasks.monthly", crontab="5 0 1 * *")


def _rows() -> list[tuple[object, ...]]:
    return list(
        PeriodicTask.objects.order_by("name").values_list(
            "id", "name", "task", "interval_id", "crontab_id", "enabled", "description", "date_changed"
        )
    )


def test_it_reloads_the_config_every_config_reload_time(settings: object) -> None:
    """The default System.ConfigReloadTime is 3600 s."""
    entries = {entry.name: entry for entry in beat_schedule()}

    assert entries["config-reload"].task == "members.tasks.config_sync_task"
    assert entries["config-reload"].every_seconds == settings.COLLATOR.system.config_reload_seconds == 3600


def test_it_creates_the_rows() -> None:
    result = beat_schedule_sync(entries=[RELOAD, DAILY, MONTHLY])

    assert result.created == ("config-reload", "daily-cost", "monthly-statements")
    reload_task = PeriodicTask.objects.get(name="config-reload")
    assert reload_task.task == "members.tasks.config_sync_task"
    assert reload_task.enabled is True
    assert reload_task.description == CODE_OWNED
    assert (reload_task.interval.every, reload_task.interval.period) == (3600, IntervalSchedule.SECONDS)
    assert reload_task.crontab is None
    monthly = PeriodicTask.objects.get(name="monthly-statements").crontab
    assert (monthly.minute, monthly.hour, monthly.day_of_month, monthly.month_of_year, monthly.day_of_week) == (
        "5",
        "0",
        "1",
        "*",
        "*",
    )
    assert str(monthly.timezone) == "UTC"
    daily = PeriodicTask.objects.get(name="daily-cost").crontab
    assert (daily.minute, daily.hour, daily.day_of_month) == ("5", "0", "*")


def test_it_is_idempotent() -> None:
    beat_schedule_sync(entries=[RELOAD, DAILY])
    before = _rows()
    schedules_before = (IntervalSchedule.objects.count(), CrontabSchedule.objects.count())

    result = beat_schedule_sync(entries=[RELOAD, DAILY])

    assert result.created == result.updated == result.deleted == ()
    assert _rows() == before
    assert (IntervalSchedule.objects.count(), CrontabSchedule.objects.count()) == schedules_before


def test_it_updates_a_changed_period_and_deletes_a_removed_entry() -> None:
    beat_schedule_sync(entries=[RELOAD, DAILY])
    reload_id = PeriodicTask.objects.get(name="config-reload").pk

    result = beat_schedule_sync(
        entries=[ScheduleEntry(name="config-reload", task="members.tasks.config_sync_task", every_seconds=600)]
    )

    assert result.updated == ("config-reload",)
    assert result.deleted == ("daily-cost",)
    assert list(PeriodicTask.objects.values_list("name", flat=True)) == ["config-reload"]
    reload_task = PeriodicTask.objects.get(name="config-reload")
    assert reload_task.pk == reload_id
    assert reload_task.interval.every == 600


def test_it_leaves_operator_rows_and_choices_alone() -> None:
    interval = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="operator-task", task="celery.backend_cleanup", interval=interval)
    beat_schedule_sync(entries=[RELOAD])
    PeriodicTask.objects.filter(name="config-reload").update(enabled=False)

    beat_schedule_sync(entries=[])
    beat_schedule_sync(entries=[RELOAD])

    assert PeriodicTask.objects.filter(name="operator-task").exists()
    # Deleted when it left the list, then created again, enabled.
    assert PeriodicTask.objects.get(name="config-reload").enabled is True
    PeriodicTask.objects.filter(name="config-reload").update(enabled=False)
    beat_schedule_sync(entries=[RELOAD])
    assert PeriodicTask.objects.get(name="config-reload").enabled is False


def test_sync_schedule_command_writes_the_code_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("sync_schedule")
    call_command("sync_schedule")

    out = capsys.readouterr().out
    names = [entry.name for entry in beat_schedule()]
    assert names[0] == "config-reload"
    assert out.splitlines() == [
        f"created: {', '.join(names)}",
        "updated: -",
        "deleted: -",
        "created: -",
        "updated: -",
        "deleted: -",
    ]
    assert PeriodicTask.objects.filter(description=CODE_OWNED).count() == len(names)


def test_it_syncs_when_beat_starts() -> None:
    from celery.signals import beat_init

    beat_init.send(sender=None)

    assert PeriodicTask.objects.get(name="config-reload").task == "members.tasks.config_sync_task"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of every_seconds and crontab"),
        ({"every_seconds": 60, "crontab": "* * * * *"}, "exactly one of every_seconds and crontab"),
        ({"every_seconds": 0}, "every_seconds must be positive"),
        ({"crontab": "5 0 *"}, "crontab needs five fields"),
    ],
)
def test_it_rejects_a_malformed_entry(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScheduleEntry(name="x", task="t", **kwargs)
