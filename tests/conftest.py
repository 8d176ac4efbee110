"""Shared fixtures. Tests talk to the real database the settings name (MariaDB in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection

REPO_ROOT = Path(__file__).resolve().parent.parent
IBP_CONFIG_DIR = REPO_ROOT / "config" / "ibp-config"

# A real nats-server per test that asks for one (fixtures `nats_server`, `nats_server_large`).
pytest_plugins = ["tests.nats_server"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if connection.vendor == "mysql":
        return
    skip = pytest.mark.skip(reason="needs MySQL/MariaDB; this is the SQLite pass")
    for item in items:
        if "mysql_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def ibp_config_dir() -> Path:
    """The bundled real IBP config snapshot (Apache-2.0, see config/ibp-config/README.md)."""
    return IBP_CONFIG_DIR
