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
from decimal import ROUND_HALF_UP, Decimal
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

# The registry columns (members/models.py) that hold the other values, by "table.column". A
# value a column cannot hold fails the file here, with an error naming the file and the field;
# left to the database it failed the whole sync with "Out of range value for column …" or
# "Data too long …", naming neither. tests/members/test_config_files.py checks these against
# the models, so the two cannot drift apart.
COLUMN_MAX_CHARS: dict[str, int] = {
    "members.member_website": 512,
    "members.member_logo": 512,
    "members.service_ipv4": 64,
    "members.service_ipv6": 128,
    "members.service_monitorUrl": 256,
    "members.location_region": 64,
    "services.service_index": 128,
    "services.configuration_name": 128,
    "services.configuration_type": 16,
    "services.configuration_networkname": 128,
    "services.configuration_stateroothash": 384,
    "services.configuration_displayname": 255,
    "services.configuration_relaynetwork": 128,
    "services.configuration_networktype": 64,
    "services.configuration_websiteurl": 512,
    "services.configuration_logourl": 512,
    "service_provider.provider_index": 128,
    # The first three RPC URLs fill provider_rpcUrl1..3; every URL is held to the same length.
    "service_provider.provider_rpcUrl1": 256,
    "region_price.region": 64,
}
# configuration_description is a MariaDB TEXT column: 65,535 bytes, not characters.
DESCRIPTION_MAX_BYTES = 65_535
# DECIMAL(max_digits, decimal_places) columns.
COLUMN_DECIMAL_DIGITS: dict[str, tuple[int, int]] = {
    "services.provisioned_cores": (18, 6),
    "services.provisioned_memory": (18, 6),
    "services.provisioned_disk": (18, 6),
    "services.provisioned_bandwidth": (18, 6),
    "region_price.cores": (20, 10),
    "region_price.memory": (20, 10),
    "region_price.disk": (20, 10),
    "region_price.bandwidth": (20, 10),
}
# Integer columns: the largest value each holds (SMALLINT, INT).
COLUMN_MAX_INTEGER: dict[str, int] = {
    "members.membership_level": 32_767,
    "services.configuration_memberLevelReq": 32_767,
    "services.provisioned_nodes": 2_147_483_647,
}
# 9999-12-31T23:59:59Z: the last second both Python's datetime and a MariaDB DATETIME hold.
LAST_UNIX_SECOND = 253_402_300_799


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

    def string(self, key: str, *, column: str = "") -> str:
        """A string; with `column`, no longer than that registry column holds."""
        value = self.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(f"expected a string, got {_json_type(value)}", key)
        if column:
            _check_length(self, key, value, column)
        return value

    def integer(self, key: str, *, column: str = "", non_negative: bool = False) -> int:
        """An integer; with `column`, no larger than that registry column holds."""
        value = self.get(key)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.fail(f"expected an integer, got {_json_type(value)}", key)
        if isinstance(value, Decimal):
            # NaN and Infinity reach here as Decimals (decode_json); int() of them would raise.
            if not value.is_finite() or value != value.to_integral_value():
                self.fail(f"expected an integer, got {value}", key)
            value = int(value)
        if non_negative and value < 0:
            self.fail(f"must not be negative, got {value}", key)
        if column and value > COLUMN_MAX_INTEGER[column]:
            self.fail(f"is {value}; the registry column {column} holds at most {COLUMN_MAX_INTEGER[column]}", key)
        return value

    def number(self, key: str) -> Decimal:
        value = self.get(key)
        if value is None:
            return Decimal(0)
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.fail(f"expected a number, got {_json_type(value)}", key)
        number = Decimal(value)
        if not number.is_finite():
            self.fail(f"expected a finite number, got {number}", key)
        return number

    def amount(self, key: str, *, column: str) -> Decimal:
        """A resource or a price: a finite number, not negative, that the registry column holds.

        A negative one would make a negative base cost, which billing refuses (HTTP 500 on
        /api/billing/*), long after the sync had applied it.
        """
        number = self.number(key)
        if number < 0:
            self.fail(f"must not be negative, got {number}", key)
        max_digits, decimal_places = COLUMN_DECIMAL_DIGITS[column]
        limit = Decimal(10) ** (max_digits - decimal_places)
        # The database rounds to the column's places first, so 999…9.9999999 does not fit either.
        # The first comparison keeps quantize() away from numbers too long for it (1e308).
        if number >= limit or number.quantize(Decimal(1).scaleb(-decimal_places), ROUND_HALF_UP) >= limit:
            largest = limit - Decimal(1).scaleb(-decimal_places)
            self.fail(f"is {number}; the registry column {column} holds at most {largest}", key)
        return number

    def coordinate(self, key: str, *, bound: int) -> Decimal:
        """A latitude (±90) or a longitude (±180); the registry column holds DECIMAL(9, 6)."""
        number = self.number(key)
        if not -bound <= number <= bound:
            self.fail(f"must be between -{bound} and {bound}, got {number}", key)
        return number

    def string_list(self, key: str, *, column: str = "") -> tuple[str, ...]:
        value = self.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(f"expected a list of strings, got {_json_type(value)}", key)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"expected a string, got {_json_type(item)}", f"{key}[{index}]")
            if column:
                _check_length(self, f"{key}[{index}]", item, column)
        return tuple(value)


