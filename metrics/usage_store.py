"""Usage rows → `requests` (DECISIONS 6–8): one node's reply at a time, writing only what changed.

A node's reply holds its day totals. A new value *replaces* `hits` (never adds), and a row
whose hits did not change is not written at all: in an hourly round most rows are
unchanged, so the write cost follows what changed, not the size of the reply.

`UsageHitsCache` remembers, per (date, node), what the table holds: key → (row id, hits).
It is loaded from the table the first time a process touches that (date, node), so a fresh
process skips unchanged rows too.

How a changed row is written, and why:

- A key the table does not hold yet: multi-row `INSERT … ON DUPLICATE KEY UPDATE` on the
  nine-column key (`ON CONFLICT` on SQLite). On MariaDB the statement also returns each
  row's id (`RETURNING`), so that the next change of that row can take the fast path.
- A row whose id is known (MySQL/MariaDB): its (id, hits) pair goes into a small temporary
  MEMORY table and one `UPDATE … JOIN` sets the hits by primary key. An upsert on the
  nine-column key costs InnoDB an insert attempt and its rollback for every row that already
  exists; measured on MariaDB 10.11 with 500,000 rows, updating 50,000 of them ran at about
  10,000 rows/s that way and about 45,000 rows/s by id (`make bench BENCH=bench_ingest`).
  The UPDATE is limited to the (date, node) being written and its matched-row count is
  checked: a row that vanished or moved is written again by its key, so a stale id can
  never touch another row's hits.
- SQLite (the embedded default) upserts every changed row by its key.

Ids are never reused for another key: the collator never changes a row's key columns, and
AUTO_INCREMENT is persistent on MariaDB ≥ 10.2.4 and MySQL 8.

A database adopted from the Go collator holds its rows with `node_id = ''`, already summed
over nodes (nats-protocol §9.7). The first per-node rows stored for a date supersede them:
each node reports its whole day, so for that date Go's rows are moved, unchanged, to
`requests_adopt_rejects` instead of being counted a second time (the switch-over day).
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.db import connection, transaction

logger = logging.getLogger("metrics.usage_store")

USAGE_COLUMNS = (
    "date",
    "node_id",
    "domain_name",
    "member_name",
    "network_asn",
    "network_name",
    "country_code",
    "country_name",
    "is_ipv6",
    "hits",
)
USAGE_KEY_COLUMNS = USAGE_COLUMNS[:-1]
# Rows per INSERT statement. mysqlclient's executemany caps a statement at 64 KB (≈400
# rows); larger statements cost fewer round trips and parses.
USAGE_ROWS_PER_STATEMENT = 2000
# (id, hits) pairs per UPDATE … JOIN: 16 bytes a row, far below max_heap_table_size.
USAGE_UPDATES_PER_STATEMENT = 10_000

_HITS_MASK = (1 << 32) - 1  # hits is INT UNSIGNED
_UPDATE_TABLE = "usage_hits_by_id"


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join(connection.ops.quote_name(c) for c in columns)


def _usage_statement(rows: int, *, returning: bool = False) -> str:
    columns = _quoted(USAGE_COLUMNS)
    values = ", ".join(["(" + ", ".join(["%s"] * len(USAGE_COLUMNS)) + ")"] * rows)
    if connection.vendor == "mysql":
        statement = (
            f"INSERT INTO `requests` ({columns}) VALUES {values} ON DUPLICATE KEY UPDATE `hits` = VALUES(`hits`)"
        )
        return statement + (" RETURNING `id`, `hits`" if returning else "")
    key = ", ".join(USAGE_KEY_COLUMNS)
    return f"INSERT INTO requests ({columns}) VALUES {values} ON CONFLICT ({key}) DO UPDATE SET hits = excluded.hits"


def _returns_ids() -> bool:
    # MariaDB 10.5+ returns a multi-row INSERT's rows in the order of its VALUES. SQLite's
    # RETURNING order is arbitrary, and MySQL has none: there, ids stay unknown.
    return connection.vendor == "mysql" and bool(connection.features.can_return_columns_from_insert)


_GO_ROWS_REASON = "superseded by per-node rows"


def _go_rows_supersede(day: date) -> int:
    """Move `day`'s Go rows (`node_id = ''`) to `requests_adopt_rejects`; returns how many."""
    if connection.vendor != "mysql" or "requests_adopt_rejects" not in connection.introspection.table_names():
        return 0  # only an adopted database has them
    columns = _quoted(("id", *USAGE_COLUMNS))
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM `requests` WHERE `date` = %s AND `node_id` = ''", [day])
        (count,) = cursor.fetchone()
        if count:
            cursor.execute(
                f"INSERT INTO `requests_adopt_rejects` ({columns}, `reason`) SELECT {columns}, %s FROM `requests` "
                "WHERE `date` = %s AND `node_id` = ''",
                [_GO_ROWS_REASON, day],
            )
            cursor.execute("DELETE FROM `requests` WHERE `date` = %s AND `node_id` = ''", [day])
            logger.info("event=usage_go_rows_superseded date=%s rows=%d", day.isoformat(), count)
    return int(count)


