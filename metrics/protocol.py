"""The NATS wire format (nats-protocol §5): every message the collator sends or receives.

This is the one module that knows JSON field names, time formats and Go's encoding rules.
Peers are Go programs using `encoding/json`, so both directions copy its behaviour:

- Decoding: keys match struct fields case-insensitively (an exact match wins), unknown keys
  are ignored, `null` leaves a field at its Go zero value, and a value of the wrong JSON type
  rejects the whole message (`ProtocolError`, with a `reason` for the reject counters).
- Encoding: fields in struct order, `omitempty` honoured, map keys sorted, `<`, `>`, `&`,
  U+2028 and U+2029 escaped, floats in Go's shortest form (`850`, not `850.0`), times in
  RFC 3339 with trailing fractional zeros trimmed. A Go-encoded message decoded here and
  encoded again is the same bytes.

`to_json()` returns UTF-8 bytes, ready to publish. Large usage replies have a fast decoder
(`decode_usage_reply`) that validates every record but builds tuples, not objects, so that
a 125,000-record reply fits in memory; `UsageResponse.from_json` is built on it, so both
share one set of rules.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

try:  # the fast path for large usage replies; without it the exact decoder does all the work
    import msgspec
except ImportError:  # pragma: no cover - msgspec is pinned in requirements.txt
    msgspec = None

# --- subjects (nats-protocol §4); none of them is configurable --------------------------
SUBJECT_CLUSTER = "consensus.cluster"
SUBJECT_PROPOSE = "consensus.propose"
SUBJECT_VOTE = "consensus.vote"
SUBJECT_FINALIZE = "consensus.finalize"
SUBJECT_USAGE_REQUEST = "dns.usage.getUsage"
SUBJECT_USAGE_DATA = "dns.usage.usageData"
SUBJECT_DOWNTIME_REQUEST = "monitor.stats.getDowntime"
SUBJECT_DOWNTIME_DATA = "monitor.stats.downtimeData"

ROLE_COLLATOR = "IBPCollator"
ROLE_MONITOR = "IBPMonitor"
ROLE_DNS = "IBPDns"

CHECK_TYPES = ("site", "domain", "endpoint")


class ProtocolError(ValueError):
    """A message Go would refuse. `reason` is a short token for the reject counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- times -------------------------------------------------------------------------------

# Every pattern of the parser is re.ASCII: without it `\d` also matches other scripts'
# digits (`٢٠٢٦` is Arabic-Indic 2026), which int() then reads as numbers; Go takes 0-9 only.
_TIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})", re.ASCII)


