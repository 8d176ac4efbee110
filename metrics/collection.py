"""Hourly DNS usage collection (nats-protocol §9, DECISIONS 6–8).

One round asks for each day (today and yesterday) with its own request on its own private
inbox, and takes the first reply of each distinct node until the expected number of nodes
answered or 20 s passed. Each reply is decoded and normalised on a parse thread while the
previous one is written on the DB thread, so a large round costs about the larger of the
two, not their sum. Rows are stored per responding node; unchanged rows are not written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.db import close_old_connections, connections

from metrics.nats_counters import ListenerCounters
from metrics.protocol import (
    HITS_MAX,
    SUBJECT_USAGE_REQUEST,
    ProtocolError,
    UsageRequest,
    decode_usage_reply,
    parse_usage_date,
)
from metrics.services import UsageHitsCache, UsageStoreResult, domain_normalise, usage_reply_store

logger = logging.getLogger("metrics.collection")

REPLY_TIMEOUT_SECONDS = 20.0
MAX_REPLY_BYTES = 1024 * 1024  # NATS's default max_payload: a node cannot send more

# Column widths of `requests` (characters): longer values are cut, never refused by MySQL.
_WIDTH = {"node_id": 64, "domain": 128, "member": 128, "asn": 32, "network": 96, "code": 2, "country": 64}
_ASN = re.compile(r"(?i)(?:as)?\s*(\d+)")


def asn_normalise(text: str) -> str:
    """`as3320`, `3320`, ` AS 3320 ` → `AS3320`; empty stays ''; anything else is kept, trimmed."""
    value = text.strip()
    match = _ASN.fullmatch(value)
    return f"AS{int(match.group(1))}" if match else value[: _WIDTH["asn"]]


class DbThread:
    """One worker thread with its own DB connection; async callers await its results.

    Django connections belong to a thread, so all work of one kind goes to one thread, and
    stale connections are closed around each job (as Django does around a request).
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, function: Callable[..., Any], /, **kwargs: Any) -> Any:
        def job() -> Any:
            close_old_connections()
            try:
                return function(**kwargs)
            finally:
                close_old_connections()

        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    def shutdown(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._executor.submit(connections.close_all).result(timeout=10)
        self._executor.shutdown(wait=True)


@dataclass
class ReplyDigest:
    """One node's reply, decoded and normalised: key → day total."""

    node_id: str
    error: str
    rows: dict[tuple[Any, ...], int]
    records: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    duplicates_summed: int = 0
    float_hits: int = 0


class UsageNormaliser:
    """Wire records → `requests` keys (DECISIONS 8). Memoised: a reply repeats its values."""

    def __init__(self) -> None:
        self._dates: dict[str, date | None] = {}
        self._domains: dict[str, str] = {}
        self._asns: dict[str, str] = {}
        self._codes: dict[str, str] = {}
        # One copy of each repeated member, network and country name across a round.
        self._shared: dict[str, str] = {}

    def _date(self, text: str) -> date | None:
        try:
            return self._dates[text]
        except KeyError:
            try:
                parsed: date | None = parse_usage_date(text)
            except ProtocolError:
                parsed = None
            if len(self._dates) < 10_000:
                self._dates[text] = parsed
            return parsed

    def _memo(self, memo: dict[str, str], text: str, make: Callable[[str], str]) -> str:
        value = memo.get(text)
        if value is None:
            value = make(text)
            if len(memo) < 200_000:
                memo[text] = value
        return value

    def digest(self, holder: list[bytes]) -> ReplyDigest:
        """Decode and normalise one reply. `holder` hands the raw bytes over, so that they
        are freed as soon as they are decoded (a benchmark reply is 26 MB)."""
        data = holder.pop()
        text = data.decode("utf-8", errors="replace")
        del data
        reply = decode_usage_reply(text)
        del text
        if len(self._shared) > 500_000:
            self._shared.clear()
        digest = ReplyDigest(node_id=reply.node_id, error=reply.error, rows={}, float_hits=reply.float_hits)
        if not reply.records:
            return digest
        digest.records = len(reply.records)
        rows = digest.rows
        domains, asns, codes = self._domains, self._asns, self._codes
        shared = self._shared
        member_width, network_width, country_width = _WIDTH["member"], _WIDTH["network"], _WIDTH["country"]
        records, reply.records = reply.records, None
        for _, date_text, domain, member, code, asn, network, country, hits, is_ipv6 in records:
            day = self._date(date_text)
            if day is None:
                digest.rejected["invalid_date"] += 1
                continue
            if hits < 0 or hits > HITS_MAX:
                digest.rejected["hits_out_of_range"] += 1
                continue
            key = (
                day,
                self._memo(domains, domain, lambda t: domain_normalise(t)[: _WIDTH["domain"]]),
                shared.setdefault(member, member) if len(member) <= member_width else member[:member_width],
                self._memo(asns, asn, asn_normalise),
                shared.setdefault(network, network) if len(network) <= network_width else network[:network_width],
                self._memo(codes, code, lambda t: t.strip().upper()[: _WIDTH["code"]]),
                shared.setdefault(country, country) if len(country) <= country_width else country[:country_width],
                1 if is_ipv6 else 0,
            )
            previous = rows.get(key)
            if previous is None:
                rows[key] = hits
            else:
                # Two wire keys that differ only in spelling (`Rpc.X.` and `rpc.x`) are two
                # of the node's counters for one key: their day totals add up.
                rows[key] = min(previous + hits, HITS_MAX)
                digest.duplicates_summed += 1
        return digest


@dataclass
class UsageRoundResult:
    """One round (or one unsolicited message): what arrived and what was stored."""

    days: tuple[date, ...] = ()
    expected: int = 0
    replied: dict[date, list[str]] = field(default_factory=dict)
    stored: UsageStoreResult = field(default_factory=UsageStoreResult)
    rejected: Counter[str] = field(default_factory=Counter)
    node_errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def dates(self) -> set[date]:
        """Dates whose rows were touched: hand them to the rollup refresh."""
        return self.stored.dates

    @property
    def nodes(self) -> set[str]:
        return self.stored.nodes


class UsageCollector:
    """Runs rounds on a connected nats-py client. Used by the listener and `collect_usage`."""

    def __init__(
        self,
        nc: Any,
        *,
        node_id: str,
        counters: ListenerCounters,
        parse_thread: ThreadPoolExecutor,
        db: DbThread,
        cache: UsageHitsCache,
        reply_timeout: float = REPLY_TIMEOUT_SECONDS,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        on_reply_heard: Callable[[str], None] | None = None,
        on_stored: Callable[[UsageStoreResult], Awaitable[None] | None] | None = None,
    ) -> None:
        self.nc = nc
        self.node_id = node_id
        self.counters = counters
        self.parse_thread = parse_thread
        self.db = db
        self.cache = cache
        self.reply_timeout = reply_timeout
        self.max_reply_bytes = max_reply_bytes
        self.on_reply_heard = on_reply_heard
        self.on_stored = on_stored
        self.normaliser = UsageNormaliser()
        self._last_inbox_ns = 0

    def _inbox(self) -> str:
        # `_INBOX.<NodeID>.usageReply.<unixnano>` (§9.3); two requests of one round differ.
        stamp = max(time.time_ns(), self._last_inbox_ns + 1)
        self._last_inbox_ns = stamp
        return f"_INBOX.{self.node_id}.usageReply.{stamp}"

    async def collect(self, *, days: Sequence[date], expected: int | None) -> UsageRoundResult:
        """Ask for each day separately and store what the nodes answer.

        `expected=None` (a manual run with no node table) waits the whole reply window.
        """
        started = time.perf_counter()
        result = UsageRoundResult(days=tuple(days), expected=expected or 0)
        await asyncio.gather(*(self._collect_day(day, expected, result) for day in days))
        result.seconds = time.perf_counter() - started
        logger.info(
            "event=usage_round days=%s expected=%d replied=%s rows_received=%d rows_written=%d rows_unchanged=%d "
            "rejected=%d seconds=%.2f",
            ",".join(d.isoformat() for d in days),
            expected or 0,
            ",".join(f"{d.isoformat()}:{len(n)}" for d, n in sorted(result.replied.items())),
            result.stored.rows_received,
            result.stored.rows_written,
            result.stored.rows_unchanged,
            sum(result.rejected.values()),
            result.seconds,
        )
        return result

    async def _collect_day(self, day: date, expected: int | None, result: UsageRoundResult) -> None:
        inbox = self._inbox()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def on_reply(msg: Any) -> None:
            queue.put_nowait(msg)

        # Replies can be large: let the subscription hold a whole round (§2: 128 MiB).
        subscription = await self.nc.subscribe(
            inbox, cb=on_reply, pending_msgs_limit=100_000, pending_bytes_limit=512 * 1024 * 1024
        )
        seen: set[str] = set()
        stores: list[asyncio.Task[None]] = []
        replied = result.replied.setdefault(day, [])
        try:
            await self.nc.publish(SUBJECT_USAGE_REQUEST, UsageRequest.for_day(day).to_json(), reply=inbox)
            await self.nc.flush()
            deadline = asyncio.get_running_loop().time() + self.reply_timeout
            while expected is None or len(seen) < expected:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    msg = await asyncio.wait_for(queue.get(), timeout=remaining)
                except TimeoutError:
                    break
                subject, holder = msg.subject, [msg.data]
                del msg
                # Parse at most one reply ahead of the writer: memory stays bounded.
                while len([t for t in stores if not t.done()]) > 1:
                    await asyncio.wait(stores, return_when=asyncio.FIRST_COMPLETED)
                digest = await self._digest(subject, holder, result)
                if digest is None:
                    continue
                if digest.node_id in seen:
                    # The first reply of a node wins (§9.3).
                    self.counters.reject("duplicate_reply", subject=inbox, detail=digest.node_id)
                    result.rejected["duplicate_reply"] += 1
                    continue
                seen.add(digest.node_id)
                replied.append(digest.node_id)
                stores.append(asyncio.create_task(self._store(digest, result)))
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            if stores:
                await asyncio.gather(*stores, return_exceptions=True)
        if expected is not None and len(seen) < expected:
            logger.warning(
                "event=usage_round_incomplete day=%s expected=%d replied=%d nodes=%s",
                day.isoformat(),
                expected,
                len(seen),
                ",".join(sorted(seen)),
            )

    async def handle_unsolicited(self, subject: str, data: bytes) -> UsageRoundResult:
        """`dns.usage.usageData`: a reply nobody asked for, stored all the same (§9.6)."""
        result = UsageRoundResult()
        digest = await self._digest(subject, [data], result)
        if digest is not None:
            await self._store(digest, result)
        return result

    async def _digest(self, subject: str, holder: list[bytes], result: UsageRoundResult) -> ReplyDigest | None:
        self.counters.message(subject)
        size = len(holder[0])
        if size > self.max_reply_bytes:
            holder.clear()
            self.counters.reject("oversized", subject=subject, detail=f"{size} bytes")
            result.rejected["oversized"] += 1
            return None
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            digest: ReplyDigest = await loop.run_in_executor(self.parse_thread, self.normaliser.digest, holder)
        except ProtocolError as exc:
            self.counters.reject(exc.reason, subject=subject, detail=str(exc))
            result.rejected[exc.reason] += 1
            return None
        logger.info(
            "event=usage_reply_parsed node_id=%s bytes=%d records=%d seconds=%.3f",
            digest.node_id,
            size,
            digest.records,
            time.perf_counter() - started,
        )
        if not digest.node_id:
            # Rows without a node would mix with the reference's summed `node_id=''` rows.
            self.counters.reject("no_node_id", subject=subject)
            result.rejected["no_node_id"] += 1
            return None
        if self.on_reply_heard is not None:
            self.on_reply_heard(digest.node_id)
        if digest.error:
            self.counters.reject("node_error", subject=subject, detail=f"{digest.node_id}: {digest.error}")
            result.rejected["node_error"] += 1
            result.node_errors[digest.node_id] = digest.error
        for reason, count in digest.rejected.items():
            self.counters.reject(reason, subject=subject, detail=f"{digest.node_id}: {count} records", amount=count)
            result.rejected[reason] += count
        if digest.float_hits:
            logger.info("event=usage_float_hits node_id=%s count=%d", digest.node_id, digest.float_hits)
        return digest

    async def _store(self, digest: ReplyDigest, result: UsageRoundResult) -> None:
        started = time.perf_counter()
        try:
            stored: UsageStoreResult = await self.db.run(
                usage_reply_store, node_id=digest.node_id[: _WIDTH["node_id"]], rows=digest.rows, cache=self.cache
            )
        except Exception as exc:
            logger.exception("event=usage_store_failed node_id=%s rows=%d", digest.node_id, len(digest.rows))
            self.counters.reject("db_error", detail=f"{digest.node_id}: {exc}")
            result.rejected["db_error"] += 1
            return
        logger.info(
            "event=usage_reply_stored node_id=%s rows_written=%d rows_unchanged=%d seconds=%.3f",
            digest.node_id,
            stored.rows_written,
            stored.rows_unchanged,
            time.perf_counter() - started,
        )
        result.stored.add(stored)
        self.counters.rows_written("requests", stored.rows_written)
        self.counters.rows_written("requests_unchanged", stored.rows_unchanged)
        if self.on_stored is not None:
            pending = self.on_stored(stored)
            if pending is not None:
                await pending


def round_days(now: datetime) -> tuple[date, date]:
    """Today and yesterday (UTC): yesterday's last hour is only complete after midnight (DECISIONS 7)."""
    today = now.date()
    return today, today - timedelta(days=1)


async def usage_collect_days(
    *,
    servers: Sequence[str],
    node_id: str,
    days: Sequence[date],
    expected: int | None,
    user: str = "",
    password: str = "",
    reply_timeout: float = REPLY_TIMEOUT_SECONDS,
    max_reply_bytes: int = MAX_REPLY_BYTES,
    counters: ListenerCounters | None = None,
) -> UsageRoundResult:
    """A manual or backfill collection (`collect_usage`) on its own short-lived connection.

    Each day is its own request, as in the hourly round; days are asked a few at a time so
    that a month of backfill does not arrive all at once.
    """
    import nats

    nc = await nats.connect(
        servers=list(servers),
        user=user or None,
        password=password or None,
        no_echo=True,
        name=f"{node_id} collect_usage",
    )
    parse_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-parse")
    db = DbThread("usage-db")
    total = UsageRoundResult(days=tuple(days), expected=expected or 0)
    try:
        collector = UsageCollector(
            nc,
            node_id=node_id,
            counters=counters or ListenerCounters(),
            parse_thread=parse_thread,
            db=db,
            cache=UsageHitsCache(),
            reply_timeout=reply_timeout,
            max_reply_bytes=max_reply_bytes,
        )
        for start in range(0, len(days), 2):
            part = await collector.collect(days=days[start : start + 2], expected=expected)
            total.replied.update(part.replied)
            total.stored.add(part.stored)
            total.rejected.update(part.rejected)
            total.node_errors.update(part.node_errors)
            total.seconds += part.seconds
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()
        await asyncio.get_running_loop().run_in_executor(None, db.shutdown)
        parse_thread.shutdown(wait=True)
    return total