def usage_upsert_batch(*, rows: Sequence[Sequence[Any]], rows_per_statement: int = USAGE_ROWS_PER_STATEMENT) -> int:
    """Upsert usage rows (USAGE_COLUMNS order); a new value REPLACES hits, never adds.

    Multi-row INSERT … ON DUPLICATE KEY UPDATE on MySQL, INSERT … ON CONFLICT on SQLite,
    one transaction for the lot. Returns the number of rows sent.
    """
    with transaction.atomic():
        _upsert(rows, rows_per_statement=rows_per_statement, returning=False)
    return len(rows)


def _upsert(
    rows: Sequence[Sequence[Any]], *, rows_per_statement: int = USAGE_ROWS_PER_STATEMENT, returning: bool
) -> list[int] | None:
    """Upsert `rows` by their key; with `returning`, the row ids in the order of `rows`
    (None when the server's answer does not line up with what was sent)."""
    if connection.vendor == "sqlite":
        # SQLite allows 32766 bound variables per statement.
        rows_per_statement = min(rows_per_statement, 32766 // len(USAGE_COLUMNS))
    ids: list[int] | None = [] if returning else None
    with connection.cursor() as cursor:
        full_statement = _usage_statement(rows_per_statement, returning=returning)
        for start in range(0, len(rows), rows_per_statement):
            chunk = rows[start : start + rows_per_statement]
            statement = (
                full_statement
                if len(chunk) == rows_per_statement
                else _usage_statement(len(chunk), returning=returning)
            )
            cursor.execute(statement, [value for row in chunk for value in row])
            if ids is not None:
                answered = cursor.fetchall()
                # Each returned row must be the row sent at its place: same count, same hits.
                if len(answered) == len(chunk) and all(a[1] == r[-1] for a, r in zip(answered, chunk, strict=True)):
                    ids.extend(int(a[0]) for a in answered)
                else:
                    logger.warning("event=usage_returning_mismatch sent=%d answered=%d", len(chunk), len(answered))
                    ids = None
    return ids


def _update_by_id(*, day: date, node_id: str, pairs: Sequence[tuple[int, int]]) -> int:
    """Set hits by primary key for (id, hits) pairs of one (date, node); returns rows matched."""
    matched = 0
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        # Temporary tables belong to the connection; a reconnect simply makes it again.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote(_UPDATE_TABLE)} "
            "(`id` INT UNSIGNED NOT NULL PRIMARY KEY, `hits` INT UNSIGNED NOT NULL) ENGINE=MEMORY"
        )
        for start in range(0, len(pairs), USAGE_UPDATES_PER_STATEMENT):
            chunk = pairs[start : start + USAGE_UPDATES_PER_STATEMENT]
            cursor.execute(f"DELETE FROM {quote(_UPDATE_TABLE)}")
            cursor.execute(
                f"INSERT INTO {quote(_UPDATE_TABLE)} (`id`, `hits`) VALUES " + ", ".join(["(%s, %s)"] * len(chunk)),
                [value for pair in chunk for value in pair],
            )
            # Django connects with CLIENT_FOUND_ROWS: rowcount is the rows matched, also
            # those whose hits already had the new value.
            cursor.execute(
                f"UPDATE `requests` r JOIN {quote(_UPDATE_TABLE)} u ON r.`id` = u.`id` SET r.`hits` = u.`hits` "
                "WHERE r.`date` = %s AND r.`node_id` = %s",
                [day, node_id],
            )
            matched += cursor.rowcount
        cursor.execute(f"DELETE FROM {quote(_UPDATE_TABLE)}")
    return matched


