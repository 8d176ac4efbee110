"""Celery tasks of the registry. Scheduled by collator/schedule.py."""

from __future__ import annotations

from celery import shared_task

from members.services import config_sync


@shared_task
def config_sync_task() -> str:
    """The periodic config reload (every System.ConfigReloadTime seconds)."""
    return config_sync().status
