"""The collator's NATS node (`manage.py run_nats_listener`): presence, outages and usage.

An asyncio process on nats-py. It subscribes to explicit subjects only (§2, never `>`),
with echo off. It joins at start-up and every 90 s as `IBPCollator`, answers a newly seen
node with a join at once (§6.1), keeps the node table in memory with liveness from its own
clock and persists it every few seconds. Proposals and votes are cached for 10 minutes so
that a finalize can store the votes (§8.1–8.2). Finalizes become outage rows through
`downtime_finalize` on one DB thread, in arrival order per subject. Usage is collected on
every whole UTC hour for today and yesterday (§9, DECISIONS 7).

A bad message is logged and counted and never stops the process; the connection is
retried for ever; SIGTERM drains the subscriptions and waits for DB work in flight.

Seams for alerts, durability and metrics (issue 4): `counters` (one place for every
counter, with observers), `finalize_hooks` (called with each FinalizeOutcome after its
transaction committed) and `usage_hooks` (called with each UsageStoreResult, whose
`dates` feed the rollup refresh).

Wired here (issue 4): Matrix alerts (metrics/alerts.py) from the finalize hook; Prometheus
counters (metrics/telemetry.py) mirrored from `counters` and saved every few seconds; the
usage rollups refreshed in the background after each stored reply
(metrics/rollup_refresher.py); finalizes and usage replies held in bounded, ordered queues
and retried while the database is unreachable (metrics/durability.py); optionally,
finalizes read from a durable JetStream consumer (metrics/durable_finalize.py); and the
listener's state saved for /api/health (metrics/listener_state.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection
from nats.aio.client import Client

from collator.local_config import LocalConfigError, nats_config_errors, nats_node_id_warnings
from metrics.alerts import alerts_finalize_hook, alerts_start, alerts_stop
from metrics.collection import (
    MAX_REPLY_BYTES,
    REPLY_TIMEOUT_SECONDS,
    DbThread,
    UsageCollector,
    UsageRoundResult,
    round_days,
)
from metrics.durability import DROP_NEWEST, DROP_OLDEST, DROPPED, FAILED, WRITTEN, OrderedRetryQueue
from metrics.durable_finalize import DurableAck, DurableFinalizeConfig, DurableFinalizeConsumer
from metrics.listener_state import listener_state_flush_loop
from metrics.nats_counters import ListenerCounters
from metrics.protocol import (
    ROLE_COLLATOR,
    ROLE_DNS,
    ROLE_MONITOR,
    SUBJECT_CLUSTER,
    SUBJECT_FINALIZE,
    SUBJECT_PROPOSE,
    SUBJECT_USAGE_DATA,
    SUBJECT_VOTE,
    ClusterMessage,
    FinalizeMessage,
    NodeInfo,
    Proposal,
    ProtocolError,
    Vote,
)
from metrics.rollup_refresher import RollupRefresher
from metrics.services import (
    FinalizeOutcome,
    FinalizeRejected,
    cluster_nodes_heard,
    cluster_nodes_prune,
    cluster_nodes_recent,
    downtime_finalize,
    finalize_state_prune,
    role_guess,
)
from metrics.telemetry import telemetry_collection_observed, telemetry_counter_observer, telemetry_flush_loop
from metrics.usage_store import UsageHitsCache, UsageRows, UsageStoreResult

logger = logging.getLogger("metrics.listener")

HEARTBEAT_SECONDS = 90.0
ACTIVE_WINDOW = timedelta(minutes=10)
FORGET_AFTER = timedelta(minutes=15)
PROPOSAL_TTL = timedelta(minutes=10)
MAX_CONSENSUS_BYTES = 256 * 1024  # a consensus message is a few hundred bytes
# A finalize is the outage itself: any size NATS carries (1 MiB by default) is taken, and an
# ErrorText too long for its column is cut (metrics/services.py), rather than losing the outage.
MAX_FINALIZE_BYTES = 1024 * 1024
MAX_CACHED_PROPOSALS = 100_000

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ListenerConfig:
    node_id: str
    servers: tuple[str, ...]
    user: str = ""
    password: str = ""
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    reply_timeout: float = REPLY_TIMEOUT_SECONDS
    max_reply_bytes: int = MAX_REPLY_BYTES
    collect_usage_hourly: bool = True
    node_flush_seconds: float = 5.0
    reconnect_wait_seconds: float = 2.0
    # Durability (metrics/durability.py): bounds of the queues held while the DB is down.
    finalize_queue_max: int = 100_000
    usage_queue_max: int = 48
    db_retry_base_seconds: float = 0.5
    db_retry_max_seconds: float = 30.0
    stop_drain_seconds: float = 10.0
    # NATS_DURABLE_FINALIZE (metrics/durable_finalize.py).
    durable_finalize: bool = False
    durable: DurableFinalizeConfig = field(default_factory=DurableFinalizeConfig)
    # How often the telemetry snapshot and the listener state are saved; the rollup pause.
    telemetry_flush_seconds: float = 5.0
    state_flush_seconds: float = 5.0
    rollup_pause_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not self.node_id:
            raise ValueError("Nats.NodeID must be set: it names this node on the bus (§3)")
        if any(c in self.node_id for c in ". *>\t"):
            raise ValueError(f"Nats.NodeID {self.node_id!r} cannot be part of a NATS subject (§3)")


@dataclass
class KnownNode:
    role: str = ""
    info: NodeInfo | None = None
    last_heard: datetime = field(default_factory=utc_now)
    dirty: bool = True


@dataclass
class CachedProposal:
    created_at: datetime
    proposal: Proposal | None = None
    votes: dict[str, bool] = field(default_factory=dict)


FinalizeHook = Callable[[FinalizeMessage, FinalizeOutcome], Awaitable[None] | None]
UsageHook = Callable[[UsageStoreResult], Awaitable[None] | None]


@dataclass(frozen=True)
class HeldFinalize:
    """A finalize on its way to the DB; `ack` is set when it came from the durable stream."""

    message: FinalizeMessage
    votes: dict[str, bool]
    ack: DurableAck | None = None


@dataclass(frozen=True)
class HeldUsage:
    """A usage store call (metrics.services.usage_reply_store and its arguments)."""

    function: Callable[..., UsageStoreResult]
    kwargs: dict[str, Any]


class _UsageDbGate:
    """What the usage collector writes through: the listener's usage retry queue.

    A reply held for a database that is down reports nothing stored yet; when it is written
    later, the listener counts it and runs the usage hooks then.
    """

    def __init__(self, listener: NatsListener) -> None:
        self._listener = listener

    async def run(self, function: Callable[..., UsageStoreResult], /, **kwargs: Any) -> UsageStoreResult:
        return await self._listener._usage_submit(HeldUsage(function, kwargs))


class NatsListener:
    def __init__(self, config: ListenerConfig, *, clock: Clock = utc_now, counters: ListenerCounters | None = None):
        self.config = config
        self.clock = clock
        self.counters = counters or ListenerCounters()
        self.counters.add_observer(telemetry_counter_observer)
        self.nodes: dict[str, KnownNode] = {}
        self.proposals: dict[str, CachedProposal] = {}
        self.finalize_hooks: list[FinalizeHook] = []
        self.usage_hooks: list[UsageHook] = []
        self.nc: Client | None = None
        self.connected = asyncio.Event()
        self.last_join_sent: datetime | None = None
        self.last_rounds: list[UsageRoundResult] = []
        self._events_db = DbThread("nats-events-db")
        # SQLite has one writer at a time: all DB work then goes through one thread, so the
        # listener never waits on (or trips over) its own lock.
        self._usage_db = self._events_db if connection.vendor == "sqlite" else DbThread("nats-usage-db")
        self._parse_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nats-parse")
        self._usage_cache = UsageHitsCache()
        self._tasks: list[asyncio.Task[Any]] = []
        self._reply_join: asyncio.Task[None] | None = None
        self._collector: UsageCollector | None = None
        self._round_lock = asyncio.Lock()
        self.finalize_hooks.append(alerts_finalize_hook)  # sync; only queues ids, never waits
        self.usage_hooks.append(self._usage_observed)
        self.started_at: datetime | None = None
        self.last_collection: dict[str, datetime] = {}
        self.durable: DurableFinalizeConsumer | None = None
        self.finalize_queue: OrderedRetryQueue[HeldFinalize] = OrderedRetryQueue(
            name="finalize",
            write=self._finalize_write,
            on_written=self._finalize_written,
            on_failed=self._finalize_failed,
            max_items=config.finalize_queue_max,
            overflow=DROP_NEWEST,  # keeps the held ones in order; JetStream redelivers a refused one
            base_delay=config.db_retry_base_seconds,
            max_delay=config.db_retry_max_seconds,
        )
        self.usage_queue: OrderedRetryQueue[HeldUsage] = OrderedRetryQueue(
            name="usage",
            write=self._usage_write,
            on_written=self._usage_written_late,
            on_failed=self._usage_failed,
            max_items=config.usage_queue_max,
            overflow=DROP_OLDEST,  # a node's next reply carries the day total again
            on_dropped=self._usage_dropped,
            base_delay=config.db_retry_base_seconds,
            max_delay=config.db_retry_max_seconds,
        )
        # Rollups are rebuilt on a thread of their own, so that a day's rebuild never makes
        # the next usage reply wait for the usage writer.
        self._rollup_db = self._events_db if connection.vendor == "sqlite" else DbThread("nats-rollup-db")
        self.rollups = RollupRefresher(
            db=self._rollup_db,
            pause=config.rollup_pause_seconds,
            base_delay=max(config.db_retry_base_seconds, 0.1),
            max_delay=config.db_retry_max_seconds,
        )
        self._flush_tasks: list[asyncio.Task[Any]] = []

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (retrying for ever), subscribe, announce ourselves, start the timers."""
        for word in nats_node_id_warnings(self.config.node_id):
            # Peers guess a node's role from its ID (§6.2): this collator may be counted as one.
            logger.warning(
                "event=node_id_warning node_id=%s contains=%s reason=peers_guess_roles_from_node_ids",
                self.config.node_id,
                word,
            )
        # A bad Matrix block stops start-up here, with MatrixConfigError.
        await alerts_start()
        self.started_at = self.clock()
        try:
            await self._events_db.run(self._warm_nodes)
        except Exception as exc:
            # The database may be down at start-up: writes are held until it is back.
            logger.warning("event=warm_nodes_failed error=%r", str(exc)[:200])
        self.nc = await self._connect()
        self._collector = UsageCollector(
            self.nc,
            node_id=self.config.node_id,
            counters=self.counters,
            parse_thread=self._parse_thread,
            db=_UsageDbGate(self),
            cache=self._usage_cache,
            reply_timeout=self.config.reply_timeout,
            max_reply_bytes=self.config.max_reply_bytes,
            on_reply_heard=lambda node_id: self.node_heard(node_id, role_hint=ROLE_DNS),
            on_stored=self._usage_stored,
            clock=self.clock,  # records dated after tomorrow by this clock are refused
        )
        # No queue groups and no `>`: exactly the subjects of §2.
        limits = {"pending_msgs_limit": 1_000_000, "pending_bytes_limit": 128 * 1024 * 1024}
        await self.nc.subscribe(SUBJECT_CLUSTER, cb=self._guard(self._on_cluster, MAX_CONSENSUS_BYTES), **limits)
        await self.nc.subscribe(SUBJECT_PROPOSE, cb=self._guard(self._on_propose, MAX_CONSENSUS_BYTES), **limits)
        await self.nc.subscribe(SUBJECT_VOTE, cb=self._guard(self._on_vote, MAX_CONSENSUS_BYTES), **limits)
        if self.config.durable_finalize:
            durable = DurableFinalizeConsumer(
                self.nc, node_id=self.config.node_id, config=self.config.durable, handle=self._on_durable_finalize
            )
            if await durable.setup():
                self.durable = durable
        if self.durable is None:
            await self.nc.subscribe(SUBJECT_FINALIZE, cb=self._guard(self._on_finalize, MAX_FINALIZE_BYTES), **limits)
        # The usage collector counts and size-checks usage messages itself.
        await self.nc.subscribe(SUBJECT_USAGE_DATA, cb=self._guard(self._on_usage_data, None), **limits)
        await self.nc.flush()
        await self.send_join()
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._maintenance_loop(), name="maintenance"),
        ]
        if self.config.collect_usage_hourly:
            self._tasks.append(asyncio.create_task(self._usage_schedule_loop(), name="usage-schedule"))
        self.rollups.start()
        if self.durable is not None:
            self.durable.start()
        self._flush_tasks = [
            asyncio.create_task(
                telemetry_flush_loop(process=self.config.node_id, interval=self.config.telemetry_flush_seconds),
                name="telemetry",
            ),
            asyncio.create_task(
                listener_state_flush_loop(snapshot=self.state_snapshot, interval=self.config.state_flush_seconds),
                name="listener-state",
            ),
        ]
        logger.info(
            "event=listener_started node_id=%s servers=%s durable_finalize=%s",
            self.config.node_id,
            ",".join(self.config.servers),
            "on" if self.durable is not None else "off",
        )

    async def stop(self) -> None:
        """Stop the timers, drain the subscriptions, finish DB work, close connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        drain = self.config.stop_drain_seconds
        if self.durable is not None:
            # Stop fetching, then settle what is in hand while the connection can still ack;
            # whatever stays unacknowledged is delivered again after the restart.
            await self.durable.stop()
            await self.finalize_queue.close(drain_timeout=drain)
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), timeout=30)
            with contextlib.suppress(Exception):
                await self.nc.close()
        await self.finalize_queue.close(drain_timeout=drain)
        await self.usage_queue.close(drain_timeout=drain)
        await self.rollups.stop(timeout=drain)
        await alerts_stop()
        for task in self._flush_tasks:
            task.cancel()
        for task in self._flush_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._flush_tasks = []
        with contextlib.suppress(Exception):
            await self._events_db.run(self._flush_nodes)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._events_db.shutdown)
        if self._usage_db is not self._events_db:
            await loop.run_in_executor(None, self._usage_db.shutdown)
        if self._rollup_db is not self._events_db:
            await loop.run_in_executor(None, self._rollup_db.shutdown)
        self._parse_thread.shutdown(wait=True)
        logger.info("event=listener_stopped node_id=%s counters=%s", self.config.node_id, self.counters.snapshot())

    async def run_until(self, stop: asyncio.Event) -> None:
        """Start, run until `stop` is set, then stop.

        Start-up races `stop`: the first connection is retried for ever (the bus may come up
        after us), so a SIGTERM while it is still failing must end the start-up there, or
        the process would ignore SIGTERM until NATS is reachable.
        """
        starting = asyncio.create_task(self.start(), name="listener-start")
        stop_requested = asyncio.create_task(stop.wait(), name="listener-stop-requested")
        try:
            await asyncio.wait({starting, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a failed start-up (e.g. a bad Matrix block) raises here
                await stop.wait()
            else:
                logger.info("event=listener_stop_during_startup connected=%s", self.connected.is_set())
        finally:
            stop_requested.cancel()
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            await self.stop()

    async def _connect(self) -> Client:
        attempt = 0
        while True:
            attempt += 1
            # Our own Client rather than nats.connect(): with unlimited reconnects its connect()
            # itself retries for ever, and a cancelled start-up must be able to close it.
            nc = Client()
            try:
                await nc.connect(
                    servers=list(self.config.servers),
                    user=self.config.user or None,
                    password=self.config.password or None,
                    name=f"ibp-collator {self.config.node_id}",
                    no_echo=True,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self.config.reconnect_wait_seconds,
                    connect_timeout=10,
                    ping_interval=200,
                    max_outstanding_pings=5,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await nc.close()
                raise
            except Exception as exc:
                # The first connection is retried for ever too: the bus may come up after us.
                logger.warning("event=nats_connect_failed attempt=%d error=%r", attempt, str(exc)[:200])
                with contextlib.suppress(Exception):
                    await nc.close()
                await asyncio.sleep(min(self.config.reconnect_wait_seconds * attempt, 30))
                continue
            self.connected.set()
            logger.info("event=nats_connected url=%s", nc.connected_url.netloc if nc.connected_url else "")
            return nc

    async def _on_error(self, exc: Exception) -> None:
        logger.warning("event=nats_error error=%r", str(exc)[:200])

    async def _on_disconnected(self) -> None:
        self.connected.clear()
        logger.warning("event=nats_disconnected")

    async def _on_reconnected(self) -> None:
        self.connected.set()
        logger.info("event=nats_reconnected")
        # Other nodes may have forgotten us while we were away.
        await self.send_join()

    async def _on_closed(self) -> None:
        self.connected.clear()
        logger.info("event=nats_closed")

    # --- presence (§6) -------------------------------------------------------------------

    async def send_join(self) -> None:
        if self.nc is None or self.nc.is_closed:
            return
        now = self.clock()
        self.node_heard(self.config.node_id, role_hint=ROLE_COLLATOR)
        message = ClusterMessage.join(node_id=self.config.node_id, role=ROLE_COLLATOR, at=now)
        try:
            await self.nc.publish(SUBJECT_CLUSTER, message.to_json())
        except Exception as exc:
            logger.warning("event=join_failed error=%r", str(exc)[:200])
            return
        self.last_join_sent = now

    def node_heard(self, node_id: str, *, role_hint: str = "", info: NodeInfo | None = None) -> bool:
        """Mark a node heard by our clock. True when it is new or its role/address changed."""
        if not node_id:
            return False
        node = self.nodes.get(node_id)
        changed = node is None
        if node is None:
            node = self.nodes[node_id] = KnownNode(role=role_guess(node_id))
        node.last_heard = self.clock()
        node.dirty = True
        if info is not None:
            if info.node_role and info.node_role != node.role:
                changed = True
                node.role = info.node_role  # an announced role wins over a guess (§13 N3)
            if node.info is None or (node.info.public_address, node.info.listen_address) != (
                info.public_address,
                info.listen_address,
            ):
                changed = True
            node.info = info
        elif role_hint and not node.role:
            node.role = role_hint
        return changed

    def active_count(self, role: str) -> int:
        now = self.clock()
        return sum(1 for n in self.nodes.values() if n.role == role and now - n.last_heard < ACTIVE_WINDOW)

    def _warm_nodes(self) -> None:
        for row in cluster_nodes_recent(now=self.clock(), within=ACTIVE_WINDOW):
            if row.node_id != self.config.node_id:
                self.nodes[row.node_id] = KnownNode(role=row.node_role, last_heard=row.last_heard, dirty=False)

    def _flush_nodes(self) -> int:
        dirty = {node_id: node for node_id, node in self.nodes.items() if node.dirty}
        for node in dirty.values():
            node.dirty = False
        if not dirty:
            return 0
        return cluster_nodes_heard(
            heard={node_id: (n.last_heard, n.info, n.role) for node_id, n in dirty.items()}, now=self.clock()
        )

    async def _on_cluster(self, subject: str, data: bytes) -> None:
        message = ClusterMessage.from_json(data)
        sender = message.sender
        if sender.node_id == self.config.node_id:
            return
        if message.type != "join":
            self.node_heard(sender.node_id)
            return
        if self.node_heard(sender.node_id, info=sender):
            # A newcomer learns about us at once instead of after up to 90 s (§6.1, N2).
            self._schedule_reply_join()

    def _schedule_reply_join(self) -> None:
        if self._reply_join is not None and not self._reply_join.done():
            return

        async def reply() -> None:
            await asyncio.sleep(0.2)  # one join answers a burst of newcomers
            await self.send_join()

        self._reply_join = asyncio.create_task(reply())

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            await self.send_join()

    async def _maintenance_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.config.node_flush_seconds)
            ticks += 1
            now = self.clock()
            for node_id in [n for n, node in self.nodes.items() if now - node.last_heard > FORGET_AFTER]:
                if node_id != self.config.node_id:
                    del self.nodes[node_id]
            for proposal_id in [p for p, c in self.proposals.items() if now - c.created_at > PROPOSAL_TTL]:
                del self.proposals[proposal_id]
            try:
                await self._events_db.run(self._flush_nodes)
                if ticks % 12 == 0:
                    await self._events_db.run(cluster_nodes_prune, now=now, silent_for=FORGET_AFTER)
                    await self._events_db.run(finalize_state_prune, now=now)
            except Exception:
                logger.exception("event=maintenance_failed")

    # --- consensus (§8) ------------------------------------------------------------------

    def _cache_entry(self, proposal_id: str) -> CachedProposal:
        entry = self.proposals.get(proposal_id)
        if entry is None:
            if len(self.proposals) >= MAX_CACHED_PROPOSALS:
                self.proposals.pop(next(iter(self.proposals)))
            entry = self.proposals[proposal_id] = CachedProposal(created_at=self.clock())
        return entry

    async def _on_propose(self, subject: str, data: bytes) -> None:
        proposal = Proposal.from_json(data)
        self.node_heard(proposal.sender_node_id, role_hint=ROLE_MONITOR)
        entry = self._cache_entry(proposal.id)
        entry.proposal = proposal
        if not proposal.timestamp.is_zero:
            entry.created_at = min(entry.created_at, proposal.timestamp.utc)

    async def _on_vote(self, subject: str, data: bytes) -> None:
        vote = Vote.from_json(data)
        self.node_heard(vote.sender_node_id, role_hint=ROLE_MONITOR)
        if vote.proposal_id and vote.voter:
            self._cache_entry(vote.proposal_id).votes[vote.voter] = vote.agree

    async def _on_finalize(self, subject: str, data: bytes) -> None:
        message = FinalizeMessage.from_json(data)
        self.node_heard(message.decider, role_hint=ROLE_MONITOR)
        await self.finalize_apply(message)

    async def _on_durable_finalize(self, data: bytes, ack: DurableAck) -> None:
        """A finalize from the durable JetStream consumer: acked only once settled."""
        self.counters.message(SUBJECT_FINALIZE)
        if len(data) > MAX_FINALIZE_BYTES:
            self.counters.reject("oversized", subject=SUBJECT_FINALIZE, detail=f"{len(data)} bytes")
            await ack.ack()
            return
        try:
            message = FinalizeMessage.from_json(data)
        except ProtocolError as exc:
            self.counters.reject(exc.reason, subject=SUBJECT_FINALIZE, detail=str(exc))
            await ack.ack()  # a bad message stays bad: never deliver it again
            return
        self.node_heard(message.decider, role_hint=ROLE_MONITOR)
        try:
            await self.finalize_apply(message, ack=ack)
        except Exception as exc:
            logger.exception("event=handler_failed subject=%s", SUBJECT_FINALIZE)
            self.counters.reject("handler_error", subject=SUBJECT_FINALIZE, detail=repr(exc))
            await ack.nak()

    async def finalize_apply(
        self, message: FinalizeMessage, *, ack: DurableAck | None = None
    ) -> FinalizeOutcome | None:
        """Apply one decoded finalize; public so that a durable consumer can feed it too.

        Returns the outcome when it was written now; None when it was ignored, refused, or
        held because the database is unreachable (it is written, in order, once it is back).
        """
        if not message.passed:
            self.counters.finalize_outcome("ignored")
            if ack is not None:
                await ack.ack()
            return None
        cached = self.proposals.get(message.proposal.id)
        votes = dict(cached.votes) if cached else {}
        item = HeldFinalize(message, votes, ack)
        submitted = await self.finalize_queue.submit(item)
        if submitted.status == WRITTEN:
            await self._finalize_written(item, submitted.result)
            return submitted.result  # type: ignore[no-any-return]
        if submitted.status == FAILED:
            assert submitted.error is not None
            await self._finalize_failed(item, submitted.error)
        elif submitted.status == DROPPED:
            self.counters.reject("queue_full", subject=SUBJECT_FINALIZE, detail=message.proposal.id)
            if ack is not None:
                await ack.nak(delay=self.config.db_retry_max_seconds)  # JetStream delivers it again
        return None

    async def _finalize_write(self, item: HeldFinalize) -> FinalizeOutcome:
        outcome: FinalizeOutcome = await self._events_db.run(
            downtime_finalize, message=item.message, now=self.clock(), votes=item.votes
        )
        return outcome

    async def _finalize_failed(self, item: HeldFinalize, exc: BaseException) -> None:
        reason = getattr(exc, "reason", "db_error")
        self.counters.reject(reason, subject=SUBJECT_FINALIZE, detail=f"{item.message.proposal.id}: {exc}")
        if isinstance(exc, FinalizeRejected) or reason == "db_error":
            if reason == "db_error":
                logger.error("event=finalize_failed proposal_id=%s error=%r", item.message.proposal.id, str(exc)[:300])
            if item.ack is not None:
                await item.ack.ack()  # it would fail the same way again
        # Still held at shutdown: not acknowledged, so the durable stream delivers it again.

    async def _finalize_written(self, item: HeldFinalize, outcome: FinalizeOutcome) -> None:
        message = item.message
        if item.ack is not None:
            await item.ack.ack()
        self.counters.finalize_outcome(outcome.action)
        if outcome.action in ("opened", "recorded_closed"):
            self.counters.rows_written("member_events", 1)
        elif outcome.action == "closed":
            self.counters.rows_written("member_events", len(outcome.closed_ids))
        logger.info(
            "event=finalize proposal_id=%s status=%s action=%s event_id=%s member=%r check=%s/%s",
            message.proposal.id,
            "online" if message.proposal.proposed_status else "offline",
            outcome.action,
            outcome.event_id,
            message.proposal.member_name,
            message.proposal.check_type,
            message.proposal.check_name,
        )
        for hook in self.finalize_hooks:
            try:
                pending = hook(message, outcome)
                if pending is not None:
                    await pending
            except Exception:
                logger.exception("event=finalize_hook_failed proposal_id=%s", message.proposal.id)

    # --- usage (§9) ----------------------------------------------------------------------

    async def _on_usage_data(self, subject: str, data: bytes) -> None:
        assert self._collector is not None
        await self._collector.handle_unsolicited(subject, data)

    async def _usage_submit(self, item: HeldUsage) -> UsageStoreResult:
        submitted = await self.usage_queue.submit(item)
        if submitted.status == WRITTEN:
            return submitted.result  # type: ignore[no-any-return]
        if submitted.status == FAILED:
            assert submitted.error is not None
            raise submitted.error  # the collector logs and counts it, as before
        rows = item.kwargs.get("rows")
        return UsageStoreResult(rows_received=rows.received if isinstance(rows, UsageRows) else len(rows or ()))

    def _usage_dropped(self, item: HeldUsage) -> None:
        # The arriving reply or an older held one: counted either way.
        self.counters.reject("queue_full", subject="usage_store", detail=str(item.kwargs.get("node_id", "")))

    async def _usage_write(self, item: HeldUsage) -> UsageStoreResult:
        stored: UsageStoreResult = await self._usage_db.run(item.function, **item.kwargs)
        return stored

    async def _usage_written_late(self, item: HeldUsage, stored: UsageStoreResult) -> None:
        logger.info(
            "event=usage_reply_stored_after_retry node_id=%s rows_written=%d rows_unchanged=%d",
            item.kwargs.get("node_id", ""),
            stored.rows_written,
            stored.rows_unchanged,
        )
        self.counters.rows_written("requests", stored.rows_written)
        self.counters.rows_written("requests_unchanged", stored.rows_unchanged)
        await self._usage_stored(stored)

    async def _usage_failed(self, item: HeldUsage, exc: BaseException) -> None:
        self.counters.reject(
            getattr(exc, "reason", "db_error"), subject="usage_store", detail=f"{item.kwargs.get('node_id', '')}: {exc}"
        )

    def _usage_observed(self, stored: UsageStoreResult) -> None:
        """A usage hook: note each node's last stored reply, and refresh the days' rollups."""
        now = self.clock()
        for node_id in stored.nodes:
            self.last_collection[node_id] = now
        self.rollups.add(stored.dates)

    def state_snapshot(self) -> dict[str, Any]:
        """What metrics/listener_state.py saves for /api/health."""
        return {
            "node_id": self.config.node_id,
            "connected": bool(self.nc is not None and self.nc.is_connected),
            "last_heartbeat_sent": self.last_join_sent,
            "last_collection": dict(self.last_collection),
            "queue_depths": {
                "finalize": self.finalize_queue.depth,
                "usage": self.usage_queue.depth,
                "rollups": self.rollups.depth,
                "durable_in_hand": self.durable.in_hand if self.durable is not None else 0,
            },
            "queue_dropped": {"finalize": self.finalize_queue.dropped, "usage": self.usage_queue.dropped},
            "durable_finalize": self.durable is not None,
            "started_at": self.started_at,
            "now": self.clock(),
        }

    async def _usage_stored(self, stored: UsageStoreResult) -> None:
        for hook in self.usage_hooks:
            try:
                pending = hook(stored)
                if pending is not None:
                    await pending
            except Exception:
                logger.exception("event=usage_hook_failed")

    async def collect_usage(
        self, *, days: tuple[date, ...] | None = None, expected: int | None = None
    ) -> UsageRoundResult:
        """One round: today and yesterday (by our clock) unless `days` are given.

        `expected` defaults to the live DNS nodes of the node table; with none, the round
        is skipped, as in the reference (§9.1).
        """
        assert self._collector is not None, "start() first"
        days = days or round_days(self.clock())
        expected = self.active_count(ROLE_DNS) if expected is None else expected
        if expected <= 0:
            logger.error("event=usage_round_skipped reason=no_active_dns_nodes")
            self.counters.reject("no_dns_nodes", subject="usage_round")
            return UsageRoundResult(days=days, expected=0)
        async with self._round_lock:
            result = await self._collector.collect(days=days, expected=expected)
        telemetry_collection_observed(seconds=result.seconds)
        self.last_rounds = [result, *self.last_rounds[:23]]
        return result

    async def _usage_schedule_loop(self) -> None:
        # Nothing at start-up; the first round is at the next whole UTC hour (§9.1).
        while True:
            now = self.clock()
            next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            await asyncio.sleep(max((next_hour - now).total_seconds(), 0.5))
            if self.clock() < next_hour:
                continue
            try:
                await self.collect_usage(days=round_days(next_hour))
            except Exception:
                logger.exception("event=usage_round_failed")

    # --- message plumbing ----------------------------------------------------------------

    def _guard(
        self, handler: Callable[[str, bytes], Awaitable[None]], max_bytes: int | None
    ) -> Callable[[Any], Awaitable[None]]:
        """Count every message; a bad one is logged and counted, never raised.

        `max_bytes=None` leaves counting and the size check to the handler.
        """

        async def callback(msg: Any) -> None:
            subject = msg.subject
            data: bytes = msg.data
            if max_bytes is None:
                pass
            elif len(data) > max_bytes:
                self.counters.message(subject)
                self.counters.reject("oversized", subject=subject, detail=f"{len(data)} bytes")
                return
            else:
                self.counters.message(subject)
            try:
                await handler(subject, data)
            except ProtocolError as exc:
                self.counters.reject(exc.reason, subject=subject, detail=str(exc))
            except Exception as exc:
                logger.exception("event=handler_failed subject=%s", subject)
                self.counters.reject("handler_error", subject=subject, detail=repr(exc))

        return callback


def listener_config_from_settings(settings: Any, **overrides: Any) -> ListenerConfig:
    nats_config = settings.COLLATOR.nats
    values: dict[str, Any] = {
        "node_id": nats_config.node_id,
        "servers": tuple(nats_config.urls),
        "user": nats_config.user,
        "password": nats_config.password,
        "max_reply_bytes": int(getattr(settings, "NATS_MAX_REPLY_BYTES", MAX_REPLY_BYTES)),
        "finalize_queue_max": int(getattr(settings, "NATS_FINALIZE_QUEUE_MAX", 100_000)),
        "usage_queue_max": int(getattr(settings, "NATS_USAGE_QUEUE_MAX", 48)),
        "db_retry_base_seconds": float(getattr(settings, "NATS_DB_RETRY_BASE_SECONDS", 0.5)),
        "db_retry_max_seconds": float(getattr(settings, "NATS_DB_RETRY_MAX_SECONDS", 30.0)),
        "durable_finalize": bool(getattr(settings, "NATS_DURABLE_FINALIZE", False)),
        "durable": DurableFinalizeConfig(
            stream=str(getattr(settings, "NATS_FINALIZE_STREAM", "IBP_FINALIZE")),
            consumer=str(getattr(settings, "NATS_FINALIZE_CONSUMER", "")),
            retention=str(getattr(settings, "NATS_FINALIZE_STREAM_RETENTION", "limits")),
            max_age_seconds=float(getattr(settings, "NATS_FINALIZE_STREAM_MAX_AGE_SECONDS", 7 * 24 * 3600)),
            max_ack_pending=int(getattr(settings, "NATS_FINALIZE_MAX_ACK_PENDING", 1000)),
        ),
    }
    values.update(overrides)
    # Checked here, where the listener starts, and not at settings load: the web server and
    # the other commands run with a Nats block that is not filled in (DECISIONS 22).
    errors = nats_config_errors(
        node_id=values["node_id"], urls=values["servers"], user=values["user"], password=values["password"]
    )
    if errors:
        raise LocalConfigError("; ".join(errors))
    try:
        return ListenerConfig(**values)
    except ValueError as exc:
        raise LocalConfigError(str(exc)) from exc
