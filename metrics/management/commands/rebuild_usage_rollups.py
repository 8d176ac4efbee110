"""Rebuild the daily usage rollups of a date range from the raw `requests` rows."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from metrics.rollups import usage_dates_with_rows, usage_rollups_refresh


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}") from exc


class Command(BaseCommand):
    help = "Recompute the daily usage rollups of [--start, --end] (every day with rows when not given)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--start", type=_day, default=None, help="first day, YYYY-MM-DD")
        parser.add_argument("--end", type=_day, default=None, help="last day, YYYY-MM-DD")

    def handle(self, *args: Any, start: date | None, end: date | None, **options: Any) -> None:
        if start and end and start > end:
            raise CommandError("--start is after --end")
        verbosity = int(options.get("verbosity", 1))
        days = usage_dates_with_rows(start=start, end=end)
        started = time.monotonic()
        for index, day in enumerate(days, 1):
            usage_rollups_refresh(dates=[day])
            if verbosity >= 2:
                self.stdout.write(f"{index}/{len(days)} {day.isoformat()}")
        if verbosity >= 1:
            self.stdout.write(f"rebuilt days={len(days)} duration_s={time.monotonic() - started:.1f}")