class ValueTable:
    """One copy of each key part value (dates, domains, member names, ASNs …), by index.

    A normaliser shares one table across the replies it reads: the values repeat across
    nodes, so a row refers to them by small integers instead of holding its own tuple.
    """

    __slots__ = ("_index", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._index: dict[Any, int] = {}

    def index(self, value: Any) -> int:
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.values)
            self.values.append(value)
        return found

    def __len__(self) -> int:
        return len(self.values)


_PARTS = len(USAGE_KEY_COLUMNS) - 1  # a key without node_id: date, domain … is_ipv6


class UsageRows:
    """One node's reply, normalised, in compact columns: what `usage_reply_store` writes.

    Per row: its key (USAGE_KEY_COLUMNS without node_id) as indexes into a ValueTable, the
    hash of (node_id, *key), the unsigned hash of the record's raw JSON (0 when the row sums
    several records, or came without raw JSON) and its hits. 125,000 rows take about 6 MB; as a dict
    of key tuples they took 19 MB, and a large round holds every reply until it is written.

    `skipped` counts records that were not decoded at all because their raw JSON was
    byte-identical to what the cache says the table holds for that key (`basis` is the
    cache entry's version they were compared with); they are unchanged rows.
    """

    __slots__ = ("_by_key", "basis", "hits", "key_hashes", "node_id", "parts", "raw_hashes", "skipped", "table")

    def __init__(
        self,
        node_id: str,
        table: ValueTable | None = None,
        *,
        parts: array[int] | None = None,
        key_hashes: array[int] | None = None,
        raw_hashes: array[int] | None = None,
        hits: array[int] | None = None,
    ) -> None:
        """Empty rows to `add` to, or the columns a caller built itself (then finished)."""
        self.node_id = node_id
        self.table = table if table is not None else ValueTable()
        self.parts = parts if parts is not None else array("I")
        self.key_hashes = key_hashes if key_hashes is not None else array("q")
        self.raw_hashes = raw_hashes if raw_hashes is not None else array("Q")  # unsigned 64-bit
        self.hits = hits if hits is not None else array("I")  # INT UNSIGNED
        self.skipped = 0
        self.basis: tuple[date, int] | None = None
        self._by_key: dict[int, int] | None = {} if hits is None else None

    @classmethod
    def of(cls, node_id: str, rows: Mapping[tuple[Any, ...], int]) -> UsageRows:
        """From a mapping of key → hits (tests, and callers with few rows)."""
        made = cls(node_id)
        for key, hits in rows.items():
            made.add(key, hits)
        made.finish()
        return made

    def add(self, key: tuple[Any, ...], hits: int, raw_hash: int = 0) -> bool:
        """Add a row by its key; a key already present gets the hits added (capped).
        True if it was."""
        index = self.table.index
        return self.append(tuple(index(part) for part in key), hash((self.node_id, *key)), raw_hash, hits)

    def append(self, parts: tuple[int, ...], key_hash: int, raw_hash: int, hits: int) -> bool:
        """`add` for a caller that has the table indexes and the key's hash already."""
        assert self._by_key is not None, "finish() was called"
        at = self._by_key.get(key_hash)
        if at is not None:
            # Two wire keys that differ only in spelling (`Rpc.X.` and `rpc.x`) are two of the
            # node's counters for one key: their day totals add up.
            self.hits[at] = min(self.hits[at] + hits, _HITS_MASK)
            self.raw_hashes[at] = 0
            return True
        self._by_key[key_hash] = len(self.hits)
        self.parts.extend(parts)
        self.key_hashes.append(key_hash)
        self.raw_hashes.append(raw_hash)
        self.hits.append(hits)
        return False

    def finish(self) -> None:
        """No more rows: drop the index that found repeated keys."""
        self._by_key = None

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def received(self) -> int:
        return len(self.hits) + self.skipped

    def key(self, row: int) -> tuple[Any, ...]:
        values = self.table.values
        return tuple(values[part] for part in self.parts[row * _PARTS : (row + 1) * _PARTS])

    def day(self, row: int) -> date:
        day: date = self.table.values[self.parts[row * _PARTS]]
        return day

    def days(self) -> list[date]:
        values, parts = self.table.values, self.parts
        return sorted({values[parts[row * _PARTS]] for row in range(len(self.hits))})


