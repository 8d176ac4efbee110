"""Writes of the NATS collator: outage rows, usage rows and the cluster node table.

- `downtime_finalize`: one finalize decision → `member_events`, by nats-protocol §8.6 with
  the DECISIONS 1 changes. It returns a `FinalizeOutcome` saying whether an outage really
  opened or closed, and which row, so that alerts fire only on real changes.
- `usage_upsert_batch` / `usage_reply_store`: per-node usage rows (DECISIONS 6–8), written
  in multi-row batches, skipping rows whose hits did not change.
- `cluster_node_heard` / `cluster_nodes_prune`: the persisted node table (§6).

Every DATETIME column holds whole seconds (the Go tables are DATETIME(0)), so times are
truncated here, before writing, and results do not depend on the database's rounding.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max

from metrics.models import (
    LEGACY_CHECK_TYPES,
    ClusterNode,
    FinalizeApplied,
    MemberEvent,
    PendingRecovery,
    check_type_forms,
)
from metrics.protocol import ROLE_DNS, ROLE_MONITOR, FinalizeMessage, NodeInfo, data_for_storage

logger = logging.getLogger("metrics.services")


def whole_seconds(moment: datetime) -> datetime:
    """UTC, fraction dropped: what a DATETIME(0) column can hold."""
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)


# --- identities and their normal forms (DECISIONS 3, 4, 8) -------------------------------

_PORT = re.compile(r":\d*$")


def domain_normalise(name: str) -> str:
    """`RPC.Dotters.Network.:443` → `rpc.dotters.network` (DECISIONS 8)."""
    host = name.strip().lower()
    if not host.startswith("["):
        host = _PORT.sub("", host)
    return host.rstrip(".")


def endpoint_normalise(url: str) -> str:
    """Trimmed, scheme and host lower-cased, no trailing `/` (DECISIONS 4); the path keeps its case."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text.rstrip("/")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}".rstrip("/")


