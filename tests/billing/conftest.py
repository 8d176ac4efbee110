"""Fixtures for the statement tests: config snapshots as stored rows, outages as real rows."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from members.config_files import MEMBERS, PRICING, SERVICES
from members.models import ConfigSnapshot
from metrics.models import MemberEvent
from tests.billing.worked_example import utc

SnapshotFactory = Callable[..., ConfigSnapshot]


def real_files(directory: Path) -> dict[str, str]:
    return {
        MEMBERS: (directory / "members_professional.json").read_text(),
        SERVICES: (directory / "services_rpc.json").read_text(),
        PRICING: (directory / "services_rpc_iaaspricing.json").read_text(),
    }


@pytest.fixture
def snapshot_applied() -> SnapshotFactory:
    """Store an applied ConfigSnapshot from raw files, as config_sync does, at `applied_at`."""

    def make(files: Mapping[str, str], *, applied_at: datetime) -> ConfigSnapshot:
        entries = {
            key: {"source": f"test:{key}", "sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text}
            for key, text in files.items()
        }
        content_hash = hashlib.sha256("".join(e["sha256"] for e in entries.values()).encode()).hexdigest()
        return ConfigSnapshot.objects.create(
            status=ConfigSnapshot.Status.APPLIED,
            content_hash=content_hash,
            files=entries,
            fetched_at=applied_at,
            applied_at=applied_at,
            last_attempt_at=applied_at,
        )

    return make


@pytest.fixture
def work_dir(settings: Any, tmp_path: Path) -> Path:
    """Billing files go to a temporary WorkDir, so runs never touch each other's files.

    The engine's tests check records and companions, not PDFs (tests/billing/test_pdf_*.py
    do, with `pdf_settings`), so they pin the renderer that writes none.
    """
    settings.WORK_DIR = tmp_path
    settings.BILLING_PDF_RENDERER = "billing.rendering.NoPdfRenderer"
    return tmp_path


def outage_create(**fields: Any) -> MemberEvent:
    defaults: dict[str, Any] = {
        "check_type": "1",
        "check_name": "ping",
        "endpoint": "",
        "domain_name": "",
        "status": 0,
        "is_ipv6": 0,
    }
    defaults.update(fields)
    if defaults.get("end_time") is not None and "status" not in fields:
        defaults["status"] = 1
    return MemberEvent.objects.create(**defaults)


def odd_credit_outages_create() -> None:
    """Three outages of March 2025 on the real config that give odd credits: a 61-min site
    outage on Stake Plus, a 7-min endpoint outage on Amforc/Kusama, and a 73-min domain outage
    on Dwellir (rpc.ibp.network, shared by several services)."""
    outage_create(member_name="Stake Plus", start_time=utc(2025, 3, 3, 10), end_time=utc(2025, 3, 3, 11, 1))
    outage_create(
        member_name="Amforc", check_type="3", endpoint="wss://rpc.dotters.network/kusama",
        domain_name="rpc.dotters.network", start_time=utc(2025, 3, 9), end_time=utc(2025, 3, 9, 0, 7),
    )  # fmt: skip
    outage_create(
        member_name="Dwellir", check_type="2", domain_name="rpc.ibp.network",
        start_time=utc(2025, 3, 20, 1), end_time=utc(2025, 3, 20, 2, 13),
    )  # fmt: skip