class StoredDay:
    """What the table holds for one (date, node), as three arrays sorted by key hash.

    Per row: hash((node_id, *key)), the unsigned 64-bit hash of the raw JSON record the row
    came from (0 when unknown), and id << 32 | hits (id 0 when unknown). 24 bytes a row:
    a dict of Python ints took about 110, and the listener keeps today and yesterday of
    every node. Writers change rows in place and add new ones with `add`; readers on
    another thread only ever see whole arrays.
    """

    __slots__ = ("keys", "raws", "rows")

    def __init__(self, rows: list[tuple[int, int, int]] | None = None) -> None:
        ordered = sorted(rows or ())
        self.keys = array("q", [row[0] for row in ordered])
        self.raws = array("Q", [row[1] for row in ordered])
        self.rows = array("Q", [row[2] for row in ordered])

    def find(self, key_hash: int) -> int:
        """The row's index, or -1."""
        at = bisect_left(self.keys, key_hash)
        return at if at < len(self.keys) and self.keys[at] == key_hash else -1

    def add(self, keys: array[int], raws: array[int], rows: array[int]) -> None:
        """Add new rows (key hashes, raw hashes, id << 32 | hits), keeping the order."""
        if keys:
            all_keys, all_raws, all_rows = self.keys + keys, self.raws + raws, self.rows + rows
            order = sorted(range(len(all_keys)), key=all_keys.__getitem__)
            # Swapped in whole: a reader on another thread sees the old arrays or the new.
            self.keys = array("q", [all_keys[at] for at in order])
            self.raws = array("Q", [all_raws[at] for at in order])
            self.rows = array("Q", [all_rows[at] for at in order])

    def __len__(self) -> int:
        return len(self.keys)


