"""Finalize messages as the monitors send them, for the outage tests."""

from __future__ import annotations

from typing import Any

from metrics.protocol import FinalizeMessage, GoTime, Proposal


def finalize(
    proposal_id: str,
    *,
    online: bool,
    decided_at: str,
    member: str = "Alpha Nodes",
    check_type: str = "endpoint",
    check_name: str = "wss",
    domain: str = "rpc.dotters.network",
    endpoint: str = "wss://rpc.dotters.network/kusama",
    ipv6: bool = False,
    error: str = "",
    data: dict[str, Any] | None = None,
    passed: bool = True,
    sender: str = "MONITOR-EU-1",
) -> FinalizeMessage:
    if check_type == "site":
        domain, endpoint = "", ""
    elif check_type == "domain":
        endpoint = ""
    proposal = Proposal(
        id=proposal_id,
        sender_node_id=sender,
        check_type=check_type,
        check_name=check_name,
        member_name=member,
        domain_name=domain,
        endpoint=endpoint,
        proposed_status=online,
        error_text=error if not online else "",
        data=data,
        is_ipv6=ipv6,
        timestamp=GoTime.parse(decided_at),
    )
    return FinalizeMessage(proposal=proposal, passed=passed, decided_at=GoTime.parse(decided_at))
