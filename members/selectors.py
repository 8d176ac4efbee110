"""Reads of the registry and of the config history."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from members.config_files import MemberConfig, NetworkConfig, ServiceConfig, parse_network_config
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


# --- the config the API serves -------------------------------------------------------------

# Parsed configs by snapshot id. A snapshot never changes once stored, so an entry never goes
# stale; only the latest one is kept, and a new sync simply brings a new id.
# Keyed by (id, content hash): ids can be reused after a rolled-back transaction (tests).
_parsed_configs: dict[tuple[int, str], NetworkConfig] = {}
_parsed_configs_lock = threading.Lock()


def network_config_current() -> NetworkConfig | None:
    """The config applied last (what the API serves), or None before the first sync.

    One indexed query per call; the parse is done once per snapshot and process.
    """
    latest = (
        ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED)
        .order_by("-applied_at", "-id")
        .values_list("id", "content_hash")
        .first()
    )
    if latest is None:
        return None
    with _parsed_configs_lock:
        cached = _parsed_configs.get(latest)
    if cached is not None:
        return cached
    config = network_config_from_snapshot(snapshot=ConfigSnapshot.objects.get(pk=latest[0]))
    with _parsed_configs_lock:
        _parsed_configs.clear()
        _parsed_configs[latest] = config
    return config


# --- the member directory and the service catalogue (api-contract §2.9, §2.11–2.14) ---------


def _number(value: Decimal) -> int | float:
    """A config number as JSON: 16 stays 16, 1.5 stays 1.5."""
    return int(value) if value == value.to_integral_value() else float(value)


def member_json(*, member: MemberConfig) -> dict[str, Any]:
    item: dict[str, Any] = {"name": member.key}
    if member.website:
        item["website"] = member.website
    if member.logo:
        item["logo"] = member.logo
    item["level"] = member.level
    item["joined_date"] = (member.joined or datetime.fromtimestamp(0, tz=UTC)).astimezone(UTC).date().isoformat()
    item["region"] = member.region
    item["latitude"] = float(member.latitude)
    item["longitude"] = float(member.longitude)
    if member.ipv4:
        item["service_ipv4"] = member.ipv4
    if member.ipv6:
        item["service_ipv6"] = member.ipv6
    # Every assigned name once, in config order; unknown and inactive ones included, as the
    # dashboard compares them with the active services itself (quirk Q11: no duplicates).
    item["services"] = list(dict.fromkeys(member.assignments))
    item["active"] = member.active
    item["override"] = False
    return item


def member_directory(*, config: NetworkConfig | None) -> list[dict[str, Any]]:
    """Every member, active or not, sorted by key (quirk Q10)."""
    if config is None:
        return []
    return [member_json(member=config.members[key]) for key in sorted(config.members)]


def member_lookup(*, config: NetworkConfig | None, name: str) -> MemberConfig | None:
    """By key first, then by Details.Name (quirk Q25)."""
    return config.member_by_name(name) if config is not None and name else None


def _member_counts(config: NetworkConfig) -> dict[str, int]:
    """Distinct active members per service key (quirk Q11: a member counts once)."""
    counts: dict[str, int] = {}
    for member in config.members.values():
        if not member.active:
            continue
        for service in config.member_services(member):
            counts[service.key] = counts.get(service.key, 0) + 1
    return counts


def service_json(*, service: ServiceConfig, member_count: int) -> dict[str, Any]:
    providers = sorted(service.providers, key=lambda p: (p.name.lower(), p.name))
    return {
        "name": service.key,
        "display_name": service.display_name,
        "service_type": service.service_type,
        "network_name": service.network_name,
        "relay_network": service.relay_network,
        "network_type": service.network_type,
        "website_url": service.website_url,
        "logo_url": service.logo_url,
        "description": service.description,
        "active": service.active,
        "level_required": service.level_required,
        "resources": {
            "nodes": service.nodes,
            "cores": _number(service.cores),
            "memory": _number(service.memory),
            "disk": _number(service.disk),
            "bandwidth": _number(service.bandwidth),
        },
        "providers": [{"name": p.name, "rpc_urls": list(p.rpc_urls)} for p in providers],
        "member_count": member_count,
        # The reference's placeholder; the billing API carries the real costs.
        "total_monthly_cost": 0,
    }


def service_catalogue(*, config: NetworkConfig | None) -> list[dict[str, Any]]:
    """Every service, sorted by lower-cased key (then key)."""
    if config is None:
        return []
    counts = _member_counts(config)
    keys = sorted(config.services, key=lambda k: (k.lower(), k))
    return [service_json(service=config.services[k], member_count=counts.get(k, 0)) for k in keys]


def service_lookup(*, config: NetworkConfig | None, name: str) -> dict[str, Any] | None:
    """Exact, case-sensitive key (api-contract §2.12)."""
    if config is None or name not in config.services:
        return None
    return service_json(service=config.services[name], member_count=_member_counts(config).get(name, 0))


def service_hierarchy(*, config: NetworkConfig | None) -> dict[str, Any]:
    """Relays with their system and community chains; everything unattached is an orphan.

    Unlike the reference, a chain whose relay does not exist is listed as an orphan
    instead of vanishing (quirk Q11), and lists are `[]`, never null.
    """
    services = service_catalogue(config=config)

    def order(item: dict[str, Any]) -> tuple[str, str]:
        return (item["display_name"].lower(), item["name"])

    relays = {s["name"]: s for s in services if s["relay_network"] == "" and s["network_type"] == "Relay"}
    system: dict[str, list[dict[str, Any]]] = {key: [] for key in relays}
    community: dict[str, list[dict[str, Any]]] = {key: [] for key in relays}
    orphans: list[dict[str, Any]] = []
    for service in services:
        if service["name"] in relays:
            continue
        relay = service["relay_network"]
        if relay in relays and service["network_type"] == "System":
            system[relay].append(service)
        elif relay in relays and service["network_type"] == "Community":
            community[relay].append(service)
        else:
            orphans.append(service)
    return {
        "relay_chains": [
            {
                "relay": relays[key],
                "system_chains": sorted(system[key], key=order),
                "community_chains": sorted(community[key], key=order),
            }
            for key in sorted(relays, key=lambda k: order(relays[k]))
        ],
        "orphans": sorted(orphans, key=order),
    }


def service_summary(*, config: NetworkConfig | None) -> dict[str, Any]:
    services = list(config.services.values()) if config is not None else []
    hierarchy = service_hierarchy(config=config)
    service_types: dict[str, int] = {}
    network_types: dict[str, int] = {}
    totals = {"nodes": 0, "cores": Decimal(0), "memory": Decimal(0), "disk": Decimal(0), "bandwidth": Decimal(0)}
    for service in services:
        service_types[service.service_type] = service_types.get(service.service_type, 0) + 1
        network_types[service.network_type] = network_types.get(service.network_type, 0) + 1
        totals["nodes"] += service.nodes
        for resource in ("cores", "memory", "disk", "bandwidth"):
            totals[resource] += getattr(service, resource) * service.nodes
    return {
        "active_services": sum(1 for s in services if s.active),
        "network_types": dict(sorted(network_types.items())),
        "relay_chains": len(hierarchy["relay_chains"]),
        "service_types": dict(sorted(service_types.items())),
        "total_resources": {key: _number(Decimal(value)) for key, value in totals.items()},
        "total_services": len(services),
    }
