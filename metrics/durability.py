"""Hold DB writes while the database is unreachable, and write them, in order, once it is back.

The listener hands each finalize decision and each stored usage reply to an
`OrderedRetryQueue`. While the queue is empty a write goes straight to the DB. When a write
fails because the database cannot be reached now (`db_unavailable`: connection refused, server
gone away, lost connection, too many connections, shutting down, lock wait, deadlock), the
item is held, and so is every later item, behind it: one task retries the oldest item with exponential back-off
until it is written, then the next. So the items are written in the order they arrived, which
the §8.6 finalize algorithm needs for one identity (an offline, its online, the next offline),
and which usage needs too (an older day total must never overwrite a newer one).

Retrying is safe because every write is idempotent: a finalize by its (proposal ID, status)
(`finalize_applied`), a usage row by its nine-column key with hits replaced. A write whose
commit reached the DB just before the connection dropped is therefore a harmless duplicate.

Nothing is dropped silently. A queue is bounded (`max_items`, a setting); when it is full the
refused item is logged (`event=db_retry_queue_full`) and counted
(`collator_db_retry_dropped_total{queue=...}`), with a stated policy:
- `drop_newest` (finalizes): the arriving item is refused and the held ones keep their order.
  On the durable JetStream path the refused message is not acknowledged, so the server
  delivers it again later: nothing is lost there.
- `drop_oldest` (usage): the oldest held reply is dropped. A node's day total is cumulative
  and replaced on write, so its next reply for the day carries everything the dropped one had.

A write that fails for any other reason (a bad message, a constraint, a value the server
refuses) is not retried: it is logged (`event=db_write_failed`), counted
(`collator_db_write_failed_total{queue=...}`) and handed to `on_failed`, and the queue moves on.
The test is by MySQL error number, not by exception class: mysqlclient raises
OperationalError for many errors that will never go away (1054 unknown column, 1292
incorrect datetime value, 1366 incorrect integer value, …), and one of those at the head of
the queue would otherwise hold every later write for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError
from prometheus_client import Counter

from metrics.telemetry import REGISTRY, telemetry_queue_depth_set

logger = logging.getLogger("metrics.durability")

T = TypeVar("T")

DROP_NEWEST = "drop_newest"
DROP_OLDEST = "drop_oldest"

WRITTEN = "written"
QUEUED = "queued"
DROPPED = "dropped"
FAILED = "failed"

RETRY_DROPPED = Counter(
    "collator_db_retry_dropped",
    "Items refused or dropped because a DB retry queue was full, by queue.",
    ["queue"],
    registry=REGISTRY,
)
WRITE_FAILED = Counter(
    "collator_db_write_failed",
    "Writes refused for good by the database (not retried, the queue moves on), by queue.",
    ["queue"],
    registry=REGISTRY,
)
RETRY_ATTEMPTS_FAILED = Counter(
    "collator_db_retry_attempts_failed",
    "Writes that failed because the database was unreachable (each attempt), by queue.",
    ["queue"],
    registry=REGISTRY,
)


# MySQL/MariaDB error numbers that say "not now" rather than "never" (client 2xxx, server
# 1xxx/4xxx): the same write succeeds once the server is reachable or the lock is free.
TRANSIENT_DB_ERRORS = frozenset(
    {
        2002,  # CR_CONNECTION_ERROR: cannot connect through the socket
        2003,  # CR_CONN_HOST_ERROR: cannot connect to the host
        2006,  # CR_SERVER_GONE_ERROR
        2013,  # CR_SERVER_LOST: lost connection during the query
        2055,  # CR_SERVER_LOST_EXTENDED
        1040,  # ER_CON_COUNT_ERROR: too many connections
        1053,  # ER_SERVER_SHUTDOWN
        1205,  # ER_LOCK_WAIT_TIMEOUT
        1213,  # ER_LOCK_DEADLOCK
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT: the server closed an idle connection
    }
)


def db_error_number(exc: BaseException) -> int | None:
    """The MySQL error number of a DB error (Django keeps the driver's args), else None."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def db_unavailable(exc: BaseException) -> bool:
    """True for errors that say "the database cannot be reached now", worth retrying.

    InterfaceError always is (the connection object is unusable). A DatabaseError is when
    its error number is in TRANSIENT_DB_ERRORS; every other one, OperationalError included,
    is a failure of this write that retrying will not fix.
    """
    if isinstance(exc, InterfaceError):
        return True
    number = db_error_number(exc)
    if number is None and isinstance(exc, OperationalError):
        # SQLite (the embedded default) has no error numbers: a lock held by another
        # process, or a file it cannot open now, says "not now".
        text = str(exc).lower()
        return "locked" in text or "busy" in text or "unable to open" in text
    return isinstance(exc, DatabaseError) and number in TRANSIENT_DB_ERRORS


@dataclass(frozen=True)
class Submitted:
    status: str  # WRITTEN, QUEUED, DROPPED or FAILED
    result: Any = None
    error: BaseException | None = None


class OrderedRetryQueue(Generic[T]):
    """FIFO of writes held while the DB is unreachable; see the module docstring.

    `write(item)` does the write (normally on a DB thread) and returns its result;
    `on_written(item, result)` runs after a held item was finally written, and
    `on_failed(item, exc)` after a held item failed for another reason than the DB being
    unreachable, or was still held at shutdown. A direct write (nothing held) hands its
    result or its error back to the caller in `Submitted` instead.
    """

    def __init__(
        self,
        *,
        name: str,
        write: Callable[[T], Awaitable[Any]],
        on_written: Callable[[T, Any], Awaitable[None] | None],
        on_failed: Callable[[T, BaseException], Awaitable[None] | None],
        max_items: int,
        overflow: str,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        on_dropped: Callable[[T], None] | None = None,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"{name}: the queue bound must be at least 1")
        if overflow not in (DROP_NEWEST, DROP_OLDEST):
            raise ValueError(f"{name}: overflow must be {DROP_NEWEST!r} or {DROP_OLDEST!r}")
        self.name = name
        self.max_items = max_items
        self.overflow = overflow
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.dropped = 0
        self.written_after_retry = 0
        self._write = write
        self._on_written = on_written
        self._on_failed = on_failed
        # Told of every item a full queue drops, the arriving one or a held one.
        self._on_dropped = on_dropped
        self._held: deque[T] = deque()
        self._head_in_flight = False
        self._lock = asyncio.Lock()
        self._drainer: asyncio.Task[None] | None = None
        self._empty = asyncio.Event()
        self._empty.set()

    @property
    def depth(self) -> int:
        return len(self._held)

    async def submit(self, item: T) -> Submitted:
        """Write now, or hold the item behind those already held."""
        async with self._lock:
            if self._held:
                return self._hold(item)
            try:
                result = await self._write(item)
            except Exception as exc:
                if db_unavailable(exc):
                    RETRY_ATTEMPTS_FAILED.labels(queue=self.name).inc()
                    logger.warning("event=db_unavailable queue=%s action=held error=%r", self.name, str(exc)[:200])
                    return self._hold(item)
                # Not an outage of the DB: the caller reports it (nothing is held).
                self._log_failed(exc, held=False)
                return Submitted(FAILED, error=exc)
            return Submitted(WRITTEN, result)

    def _hold(self, item: T) -> Submitted:
        if len(self._held) >= self.max_items:
            self.dropped += 1
            RETRY_DROPPED.labels(queue=self.name).inc()
            if self.overflow == DROP_NEWEST:
                logger.error(
                    "event=db_retry_queue_full queue=%s policy=drop_newest held=%d dropped_total=%d",
                    self.name,
                    len(self._held),
                    self.dropped,
                )
                self._dropped(item)
                return Submitted(DROPPED)
            # The head may be being written right now: drop the oldest one that is not.
            index = 1 if self._head_in_flight and len(self._held) > 1 else 0
            if index == 0 and self._head_in_flight:
                logger.error("event=db_retry_queue_full queue=%s policy=drop_oldest held=1 dropped=arriving", self.name)
                self._dropped(item)
                return Submitted(DROPPED)
            self._dropped(self._held[index])
            del self._held[index]
            logger.error(
                "event=db_retry_queue_full queue=%s policy=drop_oldest held=%d dropped_total=%d",
                self.name,
                len(self._held),
                self.dropped,
            )
        self._held.append(item)
        self._empty.clear()
        self._publish_depth()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain(), name=f"db-retry-{self.name}")
        return Submitted(QUEUED)

    def _dropped(self, item: T) -> None:
        if self._on_dropped is not None:
            try:
                self._on_dropped(item)
            except Exception:
                logger.exception("event=db_retry_on_dropped_failed queue=%s", self.name)

    async def _drain(self) -> None:
        failures = 0
        while self._held:
            item = self._held[0]
            self._head_in_flight = True
            try:
                result = await self._write(item)
            except Exception as exc:
                self._head_in_flight = False
                if db_unavailable(exc):
                    failures += 1
                    RETRY_ATTEMPTS_FAILED.labels(queue=self.name).inc()
                    delay = min(self.base_delay * 2 ** min(failures - 1, 20), self.max_delay)
                    logger.warning(
                        "event=db_retry_failed queue=%s held=%d attempt=%d retry_in_s=%.2f error=%r",
                        self.name,
                        len(self._held),
                        failures,
                        delay,
                        str(exc)[:200],
                    )
                    await asyncio.sleep(delay)
                    continue
                # Refused for good: drop it so the writes behind it go on.
                self._log_failed(exc, held=True)
                self._pop(item)
                await self._call(self._on_failed, item, exc)
                continue
            self._head_in_flight = False
            if failures:
                logger.info(
                    "event=db_retry_recovered queue=%s held=%d attempts=%d", self.name, len(self._held), failures
                )
                failures = 0
            self._pop(item)
            self.written_after_retry += 1
            await self._call(self._on_written, item, result)
        self._empty.set()

    def _log_failed(self, exc: BaseException, *, held: bool) -> None:
        """A write the database refused for good. Other errors (a rejected message) are the
        caller's to report, through `on_failed` or `Submitted(FAILED)`."""
        if not isinstance(exc, DatabaseError):
            return
        WRITE_FAILED.labels(queue=self.name).inc()
        logger.error(
            "event=db_write_failed queue=%s action=dropped held=%s errno=%s error_type=%s held_after=%d error=%r",
            self.name,
            held,
            db_error_number(exc) or "-",
            type(exc).__name__,
            max(0, len(self._held) - 1) if held else len(self._held),
            str(exc)[:200],
        )

    def _pop(self, item: T) -> None:
        if self._held and self._held[0] is item:
            self._held.popleft()
        self._publish_depth()

    def _publish_depth(self) -> None:
        telemetry_queue_depth_set(queue=f"db_retry_{self.name}", depth=len(self._held))

    async def _call(self, callback: Callable[..., Awaitable[None] | None], *args: Any) -> None:
        try:
            pending = callback(*args)
            if pending is not None:
                await pending
        except Exception:  # a callback never stops the queue
            logger.exception("event=db_retry_callback_failed queue=%s", self.name)

    async def wait_empty(self, timeout: float | None = None) -> bool:
        """True when nothing is held (within `timeout` seconds)."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout=timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, *, drain_timeout: float) -> int:
        """Give held items `drain_timeout` seconds, then stop; each item still held is handed
        to `on_failed` (logged and counted there). Returns how many were left."""
        if self._held:
            await self.wait_empty(drain_timeout)
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._drainer
            self._drainer = None
        left = list(self._held)
        self._held.clear()
        self._publish_depth()
        if left:
            logger.error("event=db_retry_queue_lost queue=%s items=%d reason=shutdown", self.name, len(left))
            RETRY_DROPPED.labels(queue=self.name).inc(len(left))
            self.dropped += len(left)
            for item in left:
                await self._call(self._on_failed, item, ShutdownWithHeldItems(self.name))
        self._empty.set()
        return len(left)


class ShutdownWithHeldItems(RuntimeError):
    """The listener stopped while the DB was still unreachable."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"listener stopped with writes still held in {queue}")
        self.reason = "shutdown_with_held_items"