def _check_length(reader: _Reader, key: str, value: str, column: str) -> None:
    if len(value) > COLUMN_MAX_CHARS[column]:
        reader.fail(
            f"is {len(value)} characters long; the registry column {column} holds at most {COLUMN_MAX_CHARS[column]}",
            key,
        )


def _check_key_length(reader: _Reader, what: str, key: str, column: str) -> None:
    """A JSON object key that becomes a registry column value (a service key, a provider name)."""
    if len(key) > COLUMN_MAX_CHARS[column]:
        reader.fail(f"the {what} is {len(key)} characters long; at most {COLUMN_MAX_CHARS[column]} are allowed", key)


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
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        # NaN and Infinity are not JSON, but Python reads them (as floats). As Decimals they
        # reach the typed readers, which refuse them and name the field.
        return json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(
            file_key, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", source=source
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(file_key, "the file is not UTF-8 text", source=source) from exc
    except RecursionError as exc:
        raise ConfigFileError(file_key, "invalid JSON: nested too deeply", source=source) from exc
    except ValueError as exc:
        # e.g. an integer of more than 4300 digits (Python's int conversion limit).
        raise ConfigFileError(file_key, f"invalid JSON: {exc}", source=source) from exc


def _unix_time(reader: _Reader, key: str) -> datetime | None:
    """Unix seconds; 0 or missing means unknown. Out of range is an error, never a crash."""
    seconds = reader.integer(key)
    if seconds < 0:
        reader.fail(f"Unix time {seconds} is before 1970 (0 means unknown)", key)
    if seconds > LAST_UNIX_SECOND:
        # datetime.fromtimestamp raises OverflowError or ValueError (year 10000) past this.
        reader.fail(f"Unix time {seconds} is after 9999-12-31T23:59:59Z, the last time the registry holds", key)
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
            website=details.string("Website", column="members.member_website"),
            logo=details.string("Logo", column="members.member_logo"),
            level=membership.integer("MemberLevel", column="members.membership_level", non_negative=True),
            joined=_unix_time(membership, "Joined"),
            last_rankup=_unix_time(membership, "LastRankup"),
            active=service.integer("Active") == 1,
            ipv4=service.string("ServiceIPv4", column="members.service_ipv4"),
            ipv6=service.string("ServiceIPv6", column="members.service_ipv6"),
            monitor_url=service.string("MonitorUrl", column="members.service_monitorUrl"),
            region=location.string("Region", column="members.location_region"),
            latitude=location.coordinate("Latitude", bound=90),
            longitude=location.coordinate("Longitude", bound=180),
            assignments=tuple(assignments),
        )
    if not members:
        # Applied, it would delete every member and assignment from the registry.
        raise ConfigFileError(MEMBERS, "the file holds no members; an empty members file is refused", source=source)
    names = [m.name for m in members.values()]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigFileError(MEMBERS, f"Details.Name must be unique; repeated: {', '.join(duplicated)}", source=source)
    return members


