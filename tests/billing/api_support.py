"""Fixtures of the billing API tests: the real IBP config applied by the real sync, March 2025
issued by the real engine with the real PDF renderer, files under a temporary WorkDir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.test import Client

from billing.services import statement_generate_month
from members.services import config_sync
from tests.billing.conftest import outage_create
from tests.billing.pdf_support import RENDERER, utc
from tests.collator.api_fixtures import CONFIG_FILES

APRIL_1 = utc(2025, 4, 1, 0, 5)
# The hosts of Polkadot's own RPC URLs (wss://polkadot.dotters.network): a domain outage there
# counts against Stake Plus / Polkadot only.
POLKADOT_HOST = "polkadot.dotters.network"


@pytest.fixture
def billing_files(settings: Any, tmp_path: Path) -> Path:
    """The real PDF renderer, writing under a temporary WorkDir."""
    from billing.rendering import _renderer_for

    settings.WORK_DIR = tmp_path
    settings.BILLING_PDF_RENDERER = RENDERER
    _renderer_for.cache_clear()
    return tmp_path


@pytest.fixture
def real_config(db: Any, ibp_config_dir: Path) -> None:
    """The bundled IBP config (Apache-2.0, ibp-network/config), synced on 2025-02-20, so it is
    the config in force for March 2025."""
    urls = {key: str(ibp_config_dir / name) if name else "" for key, name in CONFIG_FILES.items()}
    with time_machine.travel(utc(2025, 2, 20), tick=False):
        result = config_sync(urls=urls)
    assert result.status == "applied", result


@pytest.fixture
def issued_march(real_config: None, billing_files: Path) -> Path:
    """March 2025 issued at 2025-04-01 00:05 with one outage: Stake Plus, Polkadot's own
    domain, down 2 h (10 March 10:00-12:00). Returns the WorkDir."""
    outage_create(
        member_name="Stake Plus", check_type="domain", check_name="wss", domain_name=POLKADOT_HOST,
        endpoint="wss://polkadot.dotters.network", start_time=utc(2025, 3, 10, 10), end_time=utc(2025, 3, 10, 12),
    )  # fmt: skip
    result = statement_generate_month(month="2025-03", now=APRIL_1)
    assert not result.pdf_failures, result
    return billing_files


def body_of(client: Client, path: str, expect: int = 200, **params: Any) -> Any:
    response = client.get(path, params)
    assert response.status_code == expect, (response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)
