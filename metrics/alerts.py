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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from collator.local_config import MatrixConfig
from metrics.alert_messages import (
    OutageFacts,
    burst_summary_content,
    mentions_for_member,
    offline_content,
    online_content,
)
from metrics.matrix import MatrixClient, MatrixError, MatrixRequestError, RetryPolicy
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
    ) -> None:
        if burst_limit < 1:
            raise ValueError("MATRIX_ALERT_BURST_LIMIT must be at least 1")
        self.client = client
        self.burst_limit = burst_limit
        self.burst_window = burst_window
        self._executor = executor
        self._mentions_source = mentions_source
        self._queue: asyncio.Queue[AlertJob] = asyncio.Queue(maxsize=queue_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int], None] = {}  # (kind, row id) already queued
        self._matrix_ids: dict[int, str] = {}  # row id → OFFLINE event id (or fold marker)
        self._window_start: float | None = None
        self._window_sent = 0
        self._folded: list[AlertJob] = []

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="matrix-alert-sender")

    async def stop(self, *, drain_timeout: float = 10.0) -> None:
        """Send what is queued (up to `drain_timeout` seconds), flush a pending fold, stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout=drain_timeout)
        except TimeoutError:
            logger.warning("event=matrix_alerts_stop_timeout left=%s", self._queue.qsize())
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._folded:
            try:
                await asyncio.wait_for(self._flush_fold(), timeout=drain_timeout)
            except (TimeoutError, MatrixError) as exc:
                logger.warning("event=matrix_alerts_stop_fold_lost count=%s error=%r", len(self._folded), str(exc))
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
        telemetry_queue_depth_set(queue=QUEUE_NAME, depth=self._queue.qsize())
        return True

    def _forget(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._seen.pop(key, None)

    # --- the task -----------------------------------------------------------------------------

    async def _run(self) -> None:
        getter: asyncio.Task[AlertJob] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self._queue.get())
                deadline = self._fold_due_in()
                done, _ = await asyncio.wait({getter}, timeout=deadline)
                if not done:
                    await self._flush_fold()
                    continue
                job = getter.result()
                getter = None
                telemetry_queue_depth_set(queue=QUEUE_NAME, depth=self._queue.qsize())
                try:
                    await self._handle(job)
                except Exception:  # one bad alert must not stop the sender
                    logger.exception("event=matrix_alert_error kind=%s member_event=%s", job.kind, job.event_id)
                finally:
                    self._queue.task_done()
        finally:
            if getter is not None:
                getter.cancel()

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
            self._failed(job, exc)
            self._forget((job.kind, job.event_id))
            return None
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
        stored = job.matrix_event_id or await self._stored_matrix_id(row_id)
        if stored:
            logger.info("event=matrix_alert_skipped reason=already_announced member_event=%s", row_id)
            return
        if not self._take_slot():
            self._folded.append(job)
            return
        mentions = await self._mentions([job.facts.member_name])
        try:
            matrix_id = await self.client.send_message(offline_content(job.facts, mentions=mentions))
        except MatrixError as exc:
            self._failed(job, exc)
            # §11.3: a failed OFFLINE releases its slot, so a later report can retry.
            self._forget((OFFLINE, row_id))
            return
        self._matrix_ids[row_id] = matrix_id
        await self._store_matrix_id([row_id], matrix_id)
        telemetry_alert_sent(kind=OFFLINE)
        logger.info("event=matrix_alert_sent kind=offline member_event=%s matrix_event=%s", row_id, matrix_id)

    async def _handle_online(self, job: AlertJob) -> None:
        assert job.facts is not None
        row_id = job.event_id
        matrix_id = self._matrix_ids.get(row_id) or job.matrix_event_id or await self._stored_matrix_id(row_id)
        if not self._take_slot():
            self._folded.append(job)
            return
        content = online_content(job.facts)
        if matrix_id and not matrix_id.startswith(FOLD_PREFIX):
            try:
                edit_id = await self.client.edit_message(matrix_id, content)
            except MatrixRequestError as exc:
                # §11.3: when the edit is refused, say it in a new message instead.
                logger.warning("event=matrix_edit_refused member_event=%s error=%r", row_id, str(exc))
            except MatrixError as exc:
                self._failed(job, exc)
                return
            else:
                self._matrix_ids.pop(row_id, None)
                telemetry_alert_sent(kind=ONLINE)
                logger.info(
                    "event=matrix_alert_sent kind=online_edit member_event=%s matrix_event=%s edit=%s",
                    row_id,
                    matrix_id,
                    edit_id,
                )
                return
        try:
            new_id = await self.client.send_message(content)
        except MatrixError as exc:
            self._failed(job, exc)
            return
        self._matrix_ids.pop(row_id, None)
        telemetry_alert_sent(kind=ONLINE)
        logger.info("event=matrix_alert_sent kind=online_new member_event=%s matrix_event=%s", row_id, new_id)

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

    def _fold_due_in(self) -> float | None:
        if not self._folded or self._window_start is None:
            return None
        return max(0.0, self._window_start + self.burst_window - time.monotonic())

    async def _flush_fold(self) -> None:
        """End the window; send one summary for what was folded in it."""
        folded, self._folded = self._folded, []
        self._window_start = None
        self._window_sent = 0
        if not folded:
            return
        members = [job.facts.member_name for job in folded if job.kind == OFFLINE and job.facts]
        mentions = await self._mentions(members)
        content = burst_summary_content(
            [(job.kind, job.facts) for job in folded if job.facts], window_seconds=self.burst_window, mentions=mentions
        )
        try:
            summary_id = await self.client.send_message(content)
        except MatrixError as exc:
            telemetry_alert_failed(kind=SUMMARY, reason=type(exc).__name__)
            logger.error("event=matrix_alert_failed kind=summary folded=%s error=%r", len(folded), str(exc))
            for job in folded:
                if job.kind == OFFLINE:
                    self._forget((OFFLINE, job.event_id))
            return
        marker = f"{FOLD_PREFIX}{summary_id}"[:255]
        offline_rows = [job.event_id for job in folded if job.kind == OFFLINE]
        for row_id in offline_rows:
            self._matrix_ids[row_id] = marker
        await self._store_matrix_id(offline_rows, marker)
        telemetry_alert_sent(kind=SUMMARY)
        logger.info("event=matrix_alert_sent kind=summary folded=%s matrix_event=%s", len(folded), summary_id)

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
        def read() -> str | None:
            close_old_connections()
            return MemberEvent.objects.filter(pk=row_id).values_list("matrix_event_id", flat=True).first()

        try:
            return await self._blocking(read)
        except DatabaseError as exc:
            # The DB being down must not stop alerts; the in-memory map still de-duplicates.
            logger.warning("event=matrix_event_id_read_failed member_event=%s error=%r", row_id, str(exc))
            return None

    async def _store_matrix_id(self, row_ids: Sequence[int], matrix_id: str) -> None:
        if not row_ids:
            return

        def write() -> int:
            close_old_connections()
            # Only rows without one: the first announcement is the message ONLINE edits.
            return MemberEvent.objects.filter(pk__in=list(row_ids), matrix_event_id__isnull=True).update(
                matrix_event_id=matrix_id
            )

        try:
            await self._blocking(write)
        except DatabaseError as exc:
            logger.error(
                "event=matrix_event_id_store_failed member_events=%s matrix_event=%s error=%r",
                ",".join(map(str, row_ids)),
                matrix_id,
                str(exc),
            )

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


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)
