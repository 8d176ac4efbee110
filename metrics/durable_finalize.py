"""Opt-in (`NATS_DURABLE_FINALIZE`): consume `consensus.finalize` through JetStream.

With core NATS (the reference, nats-protocol §2) a finalize published while the collator is
down is gone. With this option on, and a server that has JetStream, the listener makes sure a
stream captures `consensus.finalize` (created when missing, with the name, retention and
maximum age of the settings) and reads it through a durable pull consumer. A message is
acknowledged only after its DB transaction committed (or after it was refused for good, e.g.
an unknown check type), so a finalize published while the listener was stopped, or one in
hand when it crashed, is applied after it starts again; the (proposal ID, status)
idempotency makes the rare redelivery of an applied one a no-op, so each is applied once.

The monitors still publish on core NATS and need no change: a stream captures core
publishes on its subjects. The collator's account then also needs `$JS.API.>` permissions.

A new consumer starts with the messages published after it was created (DeliverPolicy NEW):
finalizes older than that were handled by the core subscription, or belong to an operator's
existing stream and should not be replayed.

When the server has no JetStream (or the stream or consumer cannot be set up) the listener
logs `event=durable_finalize_unavailable` and uses the core subscription, as without the option.

While a message is held (the database is down, see metrics/durability.py) the consumer tells
the server it is still in progress, so it is not delivered again meanwhile; at most
`max_ack_pending` messages are in hand, which bounds what the listener holds in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import api

from metrics.protocol import SUBJECT_FINALIZE

logger = logging.getLogger("metrics.durable_finalize")

RETENTIONS = {
    "limits": api.RetentionPolicy.LIMITS,
    "interest": api.RetentionPolicy.INTEREST,
    "workqueue": api.RetentionPolicy.WORK_QUEUE,
}


@dataclass(frozen=True)
class DurableFinalizeConfig:
    stream: str = "IBP_FINALIZE"
    consumer: str = ""  # default: "<NodeID>_finalize"
    retention: str = "limits"
    max_age_seconds: float = 7 * 24 * 3600
    ack_wait_seconds: float = 60.0
    max_ack_pending: int = 1000
    fetch_batch: int = 100

    def __post_init__(self) -> None:
        if self.retention not in RETENTIONS:
            raise ValueError(f"NATS_FINALIZE_STREAM_RETENTION must be one of {sorted(RETENTIONS)}")
        for name in (self.stream, self.consumer):
            if any(c in name for c in ". *>\t"):
                raise ValueError(f"JetStream name {name!r} cannot contain '.', '*', '>' or spaces")


class DurableAck:
    """Acknowledgement of one stream message, settled once."""

    def __init__(self, consumer: DurableFinalizeConsumer, sequence: int, msg: Any) -> None:
        self._consumer = consumer
        self.sequence = sequence
        self._msg = msg
        self._settled = False

    async def ack(self) -> None:
        if self._settled:
            return
        self._settled = True
        self._consumer._release(self.sequence)
        try:
            await self._msg.ack()
        except Exception as exc:  # redelivered later; applying it again is a no-op
            logger.warning("event=durable_finalize_ack_failed seq=%d error=%r", self.sequence, str(exc)[:200])

    async def nak(self, *, delay: float = 5.0) -> None:
        if self._settled:
            return
        self._settled = True
        self._consumer._release(self.sequence)
        with contextlib.suppress(Exception):
            await self._msg.nak(delay=delay)


Handler = Callable[[bytes, DurableAck], Awaitable[None]]


class DurableFinalizeConsumer:
    def __init__(self, nc: Any, *, node_id: str, config: DurableFinalizeConfig, handle: Handler) -> None:
        self.nc = nc
        self.node_id = node_id
        self.config = config
        self.handle = handle
        self.consumer_name = config.consumer or f"{node_id}_finalize"
        self.delivered = 0
        self._sub: Any = None
        self._in_hand: dict[int, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def in_hand(self) -> int:
        return len(self._in_hand)

    async def setup(self) -> bool:
        """Make sure the stream and the consumer exist. False (logged) when JetStream is not there."""
        js = self.nc.jetstream(timeout=5)
        try:
            try:
                info = await js.stream_info(self.config.stream)
                logger.info(
                    "event=durable_finalize_stream_found stream=%s subjects=%s",
                    self.config.stream,
                    ",".join(info.config.subjects or []),
                )
            except nats.js.errors.NotFoundError:
                await js.add_stream(
                    api.StreamConfig(
                        name=self.config.stream,
                        subjects=[SUBJECT_FINALIZE],
                        retention=RETENTIONS[self.config.retention],
                        max_age=self.config.max_age_seconds,
                        storage=api.StorageType.FILE,
                    )
                )
                logger.info(
                    "event=durable_finalize_stream_created stream=%s retention=%s max_age_s=%d",
                    self.config.stream,
                    self.config.retention,
                    self.config.max_age_seconds,
                )
            self._sub = await js.pull_subscribe(
                SUBJECT_FINALIZE,
                durable=self.consumer_name,
                stream=self.config.stream,
                config=api.ConsumerConfig(
                    durable_name=self.consumer_name,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    deliver_policy=api.DeliverPolicy.NEW,
                    ack_wait=self.config.ack_wait_seconds,
                    max_ack_pending=self.config.max_ack_pending,
                ),
                inbox_prefix=f"_INBOX.{self.node_id}.".encode(),
            )
        except Exception as exc:
            logger.warning(
                "event=durable_finalize_unavailable stream=%s fallback=core_subscription error=%s: %r",
                self.config.stream,
                type(exc).__name__,
                str(exc)[:200],
            )
            return False
        logger.info("event=durable_finalize_on stream=%s consumer=%s", self.config.stream, self.consumer_name)
        return True

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._fetch_loop(), name="durable-finalize"),
            loop.create_task(self._keepalive_loop(), name="durable-finalize-keepalive"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._sub is not None:
            # The durable consumer stays on the server: that is the point.
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    def _release(self, sequence: int) -> None:
        self._in_hand.pop(sequence, None)

    async def _fetch_loop(self) -> None:
        failures = 0
        while True:
            try:
                messages = await self._sub.fetch(batch=self.config.fetch_batch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                logger.warning("event=durable_finalize_fetch_failed attempt=%d error=%r", failures, str(exc)[:200])
                await asyncio.sleep(min(0.5 * failures, 10))
                continue
            failures = 0
            for msg in messages:
                try:
                    sequence = msg.metadata.sequence.stream
                except Exception:
                    sequence = -1
                if sequence in self._in_hand:
                    continue  # delivered again while we still hold it
                self._in_hand[sequence] = msg
                self.delivered += 1
                await self.handle(msg.data, DurableAck(self, sequence, msg))

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.config.ack_wait_seconds / 3, 0.5))
            for msg in list(self._in_hand.values()):
                with contextlib.suppress(Exception):
                    await msg.in_progress()
