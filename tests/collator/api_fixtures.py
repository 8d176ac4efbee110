"""Shared fixtures of the API tests: the real IBP config applied, usage rows, outage rows.

Import the fixtures you use into the test module (`from tests.collator.api_fixtures import …`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from members.config_files import NetworkConfig
from members.selectors import network_config_current
from members.services import config_sync
from metrics.models import MemberEvent, RequestStat
from metrics.rollups import usage_rollups_refresh

CONFIG_FILES = {
    "StaticDNSConfig": "geodns-static.json",
    "MembersConfig": "members_professional.json",
    "ServicesConfig": "services_rpc.json",
    "IaasPricingConfig": "services_rpc_iaaspricing.json",
    "ServicesRequestsConfig": "services_rpc_requests.json",
    "AlertsConfig": "",
}


@pytest.fixture
def network_config(db: Any, ibp_config_dir: Path) -> NetworkConfig:
    """The bundled real IBP config (Apache-2.0, ibp-network/config), applied by the real sync."""
    urls = {key: str(ibp_config_dir / name) if name else "" for key, name in CONFIG_FILES.items()}
    result = config_sync(urls=urls)
    assert result.status == "applied", result
    config = network_config_current()
    assert config is not None
    return config


@pytest.fixture
def api(db: Any) -> Iterator[Client]:
    """A client for the WSGI app, with an empty throttle cache."""
    cache.clear()
    yield Client()
    cache.clear()


def get_json(client: Client, path: str, expect: int = 200, **params: Any) -> Any:
    response = client.get(path, params)
    assert response.status_code == expect, (response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


def add_usage(rows: list[dict[str, Any]]) -> None:
    """Store raw per-node usage rows and refresh the rollups of their days, as ingestion does."""
    defaults: dict[str, Any] = {
        "node_id": "NODE-A",
        "domain_name": "",
        "member_name": "",
        "network_asn": "",
        "network_name": "",
        "country_code": "",
        "country_name": "",
        "is_ipv6": 0,
    }
    days: set[date] = set()
    for row in rows:
        RequestStat.objects.create(**(defaults | row))
        days.add(row["date"])
    usage_rollups_refresh(dates=days)


def add_event(**fields: Any) -> MemberEvent:
    values: dict[str, Any] = {
        "check_type": "1",
        "check_name": "ping",
        "endpoint": "",
        "member_name": "Stake Plus",
        "domain_name": "",
        "status": 0,
        "is_ipv6": 0,
    }
    values.update(fields)
    return MemberEvent.objects.create(**values)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
