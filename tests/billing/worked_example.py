"""The worked example of data-model §8 (config and outage rows), shared by several tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from billing.sla import OutageRow
from members.config_files import MEMBERS, PRICING, SERVICES, NetworkConfig, parse_network_config

PRICING_JSON = {
    "Europe": {"cores": 10, "memory": 1, "disk": 0.1, "bandwidth": 0.05},
    "North America": {"cores": 12, "memory": 1.5, "disk": 0.2, "bandwidth": 0.1},
}
SERVICES_JSON = {
    "Polkadot": {
        "Configuration": {"Name": "Polkadot", "ServiceType": "RPC", "Active": 1, "LevelRequired": 3},
        "Resources": {"nodes": 2, "cores": 4, "memory": 16, "disk": 1000, "bandwidth": 2000},
        "Providers": {"Dotters": {"RpcUrls": ["wss://polkadot.dotters.network", "wss://rpc.dotters.network/polkadot"]}},
    },
    "Kusama": {
        "Configuration": {"Name": "Kusama", "ServiceType": "RPC", "Active": 1, "LevelRequired": 3},
        "Resources": {"nodes": 1, "cores": 2, "memory": 8, "disk": 500, "bandwidth": 1000},
        "Providers": {"Dotters": {"RpcUrls": ["wss://kusama.dotters.network", "wss://rpc.dotters.network/kusama"]}},
    },
    "Westend": {
        "Configuration": {"Name": "Westend", "ServiceType": "RPC", "Active": 0, "LevelRequired": 1},
        "Resources": {"nodes": 1, "cores": 2, "memory": 4, "disk": 200, "bandwidth": 500},
        "Providers": {"Dotters": {"RpcUrls": ["wss://westend.dotters.network"]}},
    },
}
MEMBERS_JSON = {
    "Alpha": {
        "Details": {"Name": "Alpha Nodes"},
        "Membership": {"MemberLevel": 6},
        "Service": {"Active": 1, "ServiceIPv4": "203.0.113.10", "ServiceIPv6": "2001:db8::10"},
        "ServiceAssignments": {"Polkadot": ["Polkadot", "Kusama"], "Testnets": ["Westend"]},
        "Location": {"Region": "Europe"},
    },
    "beta": {
        "Details": {"Name": "Beta Hosting"},
        "Membership": {"MemberLevel": 3},
        "Service": {"Active": 1, "ServiceIPv4": "198.51.100.20"},
        "ServiceAssignments": {"Polkadot": ["Polkadot"]},
        "Location": {"Region": " north AMERICA "},
    },
}


def example_files(members: dict | None = None, services: dict | None = None, pricing: dict | None = None) -> dict:
    return {
        MEMBERS: json.dumps(members if members is not None else MEMBERS_JSON),
        SERVICES: json.dumps(services if services is not None else SERVICES_JSON),
        PRICING: json.dumps(pricing if pricing is not None else PRICING_JSON),
    }


def example_config() -> NetworkConfig:
    return parse_network_config(example_files())


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Rows of §8.3 (ids as there). Row 5's NULL endpoint/domain arrive as '' (B8: COALESCE).
EXAMPLE_ROWS = [
    OutageRow(id=1, check_type="1", check_name="ping", endpoint="", domain_name="", member_name="Alpha Nodes",
         status=0, is_ipv6=False, start_time=utc(2025, 2, 28, 23), end_time=utc(2025, 3, 1, 1, 30)),
    OutageRow(id=2, check_type="3", check_name="wss", endpoint="wss://rpc.dotters.network/kusama",
         domain_name="rpc.dotters.network", member_name="Alpha Nodes", status=0, is_ipv6=False,
         start_time=utc(2025, 3, 1, 1), end_time=utc(2025, 3, 1, 3)),
    OutageRow(id=3, check_type="2", check_name="ssl", endpoint="polkadot.dotters.network",
         domain_name="polkadot.dotters.network", member_name="Alpha Nodes", status=1, is_ipv6=False,
         start_time=utc(2025, 3, 10, 12), end_time=utc(2025, 3, 10, 14)),
    OutageRow(id=4, check_type="3", check_name="wss", endpoint="wss://kusama.dotters.network",
         domain_name="kusama.dotters.network", member_name="Alpha Nodes", status=0, is_ipv6=True,
         start_time=utc(2025, 3, 31, 20), end_time=None),
    OutageRow(id=5, check_type="site", check_name="ping", endpoint="", domain_name="", member_name="Beta Hosting",
         status=0, is_ipv6=False, start_time=utc(2025, 3, 15, 10), end_time=utc(2025, 3, 15, 10, 3)),
    OutageRow(id=6, check_type="2", check_name="ssl", endpoint="kusama.dotters.network",
         domain_name="kusama.dotters.network", member_name="Alpha Nodes", status=0, is_ipv6=False,
         start_time=utc(2025, 2, 10, 8), end_time=utc(2025, 2, 10, 9)),
]  # fmt: skip


def example_rows() -> list[OutageRow]:
    return list(EXAMPLE_ROWS)