class UsageHitsCache:
    """What `requests` holds, per (date, node): a StoredDay.

    500,000 rows take about 12 MB. A (date, node) is loaded from the table the first time a
    process writes to it. A false "unchanged" would need a 64-bit hash collision between two
    keys of one node and day; a failed write forgets the (date, node), which is then loaded
    again.

    Each entry has a version, bumped by every write to it. A reader on another thread
    (the collector's parse thread) may `peek` an entry to skip records that are unchanged;
    the store then checks that the entry's version is still the one they were compared with.
    """

    def __init__(self, *, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._days: dict[tuple[date, str], StoredDay] = {}
        self._versions: dict[tuple[date, str], int] = {}
        self._busy: set[tuple[date, str]] = set()
        self._next_version = 1
        # Dates whose Go rows were already looked for by this process.
        self.go_rows_checked: set[date] = set()

    def rows(self, day: date, node_id: str) -> StoredDay:
        """The (date, node)'s entry, loaded from the table when the process has none; the
        caller updates it in place as it writes, between `begin` and `end`."""
        key = (day, node_id)
        known = self._days.get(key)
        if known is None:
            known = _table_rows(day=day, node_id=node_id)
            self._days[key] = known
            self._versions[key] = self._bump()
            # The hourly round touches today and yesterday; old days leave first.
            while len(self._days) > self.max_entries:
                oldest = min(self._days, key=lambda k: k[0])
                del self._days[oldest]
                self._versions.pop(oldest, None)
        return known

    def peek(self, day: date, node_id: str) -> tuple[StoredDay, int] | None:
        """The entry and its version, if loaded and not being written; never loads."""
        key = (day, node_id)
        if key in self._busy:
            return None
        known, version = self._days.get(key), self._versions.get(key)
        return None if known is None or version is None else (known, version)

    def version(self, day: date, node_id: str) -> int | None:
        return self._versions.get((day, node_id))

    def begin(self, day: date, node_id: str) -> None:
        self._busy.add((day, node_id))

    def end(self, day: date, node_id: str) -> None:
        key = (day, node_id)
        if key in self._versions:
            self._versions[key] = self._bump()
        self._busy.discard(key)

    def forget(self, day: date, node_id: str) -> None:
        self._days.pop((day, node_id), None)
        self._versions.pop((day, node_id), None)

    def _bump(self) -> int:
        self._next_version += 1
        return self._next_version


def _table_rows(*, day: date, node_id: str) -> StoredDay:
    key_columns = _quoted(USAGE_KEY_COLUMNS[2:])
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('id')}, {key_columns}, {quote('hits')} FROM {quote('requests')} "
            f"WHERE {quote('date')} = %s AND {quote('node_id')} = %s",
            [day, node_id],
        )
        # The raw JSON a row came from is not known after a restart: its first reply is
        # decoded in full, and from then on unchanged records can be skipped.
        return StoredDay(
            [(hash((node_id, day, *row[1:-1])), 0, (int(row[0]) << 32) | int(row[-1])) for row in cursor.fetchall()]
        )


@dataclass
class UsageStoreResult:
    """What one store call did. `dates` (the days whose rows changed) is what a rollup
    refresh needs; `nodes` the nodes whose replies were stored, changed or not."""

    dates: set[date] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    rows_received: int = 0
    rows_written: int = 0
    rows_unchanged: int = 0

    def add(self, other: UsageStoreResult) -> None:
        self.dates |= other.dates
        self.nodes |= other.nodes
        self.rows_received += other.rows_received
        self.rows_written += other.rows_written
        self.rows_unchanged += other.rows_unchanged


def usage_reply_store(
    *, node_id: str, rows: UsageRows | Mapping[tuple[Any, ...], int], cache: UsageHitsCache | None = None
) -> UsageStoreResult:
    """Store one node's reply. Rows whose hits are unchanged are not written.

    `rows` is a UsageRows, or a mapping of normalised key (USAGE_KEY_COLUMNS without
    node_id) → day total. Each (date, node) is written in one transaction. Returns the dates
    and node touched (for `metrics.rollups.usage_rollups_refresh`).
    """
    if not isinstance(rows, UsageRows):
        rows = UsageRows.of(node_id, rows)
    result = UsageStoreResult(rows_received=rows.received, rows_unchanged=rows.skipped)
    if rows.basis is not None:
        assert cache is not None, "skipped rows need the cache they were compared with"
        day, version = rows.basis
        if cache.version(day, node_id) != version:
            # Written (or reloaded) since the skipped records were compared with it. Day
            # totals only grow, so what they said is still stored; but to be sure, the
            # (date, node) is read from the table again and the next reply decoded in full.
            logger.warning("event=usage_skip_stale date=%s node_id=%s skipped=%d", day, node_id, rows.skipped)
            cache.forget(day, node_id)
    if not len(rows):
        result.nodes.add(node_id)
        return result
    days = rows.days()
    by_day = _row_numbers_by_day(rows, days)
    for day in days:
        known = cache.rows(day, node_id) if cache is not None else StoredDay()
        if cache is not None:
            cache.begin(day, node_id)
        check_go_rows = cache is None or day not in cache.go_rows_checked
        try:
            written, unchanged, stale, moved = _store_day(
                day=day, rows=rows, numbers=by_day[day], known=known, go_rows=check_go_rows
            )
        except Exception:
            # `known` may hold what the rolled-back transaction did not write.
            if cache is not None:
                cache.forget(day, node_id)
                cache.end(day, node_id)
            raise
        if cache is not None:
            cache.go_rows_checked.add(day)
            if stale:
                cache.forget(day, node_id)
            cache.end(day, node_id)
        result.rows_written += written
        result.rows_unchanged += unchanged
        if written or moved:
            result.dates.add(day)
    result.nodes.add(node_id)
    return result


