"""Keep the daily usage rollups (metrics/rollup_models.py) equal to the raw `requests` rows.

A day's rollups are recomputed whole from that day's raw rows: delete, then INSERT … SELECT
… GROUP BY, in one transaction. Recomputing (rather than adding deltas) is what keeps them
exact when a later collection round *replaces* a node's day total (DECISIONS 6), and makes a
refresh idempotent: running it twice, or after a crash, gives the same rows. Readers in
other transactions see either the old or the new rollup of a day, never a half-built one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import date

from django.db import connection, transaction

from metrics.api_cache import usage_rollups_version_bump

logger = logging.getLogger("metrics.rollups")

RAW_TABLE = "requests"
DAILY_TABLE = "requests_daily"

# (table, key columns). The per-dimension tables are built from `requests_daily`, which is
# already summed over nodes and address families and several times smaller than the raw day.
DIMENSION_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("requests_daily_country", ("country_code", "country_name")),
    ("requests_daily_asn", ("network_asn", "network_name")),
    ("requests_daily_domain", ("domain_name",)),
    ("requests_daily_member", ("member_name",)),
)
DAILY_COLUMNS: tuple[str, ...] = (
    "domain_name",
    "member_name",
    "network_asn",
    "network_name",
    "country_code",
    "country_name",
)


def _columns(names: Iterable[str]) -> str:
    return ", ".join(connection.ops.quote_name(name) for name in names)


def _refresh_one(day: date) -> None:
    quote = connection.ops.quote_name
    # MariaDB sorts GROUP BY output unless told not to; the rows go into a table anyway.
    unsorted = " ORDER BY NULL" if connection.vendor == "mysql" else ""
    tables = [DAILY_TABLE, *(table for table, _ in DIMENSION_TABLES)]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DELETE FROM {quote(table)} WHERE {quote('date')} = %s", [day])
        keys = _columns(DAILY_COLUMNS)
        cursor.execute(
            f"INSERT INTO {quote(DAILY_TABLE)} ({quote('date')}, {keys}, {quote('hits')}) "
            f"SELECT {quote('date')}, {keys}, SUM({quote('hits')}) FROM {quote(RAW_TABLE)} "
            f"WHERE {quote('date')} = %s GROUP BY {quote('date')}, {keys}{unsorted}",
            [day],
        )
        for table, columns in DIMENSION_TABLES:
            keys = _columns(columns)
            cursor.execute(
                f"INSERT INTO {quote(table)} ({quote('date')}, {keys}, {quote('hits')}) "
                f"SELECT {quote('date')}, {keys}, SUM({quote('hits')}) FROM {quote(DAILY_TABLE)} "
                f"WHERE {quote('date')} = %s GROUP BY {quote('date')}, {keys}{unsorted}",
                [day],
            )


def usage_rollups_refresh(*, dates: Iterable[date]) -> None:
    """Recompute the rollups of each given day from its raw `requests` rows.

    Call it after every stored collection round with the days that round wrote (today and
    yesterday, DECISIONS 7). A day without raw rows ends with no rollup rows.
    """
    for day in sorted(set(dates)):
        started = time.monotonic()
        with transaction.atomic():
            _refresh_one(day)
        logger.info(
            "event=usage_rollups_refreshed date=%s duration_ms=%d", day.isoformat(), (time.monotonic() - started) * 1000
        )
        # Cached API bodies were built from the old rollups (metrics/api_cache.py).
        usage_rollups_version_bump()


def usage_dates_with_rows(*, start: date | None = None, end: date | None = None) -> list[date]:
    """The distinct days that have raw rows or rollup rows, within [start, end] when given.

    Rollup days are included so that a rebuild also empties the rollup of a day whose raw
    rows were deleted.
    """
    quote = connection.ops.quote_name
    conditions: list[str] = []
    params: list[date] = []
    if start is not None:
        conditions.append(f"{quote('date')} >= %s")
        params.append(start)
    if end is not None:
        conditions.append(f"{quote('date')} <= %s")
        params.append(end)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    days: set[date] = set()
    with connection.cursor() as cursor:
        for table in (RAW_TABLE, DAILY_TABLE):
            cursor.execute(f"SELECT DISTINCT {quote('date')} FROM {quote(table)}{where}", params)
            for (value,) in cursor.fetchall():
                days.add(value if isinstance(value, date) else date.fromisoformat(str(value)))
    return sorted(days)


def usage_rollups_rebuild(*, start: date | None = None, end: date | None = None) -> int:
    """Recompute every day in [start, end] (all days when not given); returns the day count."""
    days = usage_dates_with_rows(start=start, end=end)
    usage_rollups_refresh(dates=days)
    return len(days)