def parse_services(raw: bytes | str, *, source: str = "") -> dict[str, ServiceConfig]:
    root = _Reader(SERVICES, source, decode_json(SERVICES, raw, source=source), "")
    services: dict[str, ServiceConfig] = {}
    for key in root.value:
        _check_key_length(root, "service key", key, "services.service_index")
        entry = root.child(key)
        configuration = entry.child("Configuration")
        resources = entry.child("Resources")
        providers_reader = entry.child("Providers")
        providers: list[ProviderConfig] = []
        for provider_name in providers_reader.value:
            _check_key_length(providers_reader, "provider name", provider_name, "service_provider.provider_index")
            urls = providers_reader.child(provider_name).string_list(
                "RpcUrls", column="service_provider.provider_rpcUrl1"
            )
            providers.append(ProviderConfig(name=provider_name, rpc_urls=urls))
        description = configuration.string("Description")
        if len(description.encode()) > DESCRIPTION_MAX_BYTES:
            configuration.fail(
                f"is {len(description.encode())} bytes long in UTF-8; the registry column "
                f"services.configuration_description holds at most {DESCRIPTION_MAX_BYTES}",
                "Description",
            )
        services[key] = ServiceConfig(
            key=key,
            name=configuration.string("Name", column="services.configuration_name"),
            service_type=configuration.string("ServiceType", column="services.configuration_type"),
            active=configuration.integer("Active") == 1,
            level_required=configuration.integer(
                "LevelRequired", column="services.configuration_memberLevelReq", non_negative=True
            ),
            network_name=configuration.string("NetworkName", column="services.configuration_networkname"),
            relay_network=configuration.string("RelayNetwork", column="services.configuration_relaynetwork"),
            network_type=configuration.string("NetworkType", column="services.configuration_networktype"),
            display_name=configuration.string("DisplayName", column="services.configuration_displayname"),
            website_url=configuration.string("WebsiteURL", column="services.configuration_websiteurl"),
            logo_url=configuration.string("LogoURL", column="services.configuration_logourl"),
            description=description,
            state_root_hash=configuration.string("StateRootHash", column="services.configuration_stateroothash"),
            nodes=resources.integer("nodes", column="services.provisioned_nodes", non_negative=True),
            cores=resources.amount("cores", column="services.provisioned_cores"),
            memory=resources.amount("memory", column="services.provisioned_memory"),
            disk=resources.amount("disk", column="services.provisioned_disk"),
            bandwidth=resources.amount("bandwidth", column="services.provisioned_bandwidth"),
            providers=tuple(providers),
        )
    if not services:
        # Applied, it would delete every service, provider and assignment from the registry.
        raise ConfigFileError(SERVICES, "the file holds no services; an empty services file is refused", source=source)
    return services


def parse_pricing(raw: bytes | str, *, source: str = "") -> dict[str, RegionPricing]:
    root = _Reader(PRICING, source, decode_json(PRICING, raw, source=source), "")
    pricing: dict[str, RegionPricing] = {}
    for region in root.value:
        if len(region) > COLUMN_MAX_CHARS["region_price.region"]:
            root.fail(
                f"the region name is {len(region)} characters long; "
                f"at most {COLUMN_MAX_CHARS['region_price.region']} are allowed",
                region,
            )
        prices = root.child(region)
        pricing[region] = RegionPricing(
            region=region,
            cores=prices.amount("cores", column="region_price.cores"),
            memory=prices.amount("memory", column="region_price.memory"),
            disk=prices.amount("disk", column="region_price.disk"),
            bandwidth=prices.amount("bandwidth", column="region_price.bandwidth"),
        )
    if not pricing:
        # Applied, no member could be billed: every region would be without a price.
        raise ConfigFileError(PRICING, "the file holds no regions; an empty pricing file is refused", source=source)
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
