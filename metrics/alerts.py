"""Outage alerts to Matrix: when to say what, sent from a background task (nats-protocol §11).

The seam for the NATS listener (call these from the event loop, or any thread, only
*after* the DB transaction that opened or closed the row has committed):

    await alerts_start()                  # at start-up; None when Matrix is not configured
    listener.finalize_hooks.append(alerts_finalize_hook)   # takes FinalizeOutcome ids
    alert_outage_opened(event=row)        # or by row: a finalize inserted a new open row
    alert_outage_closed(event=row)        # or by row: a finalize closed that row
    await alerts_stop()                   # at shutdown: drains the queue for a few seconds

The two `alert_*` calls only put a small immutable job on a bounded in-memory queue and
return at once: they never touch the network or the DB, so Matrix can never delay a DB
write (§11.7). A full queue drops the alert, logs it and counts it
(`collator_matrix_alerts_failed{reason="queue_full"}`).

Rules (§11.2, §11.3 and the fixes of §13 N12):
- OFFLINE only for a row that really opened; ONLINE only for a row that really closed. A
  close that closed nothing has no row, so there is nothing to call; a row passed to
  `alert_outage_closed` that is still open is refused.
- De-duplicated by row: a row is announced OFFLINE at most once, even when the listener
  reports it several times, and also after a restart, because the Matrix event id is
  stored on the row (`member_events.matrix_event_id`) and checked before sending.
- ONLINE edits the OFFLINE message in place (`m.replace` to the stored event id), which
  works after a restart too. With no stored id, or when the homeserver refuses the edit,
  a new ONLINE message is sent.
- Burst fold: within a window of MATRIX_ALERT_BURST_WINDOW_SECONDS (60) that starts with
  the first message sent, at most MATRIX_ALERT_BURST_LIMIT (N) alerts go out one by one
  (an ONLINE edit counts as one). Every further alert of that window is folded, and when
  the window ends a single summary lists them, mentioning the members of the folded
  OFFLINE alerts. So N + k alerts in a minute give N messages and 1 summary, and the room
  never gets more than N + 1 messages per window. A folded OFFLINE row stores
  `fold:<summary event id>`, so its later ONLINE is a new message and a restart does not
  announce it again.

A homeserver outage loses nothing (§11.7 asks for a queue; REF drops the alert):
- an alert the client could not send after its few quick retries (5xx, refused or timed-out
  connections, a login that keeps failing) is kept, and so is every alert queued after it,
  in order; the oldest is tried again after MATRIX_ALERT_RETRY_INITIAL_SECONDS, doubling up
  to MATRIX_ALERT_RETRY_MAX_SECONDS, and once it goes out the rest follow. So an outage
  that opened and closed while the homeserver was away is one OFFLINE message edited to
  ONLINE, never a lone ONLINE. A job that cannot read its row (the DB is down) waits too.
- each message keeps one transaction id across all its tries, so a send whose answer was
  lost is de-duplicated by the homeserver and never posted twice;
- every MATRIX_ALERT_SWEEP_SECONDS the sender looks for open rows with no
  `matrix_event_id` that opened within MATRIX_ALERT_SWEEP_MAX_AGE_SECONDS and announces
  them: alerts dropped from a full queue, or left when the previous process stopped. It
  does the same for the ONLINE of rows that were announced OFFLINE and closed within that
  age but have no `matrix_online_event_id` (the ONLINE id, or `fold:<summary id>`), so an
  ONLINE still waiting at shutdown is sent by the next start. A closed row that was never
  announced OFFLINE stays quiet: never a lone ONLINE from the sweep;
- all of it runs on the sender's own task and thread: a DB write never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from collator.local_config import MatrixConfig
from metrics.alert_messages import (
    OutageFacts,
    burst_summary_content,
    mentions_for_member,
    offline_content,
    online_content,
)
from metrics.matrix import (
    MatrixClient,
    MatrixError,
    MatrixRequestError,
    MatrixUnavailableError,
    RetryPolicy,
    new_txn_id,
)
from metrics.models import MemberEvent
from metrics.telemetry import telemetry_alert_failed, telemetry_alert_sent, telemetry_queue_depth_set

logger = logging.getLogger(__name__)

T = TypeVar("T")

OFFLINE = "offline"
ONLINE = "online"
SUMMARY = "summary"
FOLD_PREFIX = "fold:"
QUEUE_NAME = "matrix_alerts"
DEFAULT_BURST_LIMIT = 10
DEFAULT_BURST_WINDOW_SECONDS = 60.0
DEFAULT_QUEUE_SIZE = 1000
# While the homeserver is down, the waiting alerts are tried again after 15 s, 30 s, 60 s …
# up to every 5 min (each try is itself the client's few quick retries).
DEFAULT_RETRY_INITIAL_SECONDS = 15.0
DEFAULT_RETRY_MAX_SECONDS = 300.0
# Every minute, open rows of the last day that have no Matrix event id are announced.
DEFAULT_SWEEP_SECONDS = 60.0
DEFAULT_SWEEP_MAX_AGE_SECONDS = 86400.0
SEEN_LIMIT = 100_000  # rows remembered for de-duplication; older ones fall back on the DB check

MentionsSource = Callable[[], Mapping[str, Sequence[str]]]


@dataclass(frozen=True)
class AlertJob:
    kind: str  # OFFLINE or ONLINE
    event_id: int  # the member_events row
    facts: OutageFacts | None = None  # None: the sender reads the row itself (finalize hook)
    matrix_event_id: str | None = None  # as the caller's row held it; the DB is checked again


def alert_mentions_from_config() -> Mapping[str, Sequence[str]]:
    """`matrix.members` of the latest applied config snapshot (§11.5), parsed once per snapshot."""
    from members.selectors import config_snapshot_latest_applied, network_config_from_snapshot

    snapshot = config_snapshot_latest_applied()
    if snapshot is None:
        return {}
    cached = _MENTIONS_CACHE.get("snapshot")
    if cached is not None and cached[0] == snapshot.pk:
        return cached[1]
    mentions = network_config_from_snapshot(snapshot=snapshot).alert_mentions
    _MENTIONS_CACHE["snapshot"] = (snapshot.pk, mentions)
    return mentions


_MENTIONS_CACHE: dict[str, tuple[int, Mapping[str, Sequence[str]]]] = {}


@dataclass(frozen=True)
class _Summary:
    """A burst summary waiting to be sent: the folded jobs and its own transaction id."""

    jobs: tuple[AlertJob, ...]
    txn_id: str


_Work = AlertJob | _Summary


class _RetryLater(Exception):
    """The homeserver (or the DB the job must read) cannot be reached now: keep the item."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class AlertSender:
    """One asyncio task that sends queued alerts in order, one at a time."""

    def __init__(
        self,
        *,
        client: MatrixClient,
        executor: ThreadPoolExecutor,
        burst_limit: int = DEFAULT_BURST_LIMIT,
        burst_window: float = DEFAULT_BURST_WINDOW_SECONDS,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        mentions_source: MentionsSource = alert_mentions_from_config,
        retry_initial: float = DEFAULT_RETRY_INITIAL_SECONDS,
        retry_max: float = DEFAULT_RETRY_MAX_SECONDS,
        sweep_interval: float = DEFAULT_SWEEP_SECONDS,
        sweep_max_age: float = DEFAULT_SWEEP_MAX_AGE_SECONDS,
    ) -> None:
        if burst_limit < 1:
            raise ValueError("MATRIX_ALERT_BURST_LIMIT must be at least 1")
        if retry_initial <= 0 or retry_max < retry_initial:
            raise ValueError(
                "MATRIX_ALERT_RETRY_INITIAL_SECONDS must be > 0 and at most MATRIX_ALERT_RETRY_MAX_SECONDS"
            )
        if sweep_interval <= 0:
            raise ValueError("MATRIX_ALERT_SWEEP_SECONDS must be > 0")
        self.client = client
        self.burst_limit = burst_limit
        self.burst_window = burst_window
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.sweep_interval = sweep_interval
        self.sweep_max_age = sweep_max_age
        self._executor = executor
        self._mentions_source = mentions_source
        self._queue_size = queue_size
        self._queue: asyncio.Queue[AlertJob] = asyncio.Queue(maxsize=queue_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int], None] = {}  # (kind, row id) queued, waiting or sent
        self._matrix_ids: dict[int, str] = {}  # row id → OFFLINE event id (or fold marker)
        # (kind, row id) → Matrix id: sent, but the DB was down when we stored the id
        self._unstored: dict[tuple[str, int], str] = {}
        self._given_up: set[tuple[str, int]] = set()  # refused for good: the sweep skips them
        self._edit_refused: set[int] = set()  # rows whose ONLINE edit was refused (§11.3)
        self._txn_ids: dict[tuple[str, int], str] = {}  # one txn id per message, across requeues
        self._window_start: float | None = None
        self._window_sent = 0
        self._folded: list[AlertJob] = []
        # Work the homeserver could not take, oldest first; retried with a growing delay.
        self._waiting: deque[_Work] = deque()
        self._in_flight: _Work | None = None
        self._retry_failures = 0
        self._retry_at: float | None = None
        self._next_sweep = 0.0

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # The first sweep waits one interval: the listener's own reports come first.
        self._next_sweep = time.monotonic() + self.sweep_interval
        self._task = self._loop.create_task(self._run(), name="matrix-alert-sender")

    async def stop(self, *, drain_timeout: float = 10.0) -> None:
        """Send what is queued or waiting (up to `drain_timeout` seconds), flush a fold, stop.

        What is still waiting then is logged. Its rows have no Matrix id for that alert
        (`matrix_event_id` for OFFLINE, `matrix_online_event_id` for ONLINE), so the sweep
        of the next start announces them.
        """
        if self._task is None:
            return
        deadline = time.monotonic() + drain_timeout
        try:
            await asyncio.wait_for(self._queue.join(), timeout=drain_timeout)
        except TimeoutError:
            logger.warning("event=matrix_alerts_stop_timeout left=%s", self._queue.qsize())
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._in_flight is not None:  # cancelled half-way: it goes back first, same txn id
            self._waiting.appendleft(self._in_flight)
            self._in_flight = None
        if self._folded:
            self._waiting.append(self._new_summary())
        try:
            # One more try of each waiting item, in order, while the homeserver answers.
            while self._waiting and time.monotonic() < deadline:
                item = self._waiting.popleft()
                remaining = max(0.0, deadline - time.monotonic())
                if not await asyncio.wait_for(self._attempt(item), timeout=remaining):
                    break
        except TimeoutError:
            pass
        if self._in_flight is not None:
            self._waiting.appendleft(self._in_flight)
            self._in_flight = None
        if self._waiting:
            logger.warning(
                "event=matrix_alerts_stop_pending left=%s note=they_are_announced_by_the_next_sweep",
                self._depth_waiting(),
            )
        if self._unstored:
            await self._store_unstored()
        await self._blocking(connections.close_all)
        self._executor.shutdown(wait=True)

    # --- enqueue (any thread, never blocks) -------------------------------------------------

    def enqueue(self, job: AlertJob) -> bool:
        """Queue a job; False when it is a duplicate or cannot be queued."""
        key = (job.kind, job.event_id)
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            if len(self._seen) > SEEN_LIMIT:
                for old in list(self._seen)[: SEEN_LIMIT // 2]:
                    del self._seen[old]
        loop = self._loop
        if loop is None or loop.is_closed():
            self._forget(key)
            return False
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return self._put(job)
        loop.call_soon_threadsafe(self._put, job)
        return True

    def _put(self, job: AlertJob) -> bool:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._forget((job.kind, job.event_id))
            telemetry_alert_failed(kind=job.kind, reason="queue_full")
            logger.error("event=matrix_alert_dropped reason=queue_full kind=%s member_event=%s", job.kind, job.event_id)
            return False
        self._publish_depth()
        return True

    def _forget(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._seen.pop(key, None)

    @property
    def depth(self) -> int:
        """Alerts not sent yet: queued, waiting for the homeserver, or folded."""
        return self._queue.qsize() + self._depth_waiting() + len(self._folded)

    def _depth_waiting(self) -> int:
        return sum(len(item.jobs) if isinstance(item, _Summary) else 1 for item in self._waiting)

    def _publish_depth(self) -> None:
        telemetry_queue_depth_set(queue=QUEUE_NAME, depth=self.depth)

    # --- the task -----------------------------------------------------------------------------

    async def _run(self) -> None:
        getter: asyncio.Task[AlertJob] | None = None
        try:
            while True:
                now = time.monotonic()
                if self._waiting and self._retry_at is not None and now >= self._retry_at:
                    await self._retry_waiting()
                    continue
                if now >= self._next_sweep:
                    await self._sweep()
                    continue
                fold_due = self._fold_due_in()
                if fold_due is not None and fold_due <= 0:
                    await self._flush_fold()
                    continue
                if getter is None:
                    getter = asyncio.ensure_future(self._queue.get())
                timeouts = [self._next_sweep - now]
                if fold_due is not None:
                    timeouts.append(fold_due)
                if self._waiting and self._retry_at is not None:
                    timeouts.append(self._retry_at - now)
                done, _ = await asyncio.wait({getter}, timeout=max(0.0, min(timeouts)))
                if not done:
                    continue
                job = getter.result()
                getter = None
                try:
                    if self._waiting:
                        # The homeserver is down: wait behind the others, so that one row's
                        # OFFLINE still goes out before its ONLINE.
                        self._wait(job)
                    else:
                        await self._attempt(job)
                finally:
                    self._queue.task_done()
                    self._publish_depth()
        finally:
            if getter is not None:
                getter.cancel()

    async def _attempt(self, item: _Work) -> bool:
        """Send one item. False when it could not be sent now; it then waits, at the front."""
        self._in_flight = item
        try:
            if isinstance(item, _Summary):
                await self._send_summary(item)
            else:
                await self._handle(item)
        except _RetryLater as exc:
            self._in_flight = None
            self._waiting.appendleft(item)
            self._retry_later(item, exc.cause)
            return False
        except Exception:  # one bad alert must not stop the sender
            kind, row = (SUMMARY, "-") if isinstance(item, _Summary) else (item.kind, item.event_id)
            logger.exception("event=matrix_alert_error kind=%s member_event=%s", kind, row)
        self._in_flight = None
        return True

    async def _retry_waiting(self) -> None:
        item = self._waiting.popleft()
        if await self._attempt(item):
            if self._retry_failures:
                logger.info(
                    "event=matrix_alerts_resumed failed_rounds=%s waiting=%s", self._retry_failures, len(self._waiting)
                )
            self._retry_failures = 0
            self._retry_at = time.monotonic()  # the rest follows at once, in order
        self._publish_depth()

    def _retry_later(self, item: _Work, cause: Exception) -> None:
        """Keep the item; try again after a delay that doubles with each failed round."""
        self._retry_failures += 1
        delay = min(self.retry_max, self.retry_initial * 2 ** min(self._retry_failures - 1, 30))
        self._retry_at = time.monotonic() + delay
        kind = SUMMARY if isinstance(item, _Summary) else item.kind
        telemetry_alert_failed(kind=kind, reason=type(cause).__name__)
        logger.warning(
            "event=matrix_alert_deferred kind=%s member_event=%s waiting=%s round=%s retry_in_s=%.1f error=%r",
            kind,
            "-" if isinstance(item, _Summary) else item.event_id,
            self._depth_waiting(),
            self._retry_failures,
            delay,
            str(cause),
        )
        self._publish_depth()

    def _wait(self, job: AlertJob) -> None:
        if len(self._waiting) >= self._queue_size:
            # Bounded like the queue. An open row dropped here has no Matrix id, so the
            # sweep announces it once the homeserver is back.
            self._forget((job.kind, job.event_id))
            telemetry_alert_failed(kind=job.kind, reason="queue_full")
            logger.error(
                "event=matrix_alert_dropped reason=waiting_full kind=%s member_event=%s", job.kind, job.event_id
            )
            return
        self._waiting.append(job)

    async def _handle(self, job: AlertJob) -> None:
        if self._window_start is not None and time.monotonic() - self._window_start >= self.burst_window:
            await self._flush_fold()
        if job.facts is None:
            loaded = await self._load(job)
            if loaded is None:
                return
            job = loaded
        if job.kind == OFFLINE:
            await self._handle_offline(job)
        else:
            await self._handle_online(job)

    async def _load(self, job: AlertJob) -> AlertJob | None:
        """Fill a job queued by id from its committed row; None when there is nothing to say."""

        def read() -> MemberEvent | None:
            close_old_connections()
            return MemberEvent.objects.filter(pk=job.event_id).first()

        try:
            row = await self._blocking(read)
        except DatabaseError as exc:
            raise _RetryLater(exc) from exc  # the DB is down: read it again later
        if row is None:
            logger.warning(
                "event=matrix_alert_skipped reason=no_such_row kind=%s member_event=%s", job.kind, job.event_id
            )
            return None
        if job.kind == ONLINE and row.end_time is None:
            # No ONLINE for a row that is not closed (§11.2).
            logger.warning("event=matrix_alert_skipped reason=not_closed member_event=%s", job.event_id)
            return None
        return AlertJob(job.kind, job.event_id, OutageFacts.from_event(row), row.matrix_event_id)

    async def _handle_offline(self, job: AlertJob) -> None:
        assert job.facts is not None
        row_id = job.event_id
        stored = self._matrix_ids.get(row_id) or job.matrix_event_id or await self._stored_matrix_id(row_id)
        if stored:
            logger.info("event=matrix_alert_skipped reason=already_announced member_event=%s", row_id)
            return
        if not self._take_slot():
            self._folded.append(job)
            return
        mentions = await self._mentions([job.facts.member_name])
        key = (OFFLINE, row_id)
        try:
            matrix_id = await self.client.send_message(
                offline_content(job.facts, mentions=mentions), txn_id=self._txn(key)
            )
        except MatrixUnavailableError as exc:
            self._release_slot()
            raise _RetryLater(exc) from exc
        except MatrixError as exc:
            self._txn_ids.pop(key, None)
            self._failed(job, exc)
            # §11.3: a refused OFFLINE releases its slot, so a later report can retry.
            self._forget(key)
            self._given_up.add(key)
            return
        self._txn_ids.pop(key, None)
        self._matrix_ids[row_id] = matrix_id
        await self._store_matrix_id([row_id], matrix_id)
        telemetry_alert_sent(kind=OFFLINE)
        logger.info("event=matrix_alert_sent kind=offline member_event=%s matrix_event=%s", row_id, matrix_id)

    async def _handle_online(self, job: AlertJob) -> None:
        assert job.facts is not None
        row_id = job.event_id
        stored_offline, stored_online = await self._stored_ids(row_id)
        if stored_online:  # a restart's sweep and a late hook can both ask for it
            logger.info("event=matrix_alert_skipped reason=already_announced kind=online member_event=%s", row_id)
            return
        matrix_id = self._matrix_ids.get(row_id) or job.matrix_event_id or stored_offline
        if not self._take_slot():
            self._folded.append(job)
            return
        content = online_content(job.facts)
        edit_key, new_key = (f"{ONLINE}_edit", row_id), (ONLINE, row_id)
        # An edit the homeserver refused is not tried again when the new message is retried.
        if matrix_id and not matrix_id.startswith(FOLD_PREFIX) and row_id not in self._edit_refused:
            try:
                edit_id = await self.client.edit_message(matrix_id, content, txn_id=self._txn(edit_key))
            except MatrixUnavailableError as exc:
                self._release_slot()
                raise _RetryLater(exc) from exc
            except MatrixRequestError as exc:
                # §11.3: when the edit is refused, say it in a new message instead.
                self._txn_ids.pop(edit_key, None)
                self._edit_refused.add(row_id)
                logger.warning("event=matrix_edit_refused member_event=%s error=%r", row_id, str(exc))
            else:
                self._txn_ids.pop(edit_key, None)
                self._matrix_ids.pop(row_id, None)
                await self._store_matrix_id([row_id], edit_id, kind=ONLINE)
                telemetry_alert_sent(kind=ONLINE)
                logger.info(
                    "event=matrix_alert_sent kind=online_edit member_event=%s matrix_event=%s edit=%s",
                    row_id,
                    matrix_id,
                    edit_id,
                )
                return
        try:
            new_id = await self.client.send_message(content, txn_id=self._txn(new_key))
        except MatrixUnavailableError as exc:
            self._release_slot()
            raise _RetryLater(exc) from exc
        except MatrixError as exc:
            self._txn_ids.pop(new_key, None)
            self._edit_refused.discard(row_id)
            self._failed(job, exc)
            self._given_up.add(new_key)
            return
        self._txn_ids.pop(new_key, None)
        self._edit_refused.discard(row_id)
        self._matrix_ids.pop(row_id, None)
        await self._store_matrix_id([row_id], new_id, kind=ONLINE)
        telemetry_alert_sent(kind=ONLINE)
        logger.info("event=matrix_alert_sent kind=online_new member_event=%s matrix_event=%s", row_id, new_id)

    def _txn(self, key: tuple[str, int]) -> str:
        txn_id = self._txn_ids.get(key)
        if txn_id is None:
            txn_id = self._txn_ids[key] = new_txn_id()
        return txn_id

    # --- burst fold ---------------------------------------------------------------------------

    def _take_slot(self) -> bool:
        now = time.monotonic()
        if self._window_start is None:
            self._window_start = now
            self._window_sent = 0
        if self._window_sent < self.burst_limit:
            self._window_sent += 1
            return True
        return False

    def _release_slot(self) -> None:
        # Nothing reached the room: the slot is free for the retry.
        self._window_sent = max(0, self._window_sent - 1)

    def _fold_due_in(self) -> float | None:
        if not self._folded or self._window_start is None:
            return None
        return max(0.0, self._window_start + self.burst_window - time.monotonic())

    def _new_summary(self) -> _Summary:
        folded, self._folded = self._folded, []
        return _Summary(jobs=tuple(folded), txn_id=new_txn_id())

    async def _flush_fold(self) -> None:
        """End the window; send one summary for what was folded in it."""
        summary = self._new_summary() if self._folded else None
        self._window_start = None
        self._window_sent = 0
        if summary is None:
            return
        if self._waiting:
            # The homeserver is down; the folded alerts are older than what waits.
            self._waiting.appendleft(summary)
            return
        await self._attempt(summary)

    async def _send_summary(self, summary: _Summary) -> None:
        folded = summary.jobs
        members = [job.facts.member_name for job in folded if job.kind == OFFLINE and job.facts]
        mentions = await self._mentions(members)
        content = burst_summary_content(
            [(job.kind, job.facts) for job in folded if job.facts], window_seconds=self.burst_window, mentions=mentions
        )
        try:
            summary_id = await self.client.send_message(content, txn_id=summary.txn_id)
        except MatrixUnavailableError as exc:
            raise _RetryLater(exc) from exc
        except MatrixError as exc:
            telemetry_alert_failed(kind=SUMMARY, reason=type(exc).__name__)
            logger.error("event=matrix_alert_failed kind=summary folded=%s error=%r", len(folded), str(exc))
            for job in folded:
                if job.kind == OFFLINE:
                    self._forget((OFFLINE, job.event_id))
                self._given_up.add((job.kind, job.event_id))
            return
        marker = f"{FOLD_PREFIX}{summary_id}"[:255]
        offline_rows = [job.event_id for job in folded if job.kind == OFFLINE]
        online_rows = [job.event_id for job in folded if job.kind == ONLINE]
        for row_id in offline_rows:
            self._matrix_ids[row_id] = marker
        for row_id in online_rows:
            self._matrix_ids.pop(row_id, None)
        await self._store_matrix_id(offline_rows, marker)
        await self._store_matrix_id(online_rows, marker, kind=ONLINE)
        telemetry_alert_sent(kind=SUMMARY)
        logger.info("event=matrix_alert_sent kind=summary folded=%s matrix_event=%s", len(folded), summary_id)

    # --- the sweep ------------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Queue an OFFLINE for every recent open row that has no Matrix event id, and an
        ONLINE for every recently closed row announced OFFLINE but not ONLINE.

        Such a row was never announced: its alert was dropped (a full queue), the sender
        stopped while the homeserver was down, or the process died before it sent. Rows
        queued, waiting or sent by this process are skipped (`_seen`), so the sweep never
        sends twice; a row announced by an earlier process has its id stored and is not
        selected. Rows that opened (or closed) more than `sweep_max_age` ago are old news and
        stay quiet.
        """
        self._next_sweep = time.monotonic() + self.sweep_interval
        if self._unstored:
            await self._store_unstored()
        limit = self._queue_size
        max_age = timedelta(seconds=self.sweep_max_age)

        def read() -> list[tuple[str, int]]:
            close_old_connections()
            since = timezone.now() - max_age
            opened = MemberEvent.objects.filter(
                status=0, end_time__isnull=True, matrix_event_id__isnull=True, start_time__gte=since
            )
            closed = MemberEvent.objects.filter(
                end_time__gte=since, matrix_event_id__isnull=False, matrix_online_event_id__isnull=True
            )
            # Oldest first, and every OFFLINE before the ONLINEs, as they happened.
            offline = opened.order_by("start_time", "id").values_list("pk", flat=True)[:limit]
            online = closed.order_by("end_time", "id").values_list("pk", flat=True)[:limit]
            return [(OFFLINE, pk) for pk in offline] + [(ONLINE, pk) for pk in online]

        try:
            found = await self._blocking(read)
        except DatabaseError as exc:
            logger.warning("event=matrix_alert_sweep_failed error=%r", str(exc))
            return
        queued = 0
        for kind, row_id in found:
            if (kind == OFFLINE and row_id in self._matrix_ids) or (kind, row_id) in self._given_up:
                continue
            if self.enqueue(AlertJob(kind, int(row_id))):
                queued += 1
        if queued:
            logger.info("event=matrix_alert_sweep unannounced=%s queued=%s", len(found), queued)

    # --- helpers --------------------------------------------------------------------------------

    def _failed(self, job: AlertJob, exc: Exception) -> None:
        telemetry_alert_failed(kind=job.kind, reason=type(exc).__name__)
        logger.error("event=matrix_alert_failed kind=%s member_event=%s error=%r", job.kind, job.event_id, str(exc))

    async def _mentions(self, member_names: Sequence[str]) -> tuple[str, ...]:
        if not member_names:
            return ()

        def lookup() -> tuple[str, ...]:
            close_old_connections()
            table = self._mentions_source()
            found: dict[str, None] = {}
            for name in member_names:
                for user in mentions_for_member(name, table):
                    found[user] = None
            return tuple(found)

        try:
            return await self._blocking(lookup)
        except Exception as exc:  # no mentions is better than no alert
            logger.warning("event=matrix_mentions_unavailable error=%r", str(exc))
            return ()

    async def _stored_matrix_id(self, row_id: int) -> str | None:
        return (await self._stored_ids(row_id))[0]

    async def _stored_ids(self, row_id: int) -> tuple[str | None, str | None]:
        """The row's stored OFFLINE and ONLINE Matrix ids; (None, None) when it cannot be read."""

        def read() -> tuple[str | None, str | None] | None:
            close_old_connections()
            rows = MemberEvent.objects.filter(pk=row_id).values_list("matrix_event_id", "matrix_online_event_id")
            return rows.first()

        try:
            return await self._blocking(read) or (None, None)
        except DatabaseError as exc:
            # The DB being down must not stop alerts; the in-memory map still de-duplicates.
            logger.warning("event=matrix_event_id_read_failed member_event=%s error=%r", row_id, str(exc))
            return None, None

    async def _store_matrix_id(self, row_ids: Sequence[int], matrix_id: str, *, kind: str = OFFLINE) -> bool:
        """Store on the rows the id of their OFFLINE (`matrix_event_id`) or ONLINE message."""
        if not row_ids:
            return True
        field = "matrix_online_event_id" if kind == ONLINE else "matrix_event_id"

        def write() -> int:
            close_old_connections()
            # Only rows without one: the first announcement is the message ONLINE edits.
            return MemberEvent.objects.filter(pk__in=list(row_ids), **{f"{field}__isnull": True}).update(
                **{field: matrix_id}
            )

        # Kept as unstored until the write is done: a write that fails, or is cancelled by a
        # stop half-way, is done again (by the sweep once the DB is back, or by stop()), so
        # that a sent message always gets its id on the row and is never announced twice.
        for row_id in row_ids:
            self._unstored[(kind, row_id)] = matrix_id
        try:
            await self._blocking(write)
        except DatabaseError as exc:
            logger.error(
                "event=matrix_event_id_store_failed kind=%s member_events=%s matrix_event=%s error=%r",
                kind,
                ",".join(map(str, row_ids)),
                matrix_id,
                str(exc),
            )
            return False
        for row_id in row_ids:
            self._unstored.pop((kind, row_id), None)
        return True

    async def _store_unstored(self) -> None:
        by_id: dict[tuple[str, str], list[int]] = {}
        for (kind, row_id), matrix_id in list(self._unstored.items()):
            by_id.setdefault((kind, matrix_id), []).append(row_id)
        for (kind, matrix_id), row_ids in by_id.items():
            if not await self._store_matrix_id(row_ids, matrix_id, kind=kind):
                return

    async def _blocking(self, func: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)


# --- the module-level seam ----------------------------------------------------------------------

_sender: AlertSender | None = None


async def alerts_start(
    *,
    config: MatrixConfig | None = None,
    policy: RetryPolicy | None = None,
    burst_limit: int | None = None,
    burst_window: float | None = None,
    queue_size: int | None = None,
    mentions_source: MentionsSource | None = None,
    retry_initial: float | None = None,
    retry_max: float | None = None,
    sweep_interval: float | None = None,
    sweep_max_age: float | None = None,
) -> AlertSender | None:
    """Start the sender on the running loop. Returns None (and logs) when Matrix is off.

    Raises MatrixConfigError when Matrix is half-configured or holds `__SET_ME__`
    (DECISIONS 22): the listener should refuse to start rather than run without alerts.
    Nothing here talks to the homeserver: the login happens on the first alert.
    """
    global _sender
    if _sender is not None:
        await alerts_stop()
    config = config if config is not None else settings.COLLATOR.matrix
    # One thread for all blocking work of the sender (HTTP and its few DB reads), so it
    # never competes with the listener's DB writers for their threads.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matrix-alerts")
    try:
        client = MatrixClient.from_config(config, policy=policy, executor=executor)
    except Exception:
        executor.shutdown(wait=False)
        raise
    if client is None:
        executor.shutdown(wait=False)
        logger.info("event=matrix_disabled reason=not_configured")
        return None
    sender = AlertSender(
        client=client,
        executor=executor,
        burst_limit=burst_limit
        if burst_limit is not None
        else _setting("MATRIX_ALERT_BURST_LIMIT", DEFAULT_BURST_LIMIT),
        burst_window=burst_window
        if burst_window is not None
        else float(_setting("MATRIX_ALERT_BURST_WINDOW_SECONDS", DEFAULT_BURST_WINDOW_SECONDS)),
        queue_size=queue_size if queue_size is not None else _setting("MATRIX_ALERT_QUEUE_SIZE", DEFAULT_QUEUE_SIZE),
        mentions_source=mentions_source or alert_mentions_from_config,
        retry_initial=_float_option(retry_initial, "MATRIX_ALERT_RETRY_INITIAL_SECONDS", DEFAULT_RETRY_INITIAL_SECONDS),
        retry_max=_float_option(retry_max, "MATRIX_ALERT_RETRY_MAX_SECONDS", DEFAULT_RETRY_MAX_SECONDS),
        sweep_interval=_float_option(sweep_interval, "MATRIX_ALERT_SWEEP_SECONDS", DEFAULT_SWEEP_SECONDS),
        sweep_max_age=_float_option(sweep_max_age, "MATRIX_ALERT_SWEEP_MAX_AGE_SECONDS", DEFAULT_SWEEP_MAX_AGE_SECONDS),
    )
    sender.start()
    _sender = sender
    logger.info(
        "event=matrix_enabled room=%s burst_limit=%s burst_window_s=%s",
        config.room_id,
        sender.burst_limit,
        sender.burst_window,
    )
    return sender


async def alerts_stop(*, drain_timeout: float = 10.0) -> None:
    global _sender
    sender, _sender = _sender, None
    if sender is not None:
        await sender.stop(drain_timeout=drain_timeout)


def alerts_enabled() -> bool:
    return _sender is not None


def alert_outage_opened(*, event: MemberEvent) -> bool:
    """Announce a newly opened outage row. Returns True when an alert was queued."""
    if _sender is None:
        return False
    if event.pk is None or event.end_time is not None:
        logger.warning("event=matrix_alert_refused kind=offline member_event=%s reason=not_open", event.pk)
        return False
    return _sender.enqueue(AlertJob(OFFLINE, int(event.pk), OutageFacts.from_event(event), event.matrix_event_id))


def alert_outage_closed(*, event: MemberEvent) -> bool:
    """Announce that an outage row was closed. Returns True when an alert was queued."""
    if _sender is None:
        return False
    if event.pk is None or event.end_time is None:
        # No ONLINE for a close that closed nothing (§11.2, §13 N12).
        logger.warning("event=matrix_alert_refused kind=online member_event=%s reason=not_closed", event.pk)
        return False
    return _sender.enqueue(AlertJob(ONLINE, int(event.pk), OutageFacts.from_event(event), event.matrix_event_id))


def alerts_finalize_hook(message: object, outcome: Any) -> None:
    """A `NatsListener.finalize_hooks` entry: queue the alert a committed finalize calls for.

    `outcome` is a metrics.services.FinalizeOutcome. Only `opened` (a new open row) gives
    an OFFLINE and only `closed` (open rows closed) gives an ONLINE per closed row; every
    other action (duplicate, merged, stale, remembered, recorded_closed) says nothing.
    A `recorded_closed` outage (its offline arrived after its online) was over before we
    knew of it, so it is not announced. The hook only queues ids: it is synchronous and
    never waits, and the sender reads the committed rows on its own thread.
    """
    if _sender is None:
        return
    if getattr(outcome, "opened", False) and getattr(outcome, "event_id", None):
        _sender.enqueue(AlertJob(OFFLINE, int(outcome.event_id)))
    elif getattr(outcome, "closed", False):
        for row_id in getattr(outcome, "closed_ids", ()) or ():
            _sender.enqueue(AlertJob(ONLINE, int(row_id)))


def alerts_queue_depth() -> int:
    """Alerts not sent yet (queued, waiting for the homeserver, folded); 0 when Matrix is off."""
    return _sender.depth if _sender is not None else 0


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _float_option(given: float | None, name: str, default: float) -> float:
    return float(given) if given is not None else float(_setting(name, default))