def _row_numbers_by_day(rows: UsageRows, days: list[date]) -> dict[date, range | list[int]]:
    if len(days) <= 1:
        return {day: range(len(rows)) for day in days}
    numbers: dict[date, list[int]] = {day: [] for day in days}
    for row in range(len(rows)):
        numbers[rows.day(row)].append(row)
    return dict(numbers)


def _store_day(
    *, day: date, rows: UsageRows, numbers: range | list[int], known: StoredDay, go_rows: bool
) -> tuple[int, int, bool, int]:
    """Write one (date, node)'s changed rows in one transaction: (written, unchanged, stale,
    Go rows moved aside)."""
    node_id = rows.node_id
    by_id = connection.vendor == "mysql"
    returning = _returns_ids()
    inserts: list[tuple[Any, ...]] = []
    insert_at: list[tuple[int, int]] = []  # (row, index in `known` or -1)
    added_keys, added_raws, added_rows = array("q"), array("Q"), array("Q")
    updates: list[tuple[int, int]] = []
    update_rows: list[tuple[Any, ...]] = []
    written = unchanged = 0
    key_hashes, raw_hashes, all_hits = rows.key_hashes, rows.raw_hashes, rows.hits
    find, known_raws, known_rows = known.find, known.raws, known.rows

    def flush_inserts() -> None:
        ids = _upsert(inserts, returning=returning)
        for number, (row, at) in enumerate(insert_at):
            packed = ((ids[number] if ids is not None else 0) << 32) | all_hits[row]
            if at < 0:
                added_keys.append(key_hashes[row])
                added_raws.append(raw_hashes[row])
                added_rows.append(packed)
            else:
                known_rows[at], known_raws[at] = packed, raw_hashes[row]
        inserts.clear()
        insert_at.clear()

    with transaction.atomic():
        moved = _go_rows_supersede(day) if go_rows else 0
        for row in numbers:
            hits = all_hits[row]
            at = find(key_hashes[row])
            if at >= 0:
                packed = known_rows[at]
                if packed & _HITS_MASK == hits:
                    unchanged += 1
                    # Same total, perhaps from a record spelled differently: remember it.
                    known_raws[at] = raw_hashes[row]
                    continue
                row_id = packed >> 32 if by_id else 0
                if row_id:
                    written += 1
                    updates.append((row_id, hits))
                    update_rows.append((day, node_id, *rows.key(row)[1:], hits))
                    known_rows[at], known_raws[at] = (row_id << 32) | hits, raw_hashes[row]
                    continue
            written += 1
            inserts.append((day, node_id, *rows.key(row)[1:], hits))
            insert_at.append((row, at))
            # Sent as the rows come, so that a large reply is never held twice.
            if len(inserts) >= USAGE_ROWS_PER_STATEMENT:
                flush_inserts()
        if inserts:
            flush_inserts()
        stale = bool(updates) and _update_by_id(day=day, node_id=node_id, pairs=updates) != len(updates)
        if stale:
            # Some rows went away behind the cache: write them all by their key, which is
            # always right, and read the (date, node) from the table next time.
            logger.warning("event=usage_cache_stale date=%s node_id=%s rows=%d", day.isoformat(), node_id, len(updates))
            _upsert(update_rows, returning=False)
    known.add(added_keys, added_raws, added_rows)
    return written, unchanged, stale, moved
