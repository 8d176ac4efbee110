"""Refresh the usage rollups after usage is stored, in the background of the listener.

Each stored usage reply (a node's answer in an hourly round, or an unsolicited
`dns.usage.usageData` batch) names the days it touched. They are collected here and one
task recomputes them with `metrics.rollups.usage_rollups_refresh` on the usage DB thread,
after the rows committed and without making NATS handling wait. A short pause lets the
replies of one round (four nodes, two days) share one refresh per day instead of four.

A refresh that fails (the database is down, a lock timeout) is logged, counted
(`collator_rollup_refresh_failures_total`) and its days are kept and tried again with
back-off, so the rollups never stay behind the raw rows for good. The refresh recomputes a
day whole, so running it again is always safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import date
from typing import Any

from prometheus_client import Counter

from metrics.rollups import usage_rollups_refresh
from metrics.telemetry import REGISTRY, telemetry_queue_depth_set

logger = logging.getLogger("metrics.rollup_refresher")

REFRESH_FAILURES = Counter(
    "collator_rollup_refresh_failures",
    "Usage rollup refreshes that failed (their days are retried).",
    registry=REGISTRY,
)
REFRESHED_DAYS = Counter(
    "collator_rollup_days_refreshed", "Days whose usage rollups were recomputed.", registry=REGISTRY
)


class RollupRefresher:
    """`add(dates)` from the event loop; `start()` / `stop()` around the listener's life."""

    def __init__(self, *, db: Any, pause: float = 1.0, base_delay: float = 1.0, max_delay: float = 60.0) -> None:
        self.db = db  # a metrics.collection.DbThread
        self.pause = pause
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.refreshed = 0
        self.failures = 0
        self._pending: set[date] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rollup-refresher")

    def add(self, dates: Iterable[date]) -> None:
        new = set(dates)
        if not new:
            return
        self._pending |= new
        self._idle.clear()
        self._wake.set()
        telemetry_queue_depth_set(queue="rollup_refresh", depth=len(self._pending))

    async def wait_idle(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.pause)
            days, self._pending = self._pending, set()
            if not days:
                self._idle.set()
                continue
            try:
                await self.db.run(usage_rollups_refresh, dates=days)
            except Exception as exc:
                failures += 1
                self.failures += 1
                REFRESH_FAILURES.inc()
                delay = min(self.base_delay * 2 ** min(failures - 1, 20), self.max_delay)
                logger.error(
                    "event=rollup_refresh_failed days=%s attempt=%d retry_in_s=%.1f error=%r",
                    ",".join(sorted(d.isoformat() for d in days)),
                    failures,
                    delay,
                    str(exc)[:200],
                )
                self._pending |= days
                telemetry_queue_depth_set(queue="rollup_refresh", depth=len(self._pending))
                await asyncio.sleep(delay)
                self._wake.set()
                continue
            failures = 0
            self.refreshed += len(days)
            REFRESHED_DAYS.inc(len(days))
            telemetry_queue_depth_set(queue="rollup_refresh", depth=len(self._pending))
            if not self._pending:
                self._idle.set()
            else:
                self._wake.set()

    async def stop(self, *, timeout: float = 30.0) -> None:
        """Refresh what is pending (up to `timeout` seconds), then stop."""
        if self._task is None:
            return
        if self._pending:
            await self.wait_idle(timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None
        if self._pending:
            logger.error(
                "event=rollup_refresh_abandoned days=%s reason=shutdown hint=run_rebuild_usage_rollups",
                ",".join(sorted(d.isoformat() for d in self._pending)),
            )
