"""Fixtures for the config sync tests: config file sets and a real local HTTP server."""

from __future__ import annotations

import dataclasses
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from members.models import ConfigSnapshot, Member, RegionPrice, Service, ServiceAssignment, ServiceProvider

BASE_FILES = {
    "StaticDNSConfig": "geodns-static.json",
    "MembersConfig": "members_professional.json",
    "ServicesConfig": "services_rpc.json",
    "IaasPricingConfig": "services_rpc_iaaspricing.json",
    "ServicesRequestsConfig": "services_rpc_requests.json",
}
SNAPSHOT_2026 = "2026-01-18"


def config_urls(folder: Path) -> dict[str, str]:
    return {key: str(folder / name) for key, name in BASE_FILES.items()} | {"AlertsConfig": ""}


@pytest.fixture
def base_urls(ibp_config_dir: Path) -> dict[str, str]:
    """ConfigUrls pointing at the bundled real config (Apache-2.0, ibp-network/config)."""
    return config_urls(ibp_config_dir)


@pytest.fixture
def urls_2026(ibp_config_dir: Path, tmp_path: Path) -> dict[str, str]:
    """The 2026-01-18 snapshot's three files plus the base folder's other files, in a tmp dir."""
    folder = tmp_path / "ibp-2026"
    shutil.copytree(ibp_config_dir, folder, ignore=shutil.ignore_patterns(SNAPSHOT_2026))
    for name in ("members_professional.json", "services_rpc.json", "services_rpc_iaaspricing.json"):
        shutil.copy(ibp_config_dir / SNAPSHOT_2026 / name, folder / name)
    return config_urls(folder)


@pytest.fixture
def editable_urls(ibp_config_dir: Path, tmp_path: Path) -> dict[str, str]:
    """A copy of the base config in a tmp dir, for tests that break one file."""
    folder = tmp_path / "ibp-edit"
    shutil.copytree(ibp_config_dir, folder, ignore=shutil.ignore_patterns(SNAPSHOT_2026))
    return config_urls(folder)


@pytest.fixture
def use_config_urls(settings: Any) -> Any:
    """Point System.ConfigUrls (what `sync_config` reads) at the given files."""

    def apply(urls: dict[str, str]) -> None:
        collator = settings.COLLATOR
        settings.COLLATOR = dataclasses.replace(
            collator, system=dataclasses.replace(collator.system, config_urls=dict(urls))
        )

    return apply


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server(ibp_config_dir: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving the bundled config folder; unknown paths get 404."""

    def handler(*args: Any, **kwargs: Any) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(ibp_config_dir), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def registry_fingerprint() -> dict[str, list[dict[str, Any]]]:
    """Every registry row with every value, to prove that a failed sync changed nothing."""
    return {
        model._meta.db_table: list(model.objects.order_by("pk").values())
        for model in (Member, Service, ServiceProvider, ServiceAssignment, RegionPrice)
    }


def snapshot_rows() -> list[dict[str, Any]]:
    return list(ConfigSnapshot.objects.order_by("pk").values())
