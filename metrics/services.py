"""Writes of the NATS collator: outage rows and the cluster node table.

- `downtime_finalize`: one finalize decision → `member_events`, by nats-protocol §8.6 with
  the DECISIONS 1 changes. It returns a `FinalizeOutcome` saying whether an outage really
  opened or closed, and which row, so that alerts fire only on real changes.
- Usage rows are written by `metrics.usage_store` (DECISIONS 6–8).
- `cluster_node_heard` / `cluster_nodes_prune`: the persisted node table (§6).

Every DATETIME column holds whole seconds (the Go tables are DATETIME(0)), so times are
truncated here, before writing, and results do not depend on the database's rounding.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import JSONField, Max, Value

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


def json_null() -> Value:
    """JSON `null` for a JSON column; a plain None would store SQL NULL."""
    return Value(None, JSONField())


def whole_seconds(moment: datetime) -> datetime:
    """UTC, fraction dropped: what a DATETIME(0) column can hold."""
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)


# --- identities and their normal forms (DECISIONS 3, 4, 8) -------------------------------

_PORT = re.compile(r":\d*$", re.ASCII)  # a port is 0-9, not any script's digits


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


# Column widths (characters) of the identity columns of member_events, pending_recoveries
# and finalize_applied. A longer value is refused, not cut: two identities that differ only
# after the cut would become one, and one's recovery would close the other's outage.
_IDENTITY_WIDTHS = (
    ("check_name", 64, "check_name_too_long"),
    ("member_name", 128, "member_name_too_long"),
    ("domain_name", 128, "domain_name_too_long"),
    ("endpoint", 256, "endpoint_too_long"),
)
PROPOSAL_ID_WIDTH = 128
# `error` is TEXT: 65,535 bytes of utf8mb4 in MySQL (not characters).
ERROR_TEXT_MAX_BYTES = 65_535
_TRUNCATION_MARK = "…"


def error_text_for_storage(text: str) -> str | None:
    """ErrorText for the TEXT column: None when empty, cut to 65,535 UTF-8 bytes when longer.

    A monitor may put a whole HTTP body in ErrorText; the outage matters more than the end
    of its text. The cut falls on a character boundary and ends in `…`, so that a reader
    sees the text was cut.
    """
    if not text:
        return None
    if len(text) * 4 <= ERROR_TEXT_MAX_BYTES:
        return text  # the usual short text: no character takes more than 4 bytes
    # "surrogatepass": a lone surrogate (JSON `\ud800`) is measured, not raised on, here.
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= ERROR_TEXT_MAX_BYTES:
        return text
    room = ERROR_TEXT_MAX_BYTES - len(_TRUNCATION_MARK.encode("utf-8"))
    # Decoding with "ignore" drops the partial character a byte cut may leave at the end.
    return encoded[:room].decode("utf-8", "ignore") + _TRUNCATION_MARK


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
        endpoint_forms = [endpoint, raw_endpoint]
        if check_type == "2":
            # The monitor-side writer stored domain checks with a NULL endpoint (data-model
            # §3.2), which adoption turned into ''. Matching '' lets such an open row close,
            # and keeps the Go history as it was rather than rewriting its endpoints.
            endpoint_forms.append("")
        identity = cls(
            check_type=check_type,
            check_name=proposal.check_name,
            endpoint=endpoint,
            domain_name=domain,
            member_name=proposal.member_name,
            is_ipv6=1 if proposal.is_ipv6 else 0,
            endpoint_forms=tuple(dict.fromkeys(endpoint_forms)),
            domain_forms=tuple(dict.fromkeys([domain, proposal.domain_name])),
        )
        for column, width, reason in _IDENTITY_WIDTHS:
            # Measured in the stored (normalised) form: that is what must fit the column.
            value = getattr(identity, column)
            if len(value) > width:
                raise FinalizeRejected(reason, f"{column} of {len(value)} characters (at most {width}): {value[:64]!r}")
        return identity

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


def _future_tolerance() -> timedelta:
    """How far a DecidedAt may be ahead of our clock: NATS_FINALIZE_FUTURE_TOLERANCE_SECONDS.

    A finalize is published the moment it is decided and arrives within a second, so a
    DecidedAt ahead of us is the deciding monitor's clock running fast. NTP keeps clocks
    within well under a second; 5 minutes (300 s, Kerberos' default limit for clock skew)
    also lets a VM whose NTP lapsed for a while through, and still refuses a wrong date.
    """
    return timedelta(seconds=float(getattr(settings, "NATS_FINALIZE_FUTURE_TOLERANCE_SECONDS", 300)))


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
    if len(message.proposal.id) > PROPOSAL_ID_WIDTH:
        # The ID is the idempotency key: cut, two decisions would count as one.
        raise FinalizeRejected(
            "proposal_id_too_long",
            f"proposal ID of {len(message.proposal.id)} characters: {message.proposal.id[:64]!r}",
        )
    if message.decided_at.is_zero:
        # A missing DecidedAt decodes to Go's zero time: it would open an outage at
        # 0001-01-01 (or close one at its own start). There is no time to use instead.
        raise FinalizeRejected("missing_decided_at", f"finalize {message.proposal.id[:64]!r} has no DecidedAt")
    decided_at = message.decided_at.utc
    if decided_at > now + _future_tolerance():
        # An open row starting in the future swallows every real outage of its identity
        # until then (they merge into it), and its recovery closes it at its own start. Only
        # the future is refused: a finalize held while the DB was down, or replayed from the
        # durable stream, is rightly in the past by the time it is applied.
        raise FinalizeRejected(
            "decided_in_future",
            f"finalize {message.proposal.id[:64]!r} DecidedAt {message.decided_at.format()} is "
            f"{(decided_at - now).total_seconds():.0f} s after our clock ({now.isoformat()})",
        )
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
        "error": error_text_for_storage(proposal.error_text),
        "vote_data": _merge_votes(None, votes),
        # The proposal's Data as Go stores it (DECISIONS 5): a nil map is JSON `null`.
        "additional_data": data_for_storage(proposal.data) if proposal.data is not None else json_null(),
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