class FinalizeRejected(ValueError):
    """A passed finalize whose proposal cannot name an outage (e.g. an unknown check type)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EventIdentity:
    """Identity K of nats-protocol §8.6, in the canonical stored form."""

    check_type: str  # '1' / '2' / '3'
    check_name: str
    endpoint: str
    domain_name: str
    member_name: str
    is_ipv6: int
    # Also matched when closing: the raw wire spellings, for rows other writers stored.
    endpoint_forms: tuple[str, ...] = ()
    domain_forms: tuple[str, ...] = ()

    @classmethod
    def from_finalize(cls, message: FinalizeMessage) -> EventIdentity:
        proposal = message.proposal
        check_type = LEGACY_CHECK_TYPES.get(proposal.check_type.strip().lower())
        if check_type is None:
            raise FinalizeRejected("unknown_check_type", f"unknown check type {proposal.check_type[:32]!r}")
        domain = domain_normalise(proposal.domain_name)
        if check_type == "3":
            endpoint = endpoint_normalise(proposal.endpoint) or domain
            raw_endpoint = proposal.endpoint
        elif check_type == "2":
            endpoint, raw_endpoint = domain, proposal.domain_name
        else:
            endpoint, raw_endpoint = "", ""
        return cls(
            check_type=check_type,
            check_name=proposal.check_name,
            endpoint=endpoint,
            domain_name=domain,
            member_name=proposal.member_name,
            is_ipv6=1 if proposal.is_ipv6 else 0,
            endpoint_forms=tuple(dict.fromkeys([endpoint, raw_endpoint])),
            domain_forms=tuple(dict.fromkeys([domain, proposal.domain_name])),
        )

    def columns(self) -> dict[str, Any]:
        return {
            "check_type": self.check_type,
            "check_name": self.check_name,
            "endpoint": self.endpoint,
            "domain_name": self.domain_name,
            "member_name": self.member_name,
            "is_ipv6": self.is_ipv6,
        }

    def match(self) -> dict[str, Any]:
        """ORM filter for every stored form of this identity (DECISIONS 3)."""
        return {
            "check_type__in": check_type_forms(self.check_type),
            "check_name": self.check_name,
            "endpoint__in": self.endpoint_forms or (self.endpoint,),
            "domain_name__in": self.domain_forms or (self.domain_name,),
            "member_name": self.member_name,
            "is_ipv6": self.is_ipv6,
        }


# --- finalize → member_events ------------------------------------------------------------


class FinalizeAction:
    IGNORED = "ignored"  # Passed = false
    DUPLICATE = "duplicate"  # this (proposal ID, status) was applied before
    OPENED = "opened"  # a new open outage row
    MERGED = "merged"  # offline while the identity is already open: votes merged
    STALE = "stale"  # offline not newer than a recovery that already closed a row
    RECORDED_CLOSED = "recorded_closed"  # offline after its online: a closed outage recorded
    CLOSED = "closed"  # online closed the open row(s)
    REMEMBERED = "remembered"  # online closed nothing; kept for a crossed offline


@dataclass(frozen=True)
class FinalizeOutcome:
    action: str
    identity: EventIdentity | None = None
    event_id: int | None = None  # the row opened, merged, closed or recorded
    closed_ids: tuple[int, ...] = ()

    @property
    def opened(self) -> bool:
        """An outage really opened: the moment for an OFFLINE alert."""
        return self.action == FinalizeAction.OPENED

    @property
    def closed(self) -> bool:
        """An open outage really closed: the moment for an ONLINE alert."""
        return self.action == FinalizeAction.CLOSED


def _pending_ttl() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "NATS_PENDING_ONLINE_SECONDS", 3600)))


def _merge_votes(existing: Any, votes: Mapping[str, bool] | None) -> dict[str, bool]:
    merged = dict(existing) if isinstance(existing, Mapping) else {}
    merged.update(votes or {})
    return {key: bool(merged[key]) for key in sorted(merged)}


def downtime_finalize(
    *, message: FinalizeMessage, now: datetime, votes: Mapping[str, bool] | None = None
) -> FinalizeOutcome:
    """Apply one finalize decision to `member_events` (nats-protocol §8.6, DECISIONS 1, 5).

    `votes` are the monitors' votes cached for this proposal (NodeID → agree). Idempotent per
    (proposal ID, status). Safe against a concurrent writer: the open-row unique key turns a
    racing insert into an IntegrityError, and the decision is then made again.
    """
    if not message.passed:
        return FinalizeOutcome(FinalizeAction.IGNORED)
    identity = EventIdentity.from_finalize(message)
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _finalize_locked(message=message, identity=identity, now=whole_seconds(now), votes=votes)
        except IntegrityError:
            if attempt == 2:
                raise
            logger.info("event=finalize_retry proposal_id=%s attempt=%d", message.proposal.id, attempt + 1)
    raise AssertionError("unreachable")


def _finalize_locked(
    *, message: FinalizeMessage, identity: EventIdentity, now: datetime, votes: Mapping[str, bool] | None
) -> FinalizeOutcome:
    proposal = message.proposal
    status = proposal.proposed_status
    decided = whole_seconds(message.decided_at.utc)
    open_rows = list(
        MemberEvent.objects.select_for_update()
        .filter(**identity.match(), end_time__isnull=True)
        .order_by("-start_time", "-id")
    )

    applied = FinalizeApplied.objects.filter(proposal_id=proposal.id, proposed_status=status).first()
    if applied is not None:
        # Another monitor's copy of a decision already applied; its votes may still be new.
        if not status and open_rows and open_rows[0].proposal_id == proposal.id:
            _merge_into(open_rows[0], votes)
        return FinalizeOutcome(FinalizeAction.DUPLICATE, identity, applied.event_id)

    if status:
        outcome = _apply_online(
            identity=identity, proposal_id=proposal.id, decided=decided, now=now, open_rows=open_rows
        )
    else:
        outcome = _apply_offline(
            message=message, identity=identity, decided=decided, now=now, open_rows=open_rows, votes=votes
        )
    FinalizeApplied.objects.create(
        proposal_id=proposal.id,
        proposed_status=status,
        outcome=outcome.action,
        event_id=outcome.event_id,
        decided_at=decided,
        applied_at=now,
    )
    return outcome


def _merge_into(row: MemberEvent, votes: Mapping[str, bool] | None) -> None:
    merged = _merge_votes(row.vote_data, votes)
    if merged != row.vote_data:
        MemberEvent.objects.filter(pk=row.pk).update(vote_data=merged)


def _apply_offline(
    *,
    message: FinalizeMessage,
    identity: EventIdentity,
    decided: datetime,
    now: datetime,
    open_rows: Sequence[MemberEvent],
    votes: Mapping[str, bool] | None,
) -> FinalizeOutcome:
    proposal = message.proposal
    if open_rows:
        # Already open, whatever the proposal ID: a re-decision of the same outage.
        _merge_into(open_rows[0], votes)
        return FinalizeOutcome(FinalizeAction.MERGED, identity, open_rows[0].pk)

    last_end = MemberEvent.objects.filter(**identity.match(), end_time__isnull=False).aggregate(last=Max("end_time"))[
        "last"
    ]
    if last_end is not None and decided <= last_end:
        return FinalizeOutcome(FinalizeAction.STALE, identity)

    row_values = {
        **identity.columns(),
        "start_time": decided,
        "error": proposal.error_text or None,
        "vote_data": _merge_votes(None, votes),
        "additional_data": data_for_storage(proposal.data) if proposal.data is not None else {},
        "proposal_id": proposal.id,
    }
    pending = (
        PendingRecovery.objects.select_for_update()
        .filter(**identity.columns(), decided_at__gte=decided, remembered_at__gte=now - _pending_ttl())
        .order_by("decided_at", "id")
        .first()
    )
    if pending is not None:
        # The recovery came first (messages crossed): the outage happened and is over.
        row = MemberEvent.objects.create(
            **row_values, status=1, end_time=max(pending.decided_at, decided), close_proposal_id=pending.proposal_id
        )
        pending.delete()
        return FinalizeOutcome(FinalizeAction.RECORDED_CLOSED, identity, row.pk)

    row = MemberEvent.objects.create(**row_values, status=0, end_time=None)
    return FinalizeOutcome(FinalizeAction.OPENED, identity, row.pk)


def _apply_online(
    *, identity: EventIdentity, proposal_id: str, decided: datetime, now: datetime, open_rows: Sequence[MemberEvent]
) -> FinalizeOutcome:
    if open_rows:
        for row in open_rows:
            # Monitor clocks differ a little: the end is never before the start.
            MemberEvent.objects.filter(pk=row.pk).update(
                end_time=max(decided, row.start_time), status=1, close_proposal_id=proposal_id
            )
        ids = tuple(row.pk for row in open_rows)
        return FinalizeOutcome(FinalizeAction.CLOSED, identity, ids[0], ids)
    if not PendingRecovery.objects.filter(**identity.columns(), decided_at=decided).exists():
        PendingRecovery.objects.create(
            **identity.columns(), decided_at=decided, proposal_id=proposal_id, remembered_at=now
        )
    return FinalizeOutcome(FinalizeAction.REMEMBERED, identity)


def finalize_state_prune(*, now: datetime) -> tuple[int, int]:
    """Forget applied decisions after a day and unmatched recoveries after their TTL."""
    applied_deleted, _ = FinalizeApplied.objects.filter(applied_at__lt=now - timedelta(days=1)).delete()
    pending_deleted, _ = PendingRecovery.objects.filter(remembered_at__lt=now - _pending_ttl()).delete()
    return applied_deleted, pending_deleted


# --- usage → requests --------------------------------------------------------------------

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


def _usage_statement(rows: int) -> str:
    columns = ", ".join(f"`{c}`" if connection.vendor == "mysql" else c for c in USAGE_COLUMNS)
    values = ", ".join(["(" + ", ".join(["%s"] * len(USAGE_COLUMNS)) + ")"] * rows)
    if connection.vendor == "mysql":
        return f"INSERT INTO `requests` ({columns}) VALUES {values} ON DUPLICATE KEY UPDATE `hits` = VALUES(`hits`)"
    key = ", ".join(USAGE_KEY_COLUMNS)
    return f"INSERT INTO requests ({columns}) VALUES {values} ON CONFLICT ({key}) DO UPDATE SET hits = excluded.hits"


def usage_upsert_batch(*, rows: Sequence[Sequence[Any]], rows_per_statement: int = USAGE_ROWS_PER_STATEMENT) -> int:
    """Upsert usage rows (USAGE_COLUMNS order); a new value REPLACES hits, never adds.

    Multi-row INSERT … ON DUPLICATE KEY UPDATE on MySQL, INSERT … ON CONFLICT on SQLite,
    one transaction for the lot. Returns the number of rows sent.
    """
    if not rows:
        return 0
    if connection.vendor == "sqlite":
        # SQLite allows 32766 bound variables per statement.
        rows_per_statement = min(rows_per_statement, 32766 // len(USAGE_COLUMNS))
    with transaction.atomic(), connection.cursor() as cursor:
        full_statement = _usage_statement(rows_per_statement)
        for start in range(0, len(rows), rows_per_statement):
            chunk = rows[start : start + rows_per_statement]
            statement = full_statement if len(chunk) == rows_per_statement else _usage_statement(len(chunk))
            cursor.execute(statement, [value for row in chunk for value in row])
    return len(rows)


class UsageHitsCache:
    """What was last written per (date, node), so that an unchanged row is not written again.

    Held as the set of hashes of (node, key, hits) of the node's last reply for that day:
    500,000 rows take ~30 MB. A day is loaded from the table the first time a process
    touches it, so a fresh process (or `collect_usage`) also skips unchanged rows. A false
    "unchanged" would need a 64-bit hash collision; a failed write forgets the (date, node).
    """

    def __init__(self, *, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._days: dict[tuple[date, str], set[int]] = {}

    def written(self, day: date, node_id: str) -> set[int]:
        key = (day, node_id)
        known = self._days.get(key)
        if known is None:
            known = self._load(day, node_id)
            self._days[key] = known
            # The hourly round touches today and yesterday; old days leave first.
            while len(self._days) > self.max_entries:
                del self._days[min(self._days, key=lambda k: k[0])]
        return known

    def replace(self, day: date, node_id: str, hashes: set[int]) -> None:
        self._days[(day, node_id)] = hashes

    def forget(self, day: date, node_id: str) -> None:
        self._days.pop((day, node_id), None)

    def _load(self, day: date, node_id: str) -> set[int]:
        key_columns = ", ".join(USAGE_KEY_COLUMNS[2:])
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {key_columns}, hits FROM requests WHERE date = %s AND node_id = %s", [day, node_id])
            return {hash((node_id, day, *row)) for row in cursor.fetchall()}


@dataclass
class UsageStoreResult:
    """What one store call did. `dates` and `nodes` are what a rollup refresh needs."""

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
    *, node_id: str, rows: Mapping[tuple[Any, ...], int], cache: UsageHitsCache | None = None
) -> UsageStoreResult:
    """Store one node's reply: `rows` maps a normalised key (USAGE_KEY_COLUMNS without
    node_id) to its day total. Rows whose hits are unchanged are not written.

    Returns the dates and node touched (for `metrics.rollups.usage_rollups_refresh`).
    """
    result = UsageStoreResult(rows_received=len(rows))
    if not rows:
        return result
    by_day: dict[date, list[tuple[tuple[Any, ...], int]]] = {}
    for key, hits in rows.items():
        by_day.setdefault(key[0], []).append((key, hits))
    for day, day_rows in sorted(by_day.items()):
        known = cache.written(day, node_id) if cache is not None else set()
        hashes: set[int] = set()
        changed: list[tuple[Any, ...]] = []
        for key, hits in day_rows:
            row_hash = hash((node_id, *key, hits))
            hashes.add(row_hash)
            if row_hash not in known:
                changed.append((day, node_id, *key[1:], hits))
        result.rows_unchanged += len(day_rows) - len(changed)
        if changed:
            try:
                usage_upsert_batch(rows=changed)
            except Exception:
                if cache is not None:
                    cache.forget(day, node_id)
                raise
            result.rows_written += len(changed)
        if cache is not None:
            cache.replace(day, node_id, hashes)
        result.dates.add(day)
    result.nodes.add(node_id)
    return result


# --- the cluster node table (§6) ---------------------------------------------------------


def role_guess(node_id: str) -> str:
    """REF's guess from the NodeID; a role announced in a join overrides it (§13 N3)."""
    lowered = node_id.lower()
    if "monitor" in lowered:
        return ROLE_MONITOR
    if "dns" in lowered:
        return ROLE_DNS
    return ""


