"""The IBP network config files: strict parsing into frozen dataclasses (data-model §5.3–5.5).

Pure: bytes in, dataclasses or a `ConfigFileError` out. The sync service stores the raw
files in a ConfigSnapshot and billing parses a stored snapshot again with this module, so
a month is always billed with the config that was in force (DECISIONS 15).

Go decodes these files case-insensitively and ignores unknown keys, but rejects a whole
file when a value has the wrong JSON type (`"MemberLevel": "6"`, `"nodes": 1.5`). We do the
same, and say which file and which field.

Numbers are decoded as `Decimal` straight from their JSON text, so a price written as
`1.2562398` is exactly that, never the nearest binary float.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# The config keys of System.ConfigUrls that the collator reads, in Go's load order.
MEMBERS = "MembersConfig"
SERVICES = "ServicesConfig"
PRICING = "IaasPricingConfig"
ALERTS = "AlertsConfig"
STATIC_DNS = "StaticDNSConfig"
SERVICES_REQUESTS = "ServicesRequestsConfig"
REQUIRED_FILES = (MEMBERS, SERVICES, PRICING)

# The longest member key and Details.Name the database holds. The key is stored in
# members.member_index and billing_statement.member_key; Details.Name is what monitors write in
# member_events.member_name, VARCHAR(128) in the Go schema (data-model §3.2), so a longer
# name could never be matched to its outages. Longer values fail the members file with an
# error naming the field, rather than the sync failing in the database (or, for the name,
# the member being billed as if it never went down).
MEMBER_KEY_MAX_CHARS = 128
MEMBER_NAME_MAX_CHARS = 128


class ConfigFileError(ValueError):
    """A config file that cannot be used. The message names the file and the field."""

    def __init__(self, file_key: str, message: str, *, field_path: str = "", source: str = "") -> None:
        self.file_key = file_key
        self.field_path = field_path
        self.source = source
        where = f"{file_key} ({source})" if source else file_key
        text = f"{where}: field {field_path}: {message}" if field_path else f"{where}: {message}"
        super().__init__(text)


@dataclass(frozen=True)
class MemberConfig:
    key: str
    name: str
    website: str
    logo: str
    level: int
    joined: datetime | None
    last_rankup: datetime | None
    active: bool
    ipv4: str
    ipv6: str
    monitor_url: str
    region: str
    latitude: Decimal
    longitude: Decimal
    # Every assigned service name as written, group names dropped (they mean nothing).
    assignments: tuple[str, ...]


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    rpc_urls: tuple[str, ...]


@dataclass(frozen=True)
class ServiceConfig:
    key: str
    name: str
    service_type: str
    active: bool
    level_required: int
    network_name: str
    relay_network: str
    network_type: str
    display_name: str
    website_url: str
    logo_url: str
    description: str
    state_root_hash: str
    nodes: int
    cores: Decimal
    memory: Decimal
    disk: Decimal
    bandwidth: Decimal
    providers: tuple[ProviderConfig, ...]

    @property
    def rpc_urls(self) -> tuple[str, ...]:
        return tuple(url for provider in self.providers for url in provider.rpc_urls)


@dataclass(frozen=True)
class RegionPricing:
    region: str
    cores: Decimal
    memory: Decimal
    disk: Decimal
    bandwidth: Decimal


def normalise_name(name: str) -> str:
    """Regions and service names match trimmed and case-insensitively (DECISIONS 9)."""
    return name.strip().lower()


@dataclass(frozen=True)
class NetworkConfig:
    members: Mapping[str, MemberConfig]
    services: Mapping[str, ServiceConfig]
    pricing: Mapping[str, RegionPricing]
    # matrix.members: slug → list of Matrix user ids (data-model §5.8); empty when not configured.
    alert_mentions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def price_for_region(self, region: str) -> RegionPricing | None:
        wanted = normalise_name(region)
        for key in sorted(self.pricing):
            if normalise_name(key) == wanted:
                return self.pricing[key]
        return None

    def service_for_name(self, name: str) -> ServiceConfig | None:
        """The service an assignment refers to; the exact key wins over a case-insensitive one."""
        if name in self.services:
            return self.services[name]
        wanted = normalise_name(name)
        for key in sorted(self.services):
            if normalise_name(key) == wanted:
                return self.services[key]
        return None

    def member_services(self, member: MemberConfig) -> list[ServiceConfig]:
        """The member's assigned services, resolved to canonical keys, each once, in order.

        Unknown names are left out here; `config_warnings` reports them.
        """
        seen: set[str] = set()
        resolved: list[ServiceConfig] = []
        for name in member.assignments:
            service = self.service_for_name(name)
            if service is not None and service.key not in seen:
                seen.add(service.key)
                resolved.append(service)
        return resolved

    def member_by_name(self, name: str) -> MemberConfig | None:
        """Find a member by its key or its display name (events carry Details.Name)."""
        if name in self.members:
            return self.members[name]
        for member in self.members.values():
            if member.name == name:
                return member
        return None


# --- parsing helpers -----------------------------------------------------------------------


class _Reader:
    """Typed, case-insensitive access to one JSON object, with the path for errors."""

    def __init__(self, file_key: str, source: str, value: Any, path: str) -> None:
        self.file_key = file_key
        self.source = source
        self.path = path
        if not isinstance(value, Mapping):
            self.fail(f"expected an object, got {_json_type(value)}")
        self.value: Mapping[str, Any] = value

    def fail(self, message: str, key: str = "") -> None:
        field_path = f"{self.path}.{key}" if key and self.path else (key or self.path)
        raise ConfigFileError(self.file_key, message, field_path=field_path, source=self.source)

    def get(self, key: str) -> Any:
        # An exact match first: map keys (member, service, region, provider names) are
        # case-sensitive in Go, so `AMFORC` and `Amforc` are two entries, never one read twice.
        if key in self.value:
            return self.value[key]
        wanted = key.lower()
        for candidate, value in self.value.items():
            if candidate.lower() == wanted:
                return value
        return None

    def child(self, key: str) -> _Reader:
        value = self.get(key)
        return _Reader(
            self.file_key, self.source, {} if value is None else value, f"{self.path}.{key}" if self.path else key
        )

    def string(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(f"expected a string, got {_json_type(value)}", key)
        return value

    def integer(self, key: str) -> int:
        value = self.get(key)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.fail(f"expected an integer, got {_json_type(value)}", key)
        if isinstance(value, Decimal):
            if value != value.to_integral_value():
                self.fail(f"expected an integer, got {value}", key)
            return int(value)
        return value

    def number(self, key: str) -> Decimal:
        value = self.get(key)
        if value is None:
            return Decimal(0)
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.fail(f"expected a number, got {_json_type(value)}", key)
        return Decimal(value)

    def string_list(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(f"expected a list of strings, got {_json_type(value)}", key)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"expected a string, got {_json_type(item)}", f"{key}[{index}]")
        return tuple(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | Decimal | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def decode_json(file_key: str, raw: bytes | str, *, source: str = "") -> Any:
    text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(
            file_key, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", source=source
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(file_key, "the file is not UTF-8 text", source=source) from exc


def _unix_time(reader: _Reader, key: str) -> datetime | None:
    seconds = reader.integer(key)
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds > 0 else None


def parse_members(raw: bytes | str, *, source: str = "") -> dict[str, MemberConfig]:
    root = _Reader(MEMBERS, source, decode_json(MEMBERS, raw, source=source), "")
    members: dict[str, MemberConfig] = {}
    for key in root.value:
        if len(key) > MEMBER_KEY_MAX_CHARS:
            root.fail(f"the member key is {len(key)} characters long; at most {MEMBER_KEY_MAX_CHARS} are allowed", key)
        entry = root.child(key)
        details = entry.child("Details")
        membership = entry.child("Membership")
        service = entry.child("Service")
        location = entry.child("Location")
        groups = entry.child("ServiceAssignments")
        assignments: list[str] = []
        for group in groups.value:
            assignments.extend(groups.string_list(group))
        name = details.string("Name")
        if not name.strip():
            # Events are linked to members by Details.Name (bug B7): a member without one
            # could never be matched to its outages.
            details.fail("must not be empty", "Name")
        if len(name) > MEMBER_NAME_MAX_CHARS:
            details.fail(
                f"is {len(name)} characters long; at most {MEMBER_NAME_MAX_CHARS} are allowed "
                "(monitors report outages under this name in member_events.member_name)",
                "Name",
            )
        members[key] = MemberConfig(
            key=key,
            name=name,
            website=details.string("Website"),
            logo=details.string("Logo"),
            level=membership.integer("MemberLevel"),
            joined=_unix_time(membership, "Joined"),
            last_rankup=_unix_time(membership, "LastRankup"),
            active=service.integer("Active") == 1,
            ipv4=service.string("ServiceIPv4"),
            ipv6=service.string("ServiceIPv6"),
            monitor_url=service.string("MonitorUrl"),
            region=location.string("Region"),
            latitude=location.number("Latitude"),
            longitude=location.number("Longitude"),
            assignments=tuple(assignments),
        )
    names = [m.name for m in members.values()]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigFileError(MEMBERS, f"Details.Name must be unique; repeated: {', '.join(duplicated)}", source=source)
    return members


def parse_services(raw: bytes | str, *, source: str = "") -> dict[str, ServiceConfig]:
    root = _Reader(SERVICES, source, decode_json(SERVICES, raw, source=source), "")
    services: dict[str, ServiceConfig] = {}
    for key in root.value:
        entry = root.child(key)
        configuration = entry.child("Configuration")
        resources = entry.child("Resources")
        providers_reader = entry.child("Providers")
        providers = tuple(
            ProviderConfig(name=name, rpc_urls=providers_reader.child(name).string_list("RpcUrls"))
            for name in providers_reader.value
        )
        services[key] = ServiceConfig(
            key=key,
            name=configuration.string("Name"),
            service_type=configuration.string("ServiceType"),
            active=configuration.integer("Active") == 1,
            level_required=configuration.integer("LevelRequired"),
            network_name=configuration.string("NetworkName"),
            relay_network=configuration.string("RelayNetwork"),
            network_type=configuration.string("NetworkType"),
            display_name=configuration.string("DisplayName"),
            website_url=configuration.string("WebsiteURL"),
            logo_url=configuration.string("LogoURL"),
            description=configuration.string("Description"),
            state_root_hash=configuration.string("StateRootHash"),
            nodes=resources.integer("nodes"),
            cores=resources.number("cores"),
            memory=resources.number("memory"),
            disk=resources.number("disk"),
            bandwidth=resources.number("bandwidth"),
            providers=providers,
        )
    return services


def parse_pricing(raw: bytes | str, *, source: str = "") -> dict[str, RegionPricing]:
    root = _Reader(PRICING, source, decode_json(PRICING, raw, source=source), "")
    pricing: dict[str, RegionPricing] = {}
    for region in root.value:
        prices = root.child(region)
        pricing[region] = RegionPricing(
            region=region,
            cores=prices.number("cores"),
            memory=prices.number("memory"),
            disk=prices.number("disk"),
            bandwidth=prices.number("bandwidth"),
        )
    normalised = [normalise_name(r) for r in pricing]
    clashes = sorted({r for r in normalised if normalised.count(r) > 1})
    if clashes:
        # Go would pick one of them at random (map order); we refuse to guess.
        raise ConfigFileError(
            PRICING, f"regions repeated once trimmed and lower-cased: {', '.join(clashes)}", source=source
        )
    return pricing


def parse_alert_mentions(raw: bytes | str, *, source: str = "") -> dict[str, tuple[str, ...]]:
    root = _Reader(ALERTS, source, decode_json(ALERTS, raw, source=source), "")
    members = root.child("matrix").child("members")
    return {slug: members.string_list(slug) for slug in members.value}


def parse_network_config(
    files: Mapping[str, bytes | str], *, sources: Mapping[str, str] | None = None
) -> NetworkConfig:
    """Parse the raw files of one snapshot. Raises ConfigFileError on the first bad file."""
    sources = sources or {}
    for key in REQUIRED_FILES:
        if key not in files:
            raise ConfigFileError(key, "the file is missing", source=sources.get(key, ""))
    alerts = files.get(ALERTS)
    return NetworkConfig(
        members=parse_members(files[MEMBERS], source=sources.get(MEMBERS, "")),
        services=parse_services(files[SERVICES], source=sources.get(SERVICES, "")),
        pricing=parse_pricing(files[PRICING], source=sources.get(PRICING, "")),
        alert_mentions=parse_alert_mentions(alerts, source=sources.get(ALERTS, "")) if alerts else {},
    )


def config_warnings(config: NetworkConfig) -> list[str]:
    """Problems that do not stop a sync but that an operator must see (DECISIONS 10)."""
    warnings: list[str] = []
    for member in config.members.values():
        if config.price_for_region(member.region) is None:
            warnings.append(f"member {member.key!r}: region {member.region!r} has no price, so it cannot be billed")
        seen: dict[str, str] = {}
        for name in member.assignments:
            service = config.service_for_name(name)
            if service is None:
                warnings.append(f"member {member.key!r}: assignment {name!r} names no known service")
                continue
            if service.key in seen:
                warnings.append(f"member {member.key!r}: service {service.key!r} is assigned twice; it is billed once")
                continue
            seen[service.key] = name
            if not service.active:
                warnings.append(f"member {member.key!r}: service {service.key!r} is inactive and is not billed")
            if member.level < service.level_required:
                warnings.append(
                    f"member {member.key!r}: level {member.level} is below {service.key!r}'s required level "
                    f"{service.level_required}; it is billed all the same"
                )
    return warnings


def iter_assignment_pairs(config: NetworkConfig) -> Iterable[tuple[MemberConfig, ServiceConfig]]:
    """Every (member, service) assignment, de-duplicated, unknown services left out."""
    for member in config.members.values():
        for service in config.member_services(member):
            yield member, service
