"""Celery tasks of billing: thin, idempotent and locked (the services take the month's or the
day's lock; a task that finds it taken returns "locked": the holder is doing its work).

Scheduled by collator/schedule.py (UTC): the daily cost summary at 00:05, the previous
month's statements on the 1st at 00:05. At worker start-up the previous month is generated
if it has no statements yet (DECISIONS 17).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.db import DatabaseError

from billing.services import cost_summary_generate_daily, statement_catch_up, statement_generate_previous_month

# A database or file-system hiccup at 00:05 must not cost a month's statements until the next
# worker start: the tasks are idempotent (an unchanged re-run writes nothing), so they are
# retried with back-off (1 min doubling, capped at 10 min, for about two hours).
RETRIED = {
    "autoretry_for": (DatabaseError, OSError),
    "retry_backoff": 60,
    "retry_backoff_max": 600,
    "retry_jitter": False,
    "max_retries": 15,
}


@shared_task(**RETRIED)
def statements_previous_month_task() -> dict[str, Any]:
    result = statement_generate_previous_month()
    return result.summary() if result else {"outcome": "locked"}


@shared_task(**RETRIED)
def cost_summary_daily_task() -> str:
    result = cost_summary_generate_daily()
    return result.json_path if result else "locked"


@shared_task(**RETRIED)
def statements_catch_up_task() -> dict[str, Any]:
    result = statement_catch_up()
    return result.summary() if result else {"outcome": "nothing_to_do"}


@worker_ready.connect
def _catch_up_at_start(sender: Any = None, **kwargs: Any) -> None:
    # Queued, not run inline, so that a slow month never delays the worker's readiness.
    statements_catch_up_task.delay()