def cluster_nodes_heard(*, heard: Mapping[str, tuple[datetime, NodeInfo | None, str]], now: datetime) -> int:
    """Persist a batch of "heard" marks: node_id → (heard at, announced info or None, role).

    The listener keeps the live table in memory and flushes it here every few seconds, so
    a burst of finalizes does not become a burst of writes.
    """
    written = 0
    for node_id, (heard_at, info, role) in heard.items():
        if not node_id:
            continue
        values: dict[str, Any] = {"last_heard": whole_seconds(heard_at)}
        if role:
            values["node_role"] = role[:32]
        if info is not None:
            values.update(
                public_address=info.public_address[:255],
                listen_address=info.listen_address[:255],
                listen_port=info.listen_port[:16],
                announced_last_heard=None if info.last_heard.is_zero else whole_seconds(info.last_heard.utc),
            )
        updated = ClusterNode.objects.filter(node_id=node_id[:128]).update(**values)
        if not updated:
            try:
                with transaction.atomic():
                    ClusterNode.objects.create(node_id=node_id[:128], first_seen=whole_seconds(now), **values)
            except IntegrityError:
                ClusterNode.objects.filter(node_id=node_id[:128]).update(**values)
        written += 1
    return written


def cluster_nodes_prune(*, now: datetime, silent_for: timedelta = timedelta(minutes=15)) -> int:
    """Nodes silent for more than 15 min leave the table, as in the reference (§6.2)."""
    deleted, _ = ClusterNode.objects.filter(last_heard__lt=whole_seconds(now) - silent_for).delete()
    return deleted


def cluster_nodes_recent(*, now: datetime, within: timedelta = timedelta(minutes=10)) -> list[ClusterNode]:
    """Nodes heard within the active window; the listener warms its table from these."""
    return list(ClusterNode.objects.filter(last_heard__gte=whole_seconds(now) - within))