@dataclass(frozen=True, slots=True)
class GoTime:
    """A Go `time.Time` as it travels: whole seconds in its own zone, plus nanoseconds.

    Python's datetime stops at microseconds and a Go peer may send nanoseconds and an offset
    such as +02:00. Keeping both lets a message be re-encoded byte for byte; `.utc` is what
    the rest of the code uses.
    """

    wall: datetime  # aware, microsecond == 0, in the zone the sender wrote
    nanosecond: int = 0

    @classmethod
    def parse(cls, text: str) -> GoTime:
        match = _TIME_RE.fullmatch(text)
        if match is None:
            raise ProtocolError("invalid_time", f"not an RFC 3339 time: {text[:64]!r}")
        year, month, day, hour, minute, second, fraction, zone = match.groups()
        if zone == "Z":
            tz: timezone = UTC
        else:
            offset_hours, offset_minutes = int(zone[1:3]), int(zone[4:6])
            if offset_hours > 23 or offset_minutes > 59:
                raise ProtocolError("invalid_time", f"zone offset out of range: {text[:64]!r}")
            offset = timedelta(hours=offset_hours, minutes=offset_minutes)
            tz = timezone(-offset if zone[0] == "-" else offset) if offset else UTC
        try:
            wall = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
        except ValueError as exc:
            raise ProtocolError("invalid_time", f"not a valid time: {text[:64]!r}") from exc
        try:
            # Converted once here, so that `.utc` never raises later (the fraction, under a
            # second, cannot cross 9999-12-31 23:59:59). Go's years run past 9999:
            # `9999-12-31T23:59:59-01:00` is year 10000 in UTC, `0001-01-01T00:00:00+01:00`
            # is year 0, and Python's datetime holds neither.
            wall.astimezone(UTC)
        except OverflowError as exc:
            raise ProtocolError("invalid_time", f"time out of range in UTC: {text[:64]!r}") from exc
        nanosecond = int(fraction.ljust(9, "0")) if fraction else 0
        return cls(wall=wall, nanosecond=nanosecond)

    @classmethod
    def from_datetime(cls, moment: datetime, *, nanosecond: int | None = None) -> GoTime:
        if moment.tzinfo is None:
            raise ValueError("GoTime needs an aware datetime")
        nanos = moment.microsecond * 1000 if nanosecond is None else nanosecond
        return cls(wall=moment.replace(microsecond=0), nanosecond=nanos)

    @property
    def utc(self) -> datetime:
        """The instant in UTC, truncated to microseconds."""
        return (self.wall + timedelta(microseconds=self.nanosecond // 1000)).astimezone(UTC)

    @property
    def is_zero(self) -> bool:
        return self == ZERO_TIME

    def format(self) -> str:
        """RFC 3339 with nanoseconds, trailing zeros trimmed, `Z` for UTC (Go's RFC3339Nano)."""
        text = self.wall.strftime("%Y-%m-%dT%H:%M:%S")
        if self.wall.year < 1000:
            text = f"{self.wall.year:04d}{text[text.index('-') :]}"
        if self.nanosecond:
            text += "." + f"{self.nanosecond:09d}".rstrip("0")
        offset = self.wall.utcoffset() or timedelta(0)
        if not offset:
            return text + "Z"
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        minutes = abs(minutes)
        return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


ZERO_TIME = GoTime(wall=datetime(1, 1, 1, tzinfo=UTC))


# --- Go-compatible JSON encoding ---------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029\ud800-\udfff]', re.ASCII)


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if "\ud800" <= char <= "\udfff":
        return "\\ufffd"  # a lone surrogate is invalid UTF-8; Go writes the replacement char
    return f"\\u{ord(char):04x}"


def go_string(text: str) -> str:
    """A JSON string literal exactly as Go writes it (HTML-safe escaping on)."""
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, text) + '"'


def go_float(number: float) -> str:
    """Go's float64 JSON form: shortest round-trip digits, exponent only outside [1e-6, 1e21)."""
    if math.isnan(number) or math.isinf(number):
        raise ValueError("JSON has no NaN or Inf")
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    shortest = repr(number)
    if 1e-6 <= abs(number) < 1e21:
        text = format(Decimal(shortest), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    mantissa, _, exponent = shortest.partition("e")
    sign = exponent[0] if exponent[0] in "+-" else "+"
    digits = exponent.lstrip("+-").lstrip("0") or "0"
    return f"{mantissa}e{sign}{digits}"


def go_json(value: Any) -> str:
    """Encode a decoded-JSON value (or a GoTime) the way Go's encoding/json would."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, GoTime):
        return '"' + value.format() + '"'
    if isinstance(value, Mapping):
        return "{" + ",".join(go_string(str(k)) + ":" + go_json(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(item) for item in value) + "]"
    if hasattr(value, "go_fields"):
        return _struct(value.go_fields())
    raise TypeError(f"cannot encode {type(value).__name__} as Go JSON")


def _struct(fields: Iterable[tuple[str, Any, bool]]) -> str:
    """A Go struct: fields in declaration order; (name, value, omitempty)."""
    parts = [
        go_string(name) + ":" + go_json(value) for name, value, omitempty in fields if not (omitempty and not value)
    ]
    return "{" + ",".join(parts) + "}"


# --- strict decoding ---------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ProtocolError("invalid_json", f"{name} is not JSON")


def _go_number(text: str) -> float:
    # Go decodes every number in an interface{} as float64 and refuses one that overflows.
    number = float(text)
    if math.isinf(number):
        raise ProtocolError("invalid_json", f"number out of range: {text[:32]}")
    return number


# A JSON string may escape a lone UTF-16 surrogate (`"\ud800"`). Python decodes it into a
# str that utf8mb4 cannot encode, so the row's write fails and the outage or usage is lost;
# Go's decoder puts U+FFFD in its place, and so do we, before decoding. A surrogate escape is
# rare, so the whole text is only rewritten when the quick search finds one. An escape is
# only one when the backslashes before it are even in number (`\\ud800` is text).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]", re.ASCII)
_LONE_SURROGATE_ESCAPE = re.compile(
    r"(?<!\\)((?:\\\\)*)"
    r"(?:\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})",
    re.ASCII,
)


def _without_lone_surrogates(text: str) -> str:
    if _SURROGATE_ESCAPE.search(text) is None:
        return text
    return _LONE_SURROGATE_ESCAPE.sub(lambda match: match.group(1) + "\\ufffd", text)


def _loads(
    data: bytes | str, *, numbers_as_float: bool, hook: Callable[[list[tuple[str, Any]]], Any] | None = None
) -> Any:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes | bytearray | memoryview) else data
    text = _without_lone_surrogates(text)
    try:
        if numbers_as_float:
            return json.loads(text, parse_int=_go_number, parse_float=_go_number, parse_constant=_reject_constant)
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=hook)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid_json", f"not valid JSON: {exc}") from exc


class _Fields:
    """Go's key matching for one struct: exact name first, then case-insensitive."""

    def __init__(self, names: Sequence[str]) -> None:
        self.exact = {name: name for name in names}
        self.folded = {name.lower(): name for name in names}

    def items(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in obj.items():
            name = self.exact.get(key) or self.folded.get(key.lower())
            if name is not None and value is not None:  # null leaves the Go zero value
                found[name] = value
        return found


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError("wrong_type", f"{where}: expected an object, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _str(found: Mapping[str, Any], name: str, where: str) -> str:
    value = found.get(name, "")
    if not isinstance(value, str):
        raise ProtocolError("wrong_type", f"{where}.{name}: expected a string, got {_json_type(value)}")
    return value


def _bool(found: Mapping[str, Any], name: str, where: str) -> bool:
    value = found.get(name, False)
    if not isinstance(value, bool):
        raise ProtocolError("wrong_type", f"{where}.{name}: expected a bool, got {_json_type(value)}")
    return value


def _time(found: Mapping[str, Any], name: str, where: str) -> GoTime:
    value = found.get(name)
    if value is None:
        return ZERO_TIME
    if not isinstance(value, str):
        raise ProtocolError("wrong_type", f"{where}.{name}: expected a time string, got {_json_type(value)}")
    try:
        return GoTime.parse(value)
    except ProtocolError as exc:
        raise ProtocolError("invalid_time", f"{where}.{name}: {exc}") from exc


def _data(found: Mapping[str, Any], name: str, where: str) -> dict[str, Any] | None:
    value = found.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("wrong_type", f"{where}.{name}: expected an object, got {_json_type(value)}")
    return value


def data_for_storage(data: Any) -> Any:
    """A `Data` value for a JSON column: whole floats back to ints, keys sorted, as Go stores it.

    Go decodes every number of a free-form map as float64 and writes `850`, not `850.0`;
    Python's json would write the latter.
    """
    if isinstance(data, float) and data.is_integer() and abs(data) < 2**53:
        return int(data)
    if isinstance(data, Mapping):
        return {str(k): data_for_storage(data[k]) for k in sorted(data)}
    if isinstance(data, list | tuple):
        return [data_for_storage(item) for item in data]
    return data


# --- consensus messages (§5.1–5.4) -------------------------------------------------------

_NODE_INFO = _Fields(["NodeID", "PublicAddress", "ListenAddress", "ListenPort", "NodeRole", "LastHeard"])
_CLUSTER = _Fields(["type", "sender", "members"])
_PROPOSAL = _Fields(
    [
        "ID",
        "SenderNodeID",
        "CheckType",
        "CheckName",
        "MemberName",
        "DomainName",
        "Endpoint",
        "ProposedStatus",
        "ErrorText",
        "Data",
        "IsIPv6",
        "Timestamp",
    ]
)
_VOTE = _Fields(["ProposalID", "SenderNodeID", "NodeID", "Agree", "Timestamp"])
_FINALIZE = _Fields(["Proposal", "SenderNodeID", "Passed", "DecidedAt"])


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str = ""
    public_address: str = ""
    listen_address: str = ""
    listen_port: str = ""
    node_role: str = ""
    last_heard: GoTime = ZERO_TIME

    @classmethod
    def from_obj(cls, obj: Any, where: str = "NodeInfo") -> NodeInfo:
        found = _NODE_INFO.items(_object(obj, where))
        return cls(
            node_id=_str(found, "NodeID", where),
            public_address=_str(found, "PublicAddress", where),
            listen_address=_str(found, "ListenAddress", where),
            listen_port=_str(found, "ListenPort", where),
            node_role=_str(found, "NodeRole", where),
            last_heard=_time(found, "LastHeard", where),
        )

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        return [
            ("NodeID", self.node_id, False),
            ("PublicAddress", self.public_address, False),
            ("ListenAddress", self.listen_address, False),
            ("ListenPort", self.listen_port, False),
            ("NodeRole", self.node_role, False),
            ("LastHeard", self.last_heard, False),
        ]


@dataclass(frozen=True, slots=True)
class ClusterMessage:
    """`consensus.cluster`. Only `join` is ever sent; `members` is always null on the wire."""

    type: str = ""
    sender: NodeInfo = field(default_factory=NodeInfo)
    members: tuple[NodeInfo, ...] | None = None

    @classmethod
    def from_json(cls, data: bytes | str) -> ClusterMessage:
        found = _CLUSTER.items(_object(_loads(data, numbers_as_float=True), "ClusterMessage"))
        members_raw = found.get("members")
        members = None
        if members_raw is not None:
            if not isinstance(members_raw, list):
                raise ProtocolError("wrong_type", "ClusterMessage.members: expected an array")
            members = tuple(NodeInfo.from_obj(item, "ClusterMessage.members[]") for item in members_raw)
        sender_raw = found.get("sender")
        return cls(
            type=_str(found, "type", "ClusterMessage"),
            sender=NodeInfo() if sender_raw is None else NodeInfo.from_obj(sender_raw, "ClusterMessage.sender"),
            members=members,
        )

    @classmethod
    def join(cls, *, node_id: str, role: str, at: datetime, public_address: str = "") -> ClusterMessage:
        sender = NodeInfo(
            node_id=node_id,
            public_address=public_address,
            listen_address="0.0.0.0",
            listen_port="0",
            node_role=role,
            last_heard=GoTime.from_datetime(at),
        )
        return cls(type="join", sender=sender, members=None)

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        members = None if self.members is None else list(self.members)
        return [("type", self.type, False), ("sender", self.sender, False), ("members", members, False)]

    def to_json(self) -> bytes:
        return go_json(self).encode()


@dataclass(frozen=True, slots=True)
class Proposal:
    id: str = ""
    sender_node_id: str = ""
    check_type: str = ""
    check_name: str = ""
    member_name: str = ""
    domain_name: str = ""
    endpoint: str = ""
    proposed_status: bool = False
    error_text: str = ""
    data: dict[str, Any] | None = None  # numbers are floats, as Go's interface{} holds them
    is_ipv6: bool = False
    timestamp: GoTime = ZERO_TIME

    @classmethod
    def from_obj(cls, obj: Any, where: str = "Proposal") -> Proposal:
        found = _PROPOSAL.items(_object(obj, where))
        return cls(
            id=_str(found, "ID", where),
            sender_node_id=_str(found, "SenderNodeID", where),
            check_type=_str(found, "CheckType", where),
            check_name=_str(found, "CheckName", where),
            member_name=_str(found, "MemberName", where),
            domain_name=_str(found, "DomainName", where),
            endpoint=_str(found, "Endpoint", where),
            proposed_status=_bool(found, "ProposedStatus", where),
            error_text=_str(found, "ErrorText", where),
            data=_data(found, "Data", where),
            is_ipv6=_bool(found, "IsIPv6", where),
            timestamp=_time(found, "Timestamp", where),
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Proposal:
        return cls.from_obj(_loads(data, numbers_as_float=True))

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        return [
            ("ID", self.id, False),
            ("SenderNodeID", self.sender_node_id, False),
            ("CheckType", self.check_type, False),
            ("CheckName", self.check_name, False),
            ("MemberName", self.member_name, False),
            ("DomainName", self.domain_name, False),
            ("Endpoint", self.endpoint, False),
            ("ProposedStatus", self.proposed_status, False),
            ("ErrorText", self.error_text, False),
            ("Data", self.data, False),
            ("IsIPv6", self.is_ipv6, False),
            ("Timestamp", self.timestamp, False),
        ]

    def to_json(self) -> bytes:
        return go_json(self).encode()


@dataclass(frozen=True, slots=True)
class Vote:
    proposal_id: str = ""
    sender_node_id: str = ""
    node_id: str = ""
    agree: bool = False
    timestamp: GoTime = ZERO_TIME

    @classmethod
    def from_json(cls, data: bytes | str) -> Vote:
        where = "Vote"
        found = _VOTE.items(_object(_loads(data, numbers_as_float=True), where))
        return cls(
            proposal_id=_str(found, "ProposalID", where),
            sender_node_id=_str(found, "SenderNodeID", where),
            node_id=_str(found, "NodeID", where),
            agree=_bool(found, "Agree", where),
            timestamp=_time(found, "Timestamp", where),
        )

    @property
    def voter(self) -> str:
        return self.node_id or self.sender_node_id

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        return [
            ("ProposalID", self.proposal_id, False),
            ("SenderNodeID", self.sender_node_id, False),
            ("NodeID", self.node_id, False),
            ("Agree", self.agree, False),
            ("Timestamp", self.timestamp, False),
        ]

    def to_json(self) -> bytes:
        return go_json(self).encode()


@dataclass(frozen=True, slots=True)
class FinalizeMessage:
    proposal: Proposal = field(default_factory=Proposal)
    sender_node_id: str = ""  # NEW peers only; omitempty
    passed: bool = False
    decided_at: GoTime = ZERO_TIME

    @classmethod
    def from_json(cls, data: bytes | str) -> FinalizeMessage:
        where = "FinalizeMessage"
        found = _FINALIZE.items(_object(_loads(data, numbers_as_float=True), where))
        proposal_raw = found.get("Proposal")
        return cls(
            proposal=Proposal() if proposal_raw is None else Proposal.from_obj(proposal_raw, f"{where}.Proposal"),
            sender_node_id=_str(found, "SenderNodeID", where),
            passed=_bool(found, "Passed", where),
            decided_at=_time(found, "DecidedAt", where),
        )

    @property
    def decider(self) -> str:
        """The monitor that decided; REF/MON peers only carry the proposer."""
        return self.sender_node_id or self.proposal.sender_node_id

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        return [
            ("Proposal", self.proposal, False),
            ("SenderNodeID", self.sender_node_id, True),
            ("Passed", self.passed, False),
            ("DecidedAt", self.decided_at, False),
        ]

    def to_json(self) -> bytes:
        return go_json(self).encode()


# --- usage (§5.5, §5.6) ------------------------------------------------------------------

_USAGE_REQUEST = _Fields(["startDate", "endDate", "domain", "memberName", "country"])


@dataclass(frozen=True, slots=True)
class UsageRequest:
    start_date: str = ""
    end_date: str = ""
    domain: str = ""
    member_name: str = ""
    country: str = ""

    @classmethod
    def for_day(cls, day: date) -> UsageRequest:
        text = day.isoformat()
        return cls(start_date=text, end_date=text)

    @classmethod
    def from_json(cls, data: bytes | str) -> UsageRequest:
        where = "UsageRequest"
        found = _USAGE_REQUEST.items(_object(_loads(data, numbers_as_float=True), where))
        return cls(
            start_date=_str(found, "startDate", where),
            end_date=_str(found, "endDate", where),
            domain=_str(found, "domain", where),
            member_name=_str(found, "memberName", where),
            country=_str(found, "country", where),
        )

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        return [
            ("startDate", self.start_date, False),
            ("endDate", self.end_date, False),
            ("domain", self.domain, False),
            ("memberName", self.member_name, False),
            ("country", self.country, False),
        ]

    def to_json(self) -> bytes:
        return go_json(self).encode()


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)


def parse_usage_date(text: str) -> date:
    """A usage record's day: `2025-03-14T00:00:00Z`, `2025-03-14` or `2025-03-14 00:00:00`.

    The day is taken as the node wrote it; a node's DB driver hands DATE back as midnight.
    """
    try:
        if _DATE_ONLY.fullmatch(text) or _DATE_TIME.fullmatch(text):
            return date.fromisoformat(text[:10])
        GoTime.parse(text)  # validates the whole RFC 3339 form
        return date.fromisoformat(text[:10])
    except (ValueError, ProtocolError) as exc:
        raise ProtocolError("invalid_date", f"not a usage date: {text[:40]!r}") from exc


# Record fields in tuple order: Go's struct order, which is also what Go peers send, so a
# record in that exact shape is taken as-is by the fast path below.
USAGE_RECORD_FIELDS = (
    "nodeid",
    "date",
    "domain",
    "memberName",
    "countryCode",
    "asn",
    "networkName",
    "countryName",
    "hits",
    "isIPv6",
)
_RECORD_EXACT = {name: index for index, name in enumerate(USAGE_RECORD_FIELDS)}
_RECORD_FOLDED = {name.lower(): index for index, name in enumerate(USAGE_RECORD_FIELDS)}
_HITS, _IPV6 = 8, 9
_GO_RECORD_TYPES = (str, str, str, str, str, str, str, str, int, bool)
_EMPTY_RECORD = ("", "", "", "", "", "", "", "", 0, False)
_RESPONSE_KEYS = {"nodeid", "usagerecords", "error"}
HITS_MAX = 2**32 - 1  # INT UNSIGNED


@dataclass(frozen=True, slots=True)
class UsageRecord:
    node_id: str = ""  # always "" on the wire (§5.6)
    date: str = ""
    domain: str = ""
    member_name: str = ""
    country_code: str = ""
    asn: str = ""
    network_name: str = ""
    country_name: str = ""
    hits: int = 0
    is_ipv6: bool = False

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> UsageRecord:
        return cls(*row)

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        return [
            ("nodeid", self.node_id, False),
            ("date", self.date, False),
            ("domain", self.domain, False),
            ("memberName", self.member_name, False),
            ("countryCode", self.country_code, False),
            ("asn", self.asn, False),
            ("networkName", self.network_name, False),
            ("countryName", self.country_name, False),
            ("hits", self.hits, False),
            ("isIPv6", self.is_ipv6, False),
        ]


@dataclass(slots=True)
class UsageReply:
    """A decoded usage reply: records as tuples in USAGE_RECORD_FIELDS order (fast path)."""

    node_id: str
    error: str
    records: list[tuple[Any, ...]] | None
    # Integer fields sent as whole floats (`5.0`): accepted, but worth a log line (§5.0).
    float_hits: int = 0


class _Response:
    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


class _RecordDecoder:
    """`object_pairs_hook` that turns each record into a tuple as the JSON is read.

    A reply may hold 125,000 records; dicts of them would need ~1 KB each, tuples sharing
    their repeated strings need a fraction of that. Go's rules apply per field: a value of
    the wrong type rejects the whole reply.
    """

    def __init__(self) -> None:
        self.memo: dict[str, str] = {}
        self.float_hits = 0

    def __call__(self, pairs: list[tuple[str, Any]]) -> Any:
        if len(pairs) == 10:
            # Fast path, all in C: a record exactly as Go writes it (names, order, types).
            keys, ordered = zip(*pairs, strict=True)
            if keys == USAGE_RECORD_FIELDS and tuple(map(type, ordered)) == _GO_RECORD_TYPES:
                return ordered
        values: list[Any] = list(_EMPTY_RECORD)
        memo = self.memo
        for key, value in pairs:
            index = _RECORD_EXACT.get(key)
            if index is None:
                folded = key.lower()
                if folded in _RESPONSE_KEYS and folded != "nodeid":
                    return _Response(pairs)
                index = _RECORD_FOLDED.get(folded)
                if index is None:
                    continue
            if value is None:
                continue
            if index == _HITS:
                if type(value) is not int:
                    value = self._hits(value)
            elif index == _IPV6:
                if type(value) is not bool:
                    raise ProtocolError("wrong_type", f"usage record isIPv6: expected a bool, got {_json_type(value)}")
            elif type(value) is str:
                value = memo.setdefault(value, value)
            else:
                raise ProtocolError(
                    "wrong_type",
                    f"usage record {USAGE_RECORD_FIELDS[index]}: expected a string, got {_json_type(value)}",
                )
            values[index] = value
        return tuple(values)

    def _hits(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            self.float_hits += 1
            return int(value)
        raise ProtocolError("wrong_type", f"usage record hits: expected an integer, got {value!r:.32}")


def decode_usage_reply(data: bytes | str) -> UsageReply:
    """Decode a UsageResponse strictly (wrong types reject it whole), records as tuples."""
    decoder = _RecordDecoder()
    top = _loads(data, numbers_as_float=False, hook=decoder)
    if isinstance(top, tuple):
        # An object without `usageRecords` or `error` (e.g. `{"nodeID":"DNS-02"}`) looks like a
        # record to the hook; its node id sits in the record's `nodeid` slot.
        return UsageReply(node_id=top[0], error="", records=None, float_hits=decoder.float_hits)
    if not isinstance(top, _Response):
        raise ProtocolError("wrong_type", f"UsageResponse: expected an object, got {_json_type(top)}")
    node_id, error, records = "", "", None
    for key, value in top.pairs:
        folded = key.lower()
        if value is None:
            continue
        if folded == "nodeid":
            if not isinstance(value, str):
                raise ProtocolError("wrong_type", f"UsageResponse.nodeID: expected a string, got {_json_type(value)}")
            node_id = value
        elif folded == "error":
            if not isinstance(value, str):
                raise ProtocolError("wrong_type", f"UsageResponse.error: expected a string, got {_json_type(value)}")
            error = value
        elif folded == "usagerecords":
            if not isinstance(value, list):
                raise ProtocolError(
                    "wrong_type", f"UsageResponse.usageRecords: expected an array, got {_json_type(value)}"
                )
            for item in value:
                if type(item) is not tuple and item is not None:
                    raise ProtocolError(
                        "wrong_type", f"UsageResponse.usageRecords[]: expected an object, got {_json_type(item)}"
                    )
            # A null element decodes to an all-zero record in Go.
            records = [item if item is not None else _EMPTY_RECORD for item in value]
    return UsageReply(node_id=node_id, error=error, records=records, float_hits=decoder.float_hits)


# --- the fast path for large replies ----------------------------------------------------
#
# A record exactly as Go writes it (the exact field names, every value of its Go type, no
# null) is decoded by msgspec, one record at a time from the raw bytes, so that a reply of
# 125,000 records is never held as 125,000 Python records at once. Anything else in a reply
# (a key in another case, a null, `5.0` for hits, invalid UTF-8, a syntax error) makes the
# fast path give up, and the whole reply is decoded again by `decode_usage_reply` above:
# the fast path only ever says yes to replies whose exact result it gives, and every
# rejection, with its reason, comes from one place.

_T = TypeVar("_T")


class _FastPathMiss(Exception):
    """The fast path met something it does not take exactly as Go would."""


if msgspec is not None:
    # Field names are the wire's exact names (Go's struct tags), in Go's order.
    class _WireRecord(msgspec.Struct, forbid_unknown_fields=True, gc=False):
        nodeid: str = ""
        date: str = ""
        domain: str = ""
        memberName: str = ""
        countryCode: str = ""
        asn: str = ""
        networkName: str = ""
        countryName: str = ""
        hits: int = 0
        isIPv6: bool = False

    class _WireReply(msgspec.Struct, forbid_unknown_fields=True, gc=False):
        nodeID: str = ""
        usageRecords: list[msgspec.Raw] | None = None
        error: str = ""

    _REPLY_DECODER: Any = msgspec.json.Decoder(_WireReply)
    _RECORD_DECODER: Any = msgspec.json.Decoder(_WireRecord)
    _FAST_ERRORS: tuple[type[BaseException], ...] = (msgspec.MsgspecError, ValueError, RecursionError)
    # Tuples come out in USAGE_RECORD_FIELDS order, as from the exact decoder.
    assert _WireRecord.__struct_fields__ == USAGE_RECORD_FIELDS


class UsageRecords:
    """A reply's records, for one pass of a fold.

    Iterating gives each record as a tuple in USAGE_RECORD_FIELDS order. On the fast path,
    `raws` also holds each record's raw JSON (byte-identical for an unchanged record of the
    same node, since Go writes its fields in a fixed order), and `raw_hashed` gives each
    record with the hash of its raw JSON, so that a fold can skip records it has already
    stored without decoding them. On the exact path `raws` is None.
    """

    __slots__ = ("_decoded", "raws", "skipped")

    def __init__(self, *, raws: list[Any] | None = None, decoded: Iterable[tuple[Any, ...]] = ()) -> None:
        self.raws = raws
        self._decoded = decoded
        self.skipped = 0

    def raw_hashed(self, skip: set[int]) -> Iterator[tuple[int, tuple[Any, ...]]]:
        """Fast path only: (hash of the raw JSON, record) for each record, but for those whose
        unsigned 64-bit raw hash is in `skip`: they are not decoded, only counted in
        `skipped`, and taken out of `skip` (so that a second identical record is yielded)."""
        assert self.raws is not None
        decode, astuple = _RECORD_DECODER.decode, msgspec.structs.astuple
        mask = (1 << 64) - 1
        try:
            for raw in self.raws:
                raw_hash = hash(bytes(raw)) & mask
                if raw_hash in skip:
                    skip.remove(raw_hash)
                    self.skipped += 1
                    continue
                yield raw_hash, astuple(decode(raw))
        except _FAST_ERRORS as exc:
            raise _FastPathMiss(str(exc)) from None

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        if self.raws is None:
            yield from self._decoded
            return
        decode, astuple = _RECORD_DECODER.decode, msgspec.structs.astuple
        try:
            for raw in self.raws:
                yield astuple(decode(raw))
        except _FAST_ERRORS as exc:
            raise _FastPathMiss(str(exc)) from None


def usage_reply_fold(data: bytes, fold: Callable[[UsageReply, UsageRecords], _T]) -> _T:
    """Decode a UsageResponse and hand its records to `fold` one at a time.

    `fold(reply, records)` gets the reply's node id and error (`reply.records` is None
    there) and its UsageRecords, to be read once. Results and rejections are exactly those
    of `decode_usage_reply`. `fold` may be called a second time, from the start, when the
    fast path gives up part way (the iteration raises an internal miss that `fold` must let
    through): it must build its result from nothing on each call.
    """
    if msgspec is not None and isinstance(data, bytes | bytearray | memoryview):
        try:
            top = _REPLY_DECODER.decode(data)
        except _FAST_ERRORS:
            top = None
        if top is not None:
            reply = UsageReply(node_id=top.nodeID, error=top.error, records=None)
            raws = top.usageRecords
            del top
            try:
                return fold(reply, UsageRecords(raws=[] if raws is None else raws))
            except _FastPathMiss:
                pass
            finally:
                del raws
    reply = decode_usage_reply(data)
    records, reply.records = reply.records, None
    return fold(reply, UsageRecords(decoded=() if records is None else records))


@dataclass(frozen=True, slots=True)
class UsageResponse:
    node_id: str = ""
    usage_records: tuple[UsageRecord, ...] | None = None
    error: str = ""  # omitempty

    @classmethod
    def from_json(cls, data: bytes | str) -> UsageResponse:
        reply = decode_usage_reply(data)
        records = None if reply.records is None else tuple(UsageRecord.from_row(row) for row in reply.records)
        return cls(node_id=reply.node_id, usage_records=records, error=reply.error)

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        records = None if self.usage_records is None else list(self.usage_records)
        return [("nodeID", self.node_id, False), ("usageRecords", records, False), ("error", self.error, True)]

    def to_json(self) -> bytes:
        return go_json(self).encode()


def usage_date_text(day: date) -> str:
    """The date form DNS nodes actually send (their DB driver returns DATE as a time)."""
    return f"{day.isoformat()}T00:00:00Z"


# --- downtime statistics (§5.7): defined so that the subjects can be recognised ---------

_DOWNTIME_REQUEST = _Fields(["startTime", "endTime", "memberName"])


@dataclass(frozen=True, slots=True)
class DowntimeRequest:
    start_time: GoTime = ZERO_TIME
    end_time: GoTime = ZERO_TIME
    member_name: str = ""

    @classmethod
    def from_json(cls, data: bytes | str) -> DowntimeRequest:
        where = "DowntimeRequest"
        found = _DOWNTIME_REQUEST.items(_object(_loads(data, numbers_as_float=True), where))
        return cls(
            start_time=_time(found, "startTime", where),
            end_time=_time(found, "endTime", where),
            member_name=_str(found, "memberName", where),
        )

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        return [
            ("startTime", self.start_time, False),
            ("endTime", self.end_time, False),
            ("memberName", self.member_name, False),
        ]

    def to_json(self) -> bytes:
        return go_json(self).encode()


_DOWNTIME_EVENT = _Fields(
    [
        "memberName",
        "checkType",
        "checkName",
        "domainName",
        "endpoint",
        "status",
        "startTime",
        "endTime",
        "errorText",
        "data",
        "isIPv6",
    ]
)
_DOWNTIME_RESPONSE = _Fields(["nodeID", "events", "error"])


@dataclass(frozen=True, slots=True)
class DowntimeEvent:
    member_name: str = ""
    check_type: str = ""
    check_name: str = ""
    domain_name: str = ""  # omitempty
    endpoint: str = ""  # omitempty
    status: bool = False
    start_time: GoTime = ZERO_TIME
    end_time: GoTime = ZERO_TIME
    error_text: str = ""
    data: dict[str, Any] | None = None
    is_ipv6: bool = False

    @classmethod
    def from_obj(cls, obj: Any, where: str = "DowntimeEvent") -> DowntimeEvent:
        found = _DOWNTIME_EVENT.items(_object(obj, where))
        return cls(
            member_name=_str(found, "memberName", where),
            check_type=_str(found, "checkType", where),
            check_name=_str(found, "checkName", where),
            domain_name=_str(found, "domainName", where),
            endpoint=_str(found, "endpoint", where),
            status=_bool(found, "status", where),
            start_time=_time(found, "startTime", where),
            end_time=_time(found, "endTime", where),
            error_text=_str(found, "errorText", where),
            data=_data(found, "data", where),
            is_ipv6=_bool(found, "isIPv6", where),
        )

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        return [
            ("memberName", self.member_name, False),
            ("checkType", self.check_type, False),
            ("checkName", self.check_name, False),
            ("domainName", self.domain_name, True),
            ("endpoint", self.endpoint, True),
            ("status", self.status, False),
            ("startTime", self.start_time, False),
            ("endTime", self.end_time, False),
            ("errorText", self.error_text, False),
            ("data", self.data, False),
            ("isIPv6", self.is_ipv6, False),
        ]


@dataclass(frozen=True, slots=True)
class DowntimeResponse:
    node_id: str = ""
    events: tuple[DowntimeEvent, ...] | None = None
    error: str = ""  # omitempty

    @classmethod
    def from_json(cls, data: bytes | str) -> DowntimeResponse:
        where = "DowntimeResponse"
        found = _DOWNTIME_RESPONSE.items(_object(_loads(data, numbers_as_float=True), where))
        events_raw = found.get("events")
        events = None
        if events_raw is not None:
            if not isinstance(events_raw, list):
                raise ProtocolError("wrong_type", f"{where}.events: expected an array")
            events = tuple(DowntimeEvent.from_obj(item, f"{where}.events[]") for item in events_raw)
        return cls(node_id=_str(found, "nodeID", where), events=events, error=_str(found, "error", where))

    def go_fields(self) -> list[tuple[str, Any, bool]]:
        events = None if self.events is None else list(self.events)
        return [("nodeID", self.node_id, False), ("events", events, False), ("error", self.error, True)]

    def to_json(self) -> bytes:
        return go_json(self).encode()
