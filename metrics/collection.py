"""Hourly DNS usage collection (nats-protocol §9, DECISIONS 6–8).

One round asks for each day (today and yesterday) with its own request on its own private
inbox, and takes the first reply of each distinct node that arrives before the expected
number of nodes answered or 20 s passed. Each reply is decoded and normalised on a parse
thread as soon as it arrives, while earlier ones are written on the DB thread, so a large
round costs about the larger of the two, not their sum. Rows are stored per responding
node; unchanged rows are not written (metrics/usage_store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import close_old_connections, connections

from metrics.nats_counters import ListenerCounters
from metrics.protocol import (
    HITS_MAX,
    SUBJECT_USAGE_REQUEST,
    ProtocolError,
    UsageRecords,
    UsageReply,
    UsageRequest,
    parse_usage_date,
    usage_reply_fold,
)
from metrics.services import domain_normalise
from metrics.usage_store import StoredDay, UsageHitsCache, UsageRows, UsageStoreResult, ValueTable, usage_reply_store

logger = logging.getLogger("metrics.collection")

REPLY_TIMEOUT_SECONDS = 20.0
MAX_REPLY_BYTES = 1024 * 1024  # NATS's default max_payload: a node cannot send more

# Column widths of `requests` (characters). A longer key part is refused with its record,
# not cut: two values that differ only after the cut would add up into one row.
_WIDTH = {"node_id": 64, "domain": 128, "member": 128, "asn": 32, "network": 96, "code": 2, "country": 64}
_ASN = re.compile(r"(?i)(?:as)?\s*(\d+)", re.ASCII)  # 0-9 only: int() also reads other scripts' digits
_RAW_MASK = (1 << 64) - 1  # raw-JSON hashes are kept unsigned, as the cache packs them
# The reason a record is refused, by the column (1 domain … 6 country name) whose value does not fit.
_PART_REJECTS = (
    "",
    "domain_too_long",
    "member_name_too_long",
    "asn_too_long",
    "network_name_too_long",
    "invalid_country_code",
    "country_name_too_long",
)
# Country codes that mean "unknown": `??` as the DNS nodes send it (nats-protocol §5.6, and
# the simulator), '' from a record without one (Go's zero value). Both are stored as sent.
_UNKNOWN_COUNTRY_CODES = frozenset({"", "??"})


def utc_now() -> datetime:
    return datetime.now(UTC)


def asn_normalise(text: str) -> str:
    """`as3320`, `3320`, ` AS 3320 ` → `AS3320`; empty stays ''; anything else is kept, trimmed."""
    value = text.strip()
    match = _ASN.fullmatch(value)
    return f"AS{int(match.group(1))}" if match else value


def country_code_normalise(text: str) -> str | None:
    """`de` → `DE`; `??` and '' (unknown) are kept; None for anything else (`AUT`, `D`, `1A`).

    ISO 3166 alpha-2 is two ASCII letters. Cutting `AUT` (Austria) to `AU` would file its
    hits under Australia, so a code that is not one is refused, not mended. ASCII is checked
    before upper-casing: `ß` upper-cases to `SS`.
    """
    code = text.strip()
    if not code.isascii():
        return None
    code = code.upper()
    if (len(code) == 2 and code.isalpha()) or code in _UNKNOWN_COUNTRY_CODES:
        return code
    return None


def latest_usage_date(now: datetime) -> date:
    """The last day a usage record may be dated: tomorrow, in UTC.

    A node writes the day as its own clock (and zone) has it. The zones run to UTC+14, so
    a node can be up to one day ahead of UTC, never two: a later date is a broken clock
    or a forged record, and stored it would be the "latest usage" for years.
    """
    return now.astimezone(UTC).date() + timedelta(days=1)


@functools.lru_cache(maxsize=1024)
def _date_reject(text: str) -> str:
    """Why a date column value was refused (only asked for refused ones)."""
    try:
        parse_usage_date(text)
    except ProtocolError:
        return "invalid_date"
    return "date_in_future"


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
    """One node's reply, decoded and normalised into compact rows (key → day total)."""

    node_id: str
    error: str
    rows: UsageRows
    records: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    duplicates_summed: int = 0
    float_hits: int = 0


