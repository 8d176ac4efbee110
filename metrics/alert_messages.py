"""What an outage alert says (nats-protocol §11.4, §11.5): pure functions, no I/O.

The plain `body` is byte-for-byte the Go text. The `formatted_body` differs from Go in one
deliberate way (§13 N14): every value is HTML-escaped, so an error text such as
`<b>&</b>` shows as typed instead of being parsed as markup by the clients.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from metrics.models import CHECK_TYPE_WORDS, LEGACY_CHECK_TYPES, MemberEvent

OFFLINE_MARK = "\u26a0\ufe0f"  # ⚠️ — followed by two spaces (§11.4)
ONLINE_MARK = "\u2705"  # ✅
HTML_FORMAT = "org.matrix.custom.html"
SUMMARY_LIST_LIMIT = 30


@dataclass(frozen=True)
class OutageFacts:
    """The values an alert shows, copied from a member_events row when the alert is queued."""

    event_id: int
    member_name: str
    check_type: str  # site / domain / endpoint / unknown
    check_name: str
    domain_name: str
    endpoint: str  # the row's check URL: the domain for domain checks, '' for site checks
    is_ipv6: bool
    error: str

    @classmethod
    def from_event(cls, event: MemberEvent) -> OutageFacts:
        return cls(
            event_id=int(event.pk),
            member_name=event.member_name or "",
            check_type=check_type_label(event.check_type),
            check_name=event.check_name or "",
            domain_name=event.domain_name or "",
            endpoint=event.endpoint or "",
            is_ipv6=bool(event.is_ipv6),
            error=event.error or "",
        )


def check_type_label(stored: str) -> str:
    """'3' or legacy 'endpoint' → 'endpoint'; anything else (REF's code 0) → 'unknown' (§11.3)."""
    value = (stored or "").strip().lower()
    canonical = LEGACY_CHECK_TYPES.get(value, value)
    return CHECK_TYPE_WORDS.get(canonical, "unknown")


def member_slug(name: str) -> str:
    """`Stake Plus` → `stakeplus`: lower case, letters and digits only (§11.5 fallback)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def mentions_for_member(member_name: str, alert_mentions: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """Matrix user ids to mention for a member: exact name, then lower-cased name, then slug.

    REF looks up only the lower-cased display name, which misses the slug keys of the real
    alerts.json (`stakeplus` for "Stake Plus"); the slug fallback fixes that (§13 N13).
    """
    found: Sequence[str] | None = alert_mentions.get(member_name)
    if found is None:
        found = alert_mentions.get(member_name.lower())
    if found is None:
        slug = member_slug(member_name)
        for key in sorted(alert_mentions):
            if slug and member_slug(key) == slug:
                found = alert_mentions[key]
                break
    return _unique(found or ())


def offline_content(facts: OutageFacts, *, mentions: Sequence[str] = ()) -> dict[str, Any]:
    """The OFFLINE message of §11.4; the mentions line comes first, only when there is one."""
    body = [f"{OFFLINE_MARK}  *OFFLINE*", *_detail_lines(facts, markup=False), f"• Error:  {facts.error}"]
    formatted = [
        f"{OFFLINE_MARK}  <strong>OFFLINE</strong>",
        *_detail_lines(facts, markup=True),
        f"• Error:  {_esc(facts.error)}",
    ]
    if mentions:
        body.insert(0, " ".join(mentions))
        formatted.insert(0, _esc(" ".join(mentions)))
    return _content(body, formatted)


def online_content(facts: OutageFacts) -> dict[str, Any]:
    """The ONLINE text of §11.4: no Error line, never any mentions."""
    body = [f"{ONLINE_MARK}  *ONLINE*", *_detail_lines(facts, markup=False)]
    formatted = [f"{ONLINE_MARK}  <strong>ONLINE</strong>", *_detail_lines(facts, markup=True)]
    return _content(body, formatted)


def burst_summary_content(
    folded: Sequence[tuple[str, OutageFacts]], *, window_seconds: float, mentions: Sequence[str] = ()
) -> dict[str, Any]:
    """One message standing for alerts folded during a burst (not in the Go service).

    `folded` holds `("offline" | "online", facts)` in arrival order. The first
    SUMMARY_LIST_LIMIT are listed one per line; the rest are counted.
    """
    offline = sum(1 for kind, _ in folded if kind == "offline")
    online = len(folded) - offline
    head = f"{len(folded)} more alerts within {window_seconds:g} s ({offline} OFFLINE, {online} ONLINE)"
    body = [f"{OFFLINE_MARK}  *ALERT BURST*: {head}"]
    formatted = [f"{OFFLINE_MARK}  <strong>ALERT BURST</strong>: {_esc(head)}"]
    for kind, facts in folded[:SUMMARY_LIST_LIMIT]:
        where = facts.endpoint or facts.domain_name or "-"
        label = "OFFLINE" if kind == "offline" else "ONLINE"
        ipv6 = " (IPv6)" if facts.is_ipv6 else ""
        body.append(f"• {label} **{facts.member_name}**: {facts.check_type} / {facts.check_name} {where}{ipv6}")
        formatted.append(
            f"• {label} <strong>{_esc(facts.member_name)}</strong>: "
            f"{_esc(facts.check_type)} / {_esc(facts.check_name)} {_esc(where)}{ipv6}"
        )
    if len(folded) > SUMMARY_LIST_LIMIT:
        rest = f"… and {len(folded) - SUMMARY_LIST_LIMIT} more"
        body.append(rest)
        formatted.append(_esc(rest))
    if mentions:
        body.insert(0, " ".join(mentions))
        formatted.insert(0, _esc(" ".join(mentions)))
    return _content(body, formatted)


def _detail_lines(facts: OutageFacts, *, markup: bool) -> list[str]:
    # The label padding is part of the contract: "Check:" + 2 spaces, "IPv6:" + 3 spaces.
    ipv6 = "true" if facts.is_ipv6 else "false"
    if markup:
        return [
            f"• Member: <strong>{_esc(facts.member_name)}</strong>",
            f"• Check:  {_esc(facts.check_type)} / {_esc(facts.check_name)}",
            f"• Domain: {_esc(facts.domain_name)}",
            f"• Endpoint: {_esc(facts.endpoint)}",
            f"• IPv6:   {ipv6}",
        ]
    return [
        f"• Member: **{facts.member_name}**",
        f"• Check:  {facts.check_type} / {facts.check_name}",
        f"• Domain: {facts.domain_name}",
        f"• Endpoint: {facts.endpoint}",
        f"• IPv6:   {ipv6}",
    ]


def _content(body: list[str], formatted: list[str]) -> dict[str, Any]:
    return {
        "msgtype": "m.text",
        "body": "\n".join(body),
        "format": HTML_FORMAT,
        "formatted_body": "<br/>".join(formatted),
    }


def _esc(value: str) -> str:
    # Element content only (no attributes), so quotes need no escaping.
    return html.escape(value, quote=False)


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if value and value not in seen:
            seen[value] = None
    return tuple(seen)
