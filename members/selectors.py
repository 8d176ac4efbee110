"""Reads of the registry and of the config history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from members.config_files import NetworkConfig, parse_network_config
from members.models import ConfigSnapshot


class NoConfigError(LookupError):
    """No config has ever been applied: run `manage.py sync_config` first."""


@dataclass(frozen=True)
class ConfigInForce:
    snapshot: ConfigSnapshot
    config: NetworkConfig
    # False when no snapshot predates the moment asked about (a fresh install, or a switch
    # from the Go service), so the earliest one stands in; documents say so (DECISIONS 15).
    predates: bool


def network_config_from_snapshot(*, snapshot: ConfigSnapshot) -> NetworkConfig:
    """Parse a stored snapshot's raw files again, exactly as they were applied."""
    files = {key: entry["text"] for key, entry in snapshot.files.items()}
    sources = {key: entry.get("source", "") for key, entry in snapshot.files.items()}
    return parse_network_config(files, sources=sources)


def config_snapshot_in_force(*, at: datetime) -> ConfigInForce:
    """The config in force at `at`: the last snapshot applied before it (DECISIONS 15).

    Month M is billed with `at` = the first instant of the next month.
    """
    applied = ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED)
    snapshot = applied.filter(applied_at__lt=at).order_by("-applied_at", "-id").first()
    predates = snapshot is not None
    if snapshot is None:
        snapshot = applied.order_by("applied_at", "id").first()
    if snapshot is None:
        raise NoConfigError("no config has been applied yet; run `manage.py sync_config`")
    return ConfigInForce(snapshot=snapshot, config=network_config_from_snapshot(snapshot=snapshot), predates=predates)


def config_snapshot_latest_applied() -> ConfigSnapshot | None:
    return ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED).order_by("-applied_at", "-id").first()


def config_snapshot_latest_failed() -> ConfigSnapshot | None:
    return ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.FAILED).order_by("-fetched_at", "-id").first()