class _SkipMiss(Exception):
    """A record skipped as unchanged shares its key with a decoded one: fold it again in full."""


_Part = tuple[Any, int]  # a normalised key part and its index in the ValueTable
_COLUMN_WIDTHS = ("", "domain", "member", "asn", "network", "code", "country")  # _WIDTH key by column


class UsageNormaliser:
    """Wire records → `requests` keys (DECISIONS 8), as compact UsageRows.

    Memoised per column: a wire value (a domain as the node spelled it, an ASN, a country
    code …) maps to its normalised value and that value's index in the ValueTable the rows
    refer to, so each record costs one look-up per column.

    A reply to a round's request is compared with what the cache says the table holds for
    that node and day: a record whose raw JSON is byte-identical to the one a stored row
    came from is counted as unchanged without being decoded. In an hourly round most
    records are unchanged, so this is most of the parse work saved. Two records for one key
    (one of them skipped) make the reply fold again in full, so their totals still add up.
    """

    _MEMO_MAX = 200_000

    def __init__(self, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._latest_day = date.min
        self._new_table()

    def _new_table(self) -> None:
        # Rows already made keep the table they refer to.
        self._table = ValueTable()
        self._memos: list[dict[Any, _Part | None]] = [{} for _ in range(7)]
        self._ipv6 = (self._table.index(0), self._table.index(1))

    def digest(
        self, holder: list[bytes], *, day: date | None = None, cache: UsageHitsCache | None = None
    ) -> ReplyDigest:
        """Decode and normalise one reply. `holder` hands the raw bytes over, so that they
        are freed as soon as this reply is done (a benchmark reply is 26 MB). With the
        requested `day` and the store's `cache`, unchanged records are skipped."""
        data = holder.pop()
        if len(self._table) > self._MEMO_MAX:
            self._new_table()
        latest_day = latest_usage_date(self._clock())
        if latest_day != self._latest_day:
            # Memoised dates were judged against the old bound: a day refused as in the
            # future yesterday may be today's.
            self._latest_day = latest_day
            self._memos[0].clear()
        try:
            return usage_reply_fold(data, lambda reply, records: self._fold(reply, records, day, cache))
        except _SkipMiss:
            return usage_reply_fold(data, lambda reply, records: self._fold(reply, records, None, None))

    def _part(self, column: int, text: Any) -> _Part | None:
        """Normalise a wire value of `column` (0 date … 6 country); None: refused.

        Why a value was refused is worked out again only for refused records
        (`_date_reject`, `_PART_REJECTS`), so accepted ones pay nothing for it.
        """
        value: Any
        if column == 0:
            try:
                value = parse_usage_date(text)
            except ProtocolError:
                value = None
            if value is not None and value > self._latest_day:
                value = None
        elif column == 1:
            value = domain_normalise(text)
        elif column == 3:
            value = asn_normalise(text)
        elif column == 5:
            value = country_code_normalise(text)
        else:
            value = text
        if column and value is not None and len(value) > _WIDTH[_COLUMN_WIDTHS[column]]:
            value = None
        part = None if value is None else (value, self._table.index(value))
        memo = self._memos[column]
        if len(memo) < self._MEMO_MAX:
            memo[text] = part
        return part

    def _fold(
        self, reply: UsageReply, records: UsageRecords, day: date | None, cache: UsageHitsCache | None
    ) -> ReplyDigest:
        # Called again from the start if the decoder's fast path gives up part way.
        node_id = reply.node_id
        if len(node_id) > _WIDTH["node_id"]:
            # Every row of the reply would carry it: the reply is refused, not its records.
            raise ProtocolError("node_id_too_long", f"nodeID of {len(node_id)} characters: {node_id[:64]!r}")
        rejected: Counter[str] = Counter()
        raws = records.raws
        known: StoredDay | None = None
        skip: set[int] = set()
        basis: tuple[date, int] | None = None
        peeked = cache.peek(day, node_id) if cache is not None and day is not None and raws is not None else None
        if peeked is not None:
            known, version = peeked
            skip = set(known.raws)
            skip.discard(0)
            basis = (day, version)  # type: ignore[assignment]
        dates, domains, members, asns, networks, codes, countries = self._memos
        part = self._part
        ipv4_index, ipv6_index = self._ipv6
        # The rows' columns, built here: this loop runs for every record of every reply,
        # so look-ups and appends are bound to locals.
        parts, key_hashes, raw_hashes, all_hits = array("I"), array("q"), array("Q"), array("I")
        add_parts, add_key, add_raw, add_hits = parts.extend, key_hashes.append, raw_hashes.append, all_hits.append
        row_of_key: dict[int, int] = {}
        count = duplicates = skipped = 0
        source = records.raw_hashed(skip) if raws is not None else ((0, record) for record in records)
        for raw_hash, record in source:
            count += 1
            _, date_text, domain, member, code, asn, network, country, hits, is_ipv6 = record
            day_part = dates[date_text] if date_text in dates else part(0, date_text)
            if day_part is None:
                rejected[_date_reject(date_text)] += 1
                continue
            if hits < 0 or hits > HITS_MAX:
                rejected["hits_out_of_range"] += 1
                continue
            domain_part = domains.get(domain) or part(1, domain)
            member_part = members.get(member) or part(2, member)
            asn_part = asns.get(asn) or part(3, asn)
            network_part = networks.get(network) or part(4, network)
            code_part = codes.get(code) or part(5, code)
            country_part = countries.get(country) or part(6, country)
            if (
                domain_part is None
                or member_part is None
                or asn_part is None
                or network_part is None
                or code_part is None
                or country_part is None
            ):
                parts_of = (None, domain_part, member_part, asn_part, network_part, code_part, country_part)
                rejected[_PART_REJECTS[parts_of.index(None, 1)]] += 1
                continue
            key_hash = hash(
                (
                    node_id,
                    day_part[0],
                    domain_part[0],
                    member_part[0],
                    asn_part[0],
                    network_part[0],
                    code_part[0],
                    country_part[0],
                    1 if is_ipv6 else 0,
                )
            )
            at = row_of_key.get(key_hash)
            if at is not None:
                # Two wire keys that differ only in spelling (`Rpc.X.` and `rpc.x`) are two
                # of the node's counters for one key: their day totals add up.
                all_hits[at] = min(all_hits[at] + hits, HITS_MAX)
                raw_hashes[at] = 0
                duplicates += 1
                continue
            row_of_key[key_hash] = len(all_hits)
            add_parts(
                (
                    day_part[1],
                    domain_part[1],
                    member_part[1],
                    asn_part[1],
                    network_part[1],
                    code_part[1],
                    country_part[1],
                    ipv6_index if is_ipv6 else ipv4_index,
                )
            )
            add_key(key_hash)
            add_raw(raw_hash)
            add_hits(hits)
        del row_of_key
        if raws is not None:
            skipped = records.skipped
            count += skipped
        if known is not None and skipped:
            # A decoded row whose stored record was skipped here means two records for one
            # key in this reply: their totals must add up, so nothing may be skipped.
            raws_of = known.raws
            for key_hash in key_hashes:
                at = known.find(key_hash)
                if at >= 0 and raws_of[at] and raws_of[at] not in skip:
                    raise _SkipMiss
        rows = UsageRows(node_id, self._table, parts=parts, key_hashes=key_hashes, raw_hashes=raw_hashes, hits=all_hits)
        rows.skipped = skipped
        rows.basis = basis if skipped else None
        digest = ReplyDigest(node_id=reply.node_id, error=reply.error, rows=rows, rejected=rejected)
        digest.records = count
        digest.duplicates_summed = duplicates
        digest.float_hits = reply.float_hits
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
        clock: Callable[[], datetime] = utc_now,
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
        self.normaliser = UsageNormaliser(clock=clock)
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
        stored: list[UsageStoreResult] = []
        try:
            await asyncio.gather(*(self._collect_day(day, expected, result, stored) for day in days))
        finally:
            # `on_stored` (the listener's rollup refresh) runs once the round's writes are
            # done: a refresh recomputes whole days from `requests`, and run between the
            # replies of a round it would hold up the writes behind it on the DB thread.
            for one in stored:
                await self._stored(one)
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

    async def _collect_day(
        self, day: date, expected: int | None, result: UsageRoundResult, stored: list[UsageStoreResult]
    ) -> None:
        inbox = self._inbox()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()

        async def on_reply(msg: Any) -> None:
            queue.put_nowait((loop.time(), msg))

        # Replies can be large: let the subscription hold a whole round (§2: 128 MiB).
        subscription = await self.nc.subscribe(
            inbox, cb=on_reply, pending_msgs_limit=100_000, pending_bytes_limit=512 * 1024 * 1024
        )
        seen: set[str] = set()
        stores: list[asyncio.Task[None]] = []
        replied = result.replied.setdefault(day, [])
        deadline = loop.time() + self.reply_timeout
        try:
            await self.nc.publish(SUBJECT_USAGE_REQUEST, UsageRequest.for_day(day).to_json(), reply=inbox)
            await self.nc.flush()
            deadline = loop.time() + self.reply_timeout
            while expected is None or len(seen) < expected:
                remaining = deadline - loop.time()
                try:
                    if remaining > 0:
                        arrived, msg = await asyncio.wait_for(queue.get(), timeout=remaining)
                    else:
                        # Past the window, what arrived within it is still taken (§9.3).
                        arrived, msg = queue.get_nowait()
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                if arrived > deadline:
                    queue.put_nowait((arrived, msg))
                    break
                subject, holder = msg.subject, [msg.data]
                del msg
                # Each reply is parsed as soon as it is taken, while earlier ones are still
                # being written: a parsed reply is smaller than its JSON, so holding replies
                # parsed rather than raw is what keeps a large round's memory down.
                digest = await self._digest(subject, holder, result, day=day)
                if digest is None:
                    continue
                if digest.node_id in seen:
                    # The first reply of a node wins (§9.3).
                    self.counters.reject("duplicate_reply", subject=inbox, detail=digest.node_id)
                    result.rejected["duplicate_reply"] += 1
                    continue
                seen.add(digest.node_id)
                replied.append(digest.node_id)
                stores.append(asyncio.create_task(self._store(digest, result, stored)))
                del digest
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            if stores:
                await asyncio.gather(*stores, return_exceptions=True)
        # What is left was not taken: replies after the window (they belong to no round; the
        # node's next reply carries the day total again), or beyond the expected count.
        left: Counter[str] = Counter()
        while not queue.empty():
            arrived, _ = queue.get_nowait()
            left["late_reply" if arrived > deadline else "extra_reply"] += 1
        for reason, count in left.items():
            self.counters.reject(reason, subject=inbox, detail=f"{count} replies", amount=count)
            result.rejected[reason] += count
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
            stored: list[UsageStoreResult] = []
            await self._store(digest, result, stored)
            for one in stored:
                await self._stored(one)
        return result

    async def _digest(
        self, subject: str, holder: list[bytes], result: UsageRoundResult, *, day: date | None = None
    ) -> ReplyDigest | None:
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
            digest: ReplyDigest = await loop.run_in_executor(
                self.parse_thread, functools.partial(self.normaliser.digest, holder, day=day, cache=self.cache)
            )
        except ProtocolError as exc:
            self.counters.reject(exc.reason, subject=subject, detail=str(exc))
            result.rejected[exc.reason] += 1
            return None
        logger.info(
            "event=usage_reply_parsed node_id=%s bytes=%d records=%d skipped_unchanged=%d seconds=%.3f",
            digest.node_id,
            size,
            digest.records,
            digest.rows.skipped,
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

    async def _store(self, digest: ReplyDigest, result: UsageRoundResult, stored_list: list[UsageStoreResult]) -> None:
        started = time.perf_counter()
        try:
            stored: UsageStoreResult = await self.db.run(
                usage_reply_store, node_id=digest.node_id, rows=digest.rows, cache=self.cache
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
        stored_list.append(stored)

    async def _stored(self, stored: UsageStoreResult) -> None:
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
