"""Config sync: fetch the IBP config files, keep them as a snapshot, apply them to the registry.

The registry tables (members, services, service_provider, service_assignment, region_price)
are a cache of the config in force (data-model §5.10). `config_sync` is their only writer.
It fetches every file first, then parses, and only then writes, in one transaction, so a
reader never sees half a config and a failure of any kind keeps the last good one
(DECISIONS 23). Every failure is recorded on a ConfigSnapshot row, which the admin and the
health endpoint show.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.db import DatabaseError, models, transaction
from django.utils import timezone

from members.config_files import (
    ALERTS,
    REQUIRED_FILES,
    ConfigFileError,
    NetworkConfig,
    config_warnings,
    iter_assignment_pairs,
    parse_network_config,
)
from members.models import ConfigSnapshot, Member, RegionPrice, Service, ServiceAssignment, ServiceProvider

logger = logging.getLogger("members.config_sync")

DEFAULT_FETCH_TIMEOUT = 15.0
# The real files are tens of kilobytes; a bigger answer is a misconfigured URL, not config.
MAX_FILE_BYTES = 16 * 1024 * 1024
# The files a sync reads: the three the collator needs, then the optional alerts file.
# StaticDNSConfig and ServicesRequestsConfig are accepted in the config but not used.
SYNCED_FILES = (*REQUIRED_FILES, ALERTS)

SyncStatus = Literal["applied", "unchanged", "failed"]


@dataclass(frozen=True)
class ConfigSyncResult:
    status: SyncStatus
    snapshot: ConfigSnapshot | None
    counts: Mapping[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: str = ""
    file_key: str = ""
    field_path: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


# --- fetching -------------------------------------------------------------------------------


# `scheme://…`: a URL. Any scheme but these is refused; it is never taken for a file name
# (`ftp://host/x.json` was read as the relative path `ftp:/host/x.json`).
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_FETCHED_SCHEMES = ("http", "https")
_FILE_SCHEME = "file"


def _scheme(source: str) -> str:
    match = _URL_SCHEME.match(source)
    return match.group(1).lower() if match else ""


def _file_path(source: str) -> str:
    """The path of a `file://` source, or the source itself when it is a plain path."""
    return source[len("file://") :] if _scheme(source) == _FILE_SCHEME else source


def config_fetch(*, source: str, timeout: float = DEFAULT_FETCH_TIMEOUT, key: str = "") -> bytes:
    """Read one config file from an http(s) URL or a file path (DECISIONS 23).

    Anything but HTTP 200 is an error, as in Go (data-model §5.2). The error is a
    ConfigFileError naming the config key and the source.
    """
    key = key or "config file"
    if not source.strip():
        raise ConfigFileError(key, "no URL or file path is configured")
    scheme = _scheme(source)
    if scheme in _FETCHED_SCHEMES:
        return _fetch_url(source=source, timeout=timeout, key=key)
    if scheme and scheme != _FILE_SCHEME:
        raise ConfigFileError(
            key, f"unsupported URL scheme {scheme}://; use http://, https://, file:// or a file path", source=source
        )
    path = Path(_file_path(source)).expanduser()
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigFileError(key, f"cannot read the file: {exc.strerror or exc}", source=source) from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigFileError(key, f"the file is larger than {MAX_FILE_BYTES} bytes", source=source)
    return data


def _fetch_url(*, source: str, timeout: float, key: str) -> bytes:
    request = urllib.request.Request(source, headers={"User-Agent": "ibp-collator config sync"})  # noqa: S310 (http(s) only, checked by the caller)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            if response.status != 200:
                raise ConfigFileError(key, f"HTTP {response.status} (expected 200)", source=source)
            data = response.read(MAX_FILE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ConfigFileError(key, f"HTTP {exc.code} {exc.reason} (expected 200)", source=source) from exc
    except urllib.error.URLError as exc:
        raise ConfigFileError(key, f"cannot fetch: {exc.reason}", source=source) from exc
    except TimeoutError as exc:
        raise ConfigFileError(key, f"no answer within {timeout:g} s", source=source) from exc
    except OSError as exc:
        raise ConfigFileError(key, f"cannot fetch: {exc}", source=source) from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigFileError(key, f"the answer is larger than {MAX_FILE_BYTES} bytes", source=source)
    return data


def config_source_resolve(source: str) -> str:
    """A relative file path is relative to the local config file, like System.WorkDir."""
    if not source or (_scheme(source) and _scheme(source) != _FILE_SCHEME):
        return source  # a URL, or a scheme config_fetch refuses by name
    path = Path(_file_path(source)).expanduser()
    config_file = settings.COLLATOR.source
    if not path.is_absolute() and config_file is not None:
        path = Path(config_file).parent / path
    return str(path)


# --- snapshot content -----------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _content_hash(files: Mapping[str, Mapping[str, str]]) -> str:
    """One hash over which files there are and what each holds (not where it came from)."""
    digest = json.dumps({key: files[key]["sha256"] for key in sorted(files)}, sort_keys=True)
    return _sha256(digest.encode())


def _file_entry(*, source: str, data: bytes) -> dict[str, str]:
    # utf-8-sig: a BOM is not config; parse_network_config reads this text again later.
    return {"source": source, "sha256": _sha256(data), "text": data.decode("utf-8-sig", errors="replace")}


def _counts(config: NetworkConfig) -> dict[str, int]:
    return {
        "members": len(config.members),
        "active_members": sum(1 for m in config.members.values() if m.active),
        "services": len(config.services),
        "active_services": sum(1 for s in config.services.values() if s.active),
        "providers": sum(len(s.providers) for s in config.services.values()),
        "regions": len(config.pricing),
        "assignments": sum(1 for _ in iter_assignment_pairs(config)),
    }


# --- applying to the registry ---------------------------------------------------------------

_LAT_LON = Decimal("0.000001")


def _upsert(model: type[models.Model], existing: dict[Any, models.Model], key: Any, values: dict[str, Any]) -> Any:
    """Create the row, or update it only when a value differs (no write otherwise)."""
    row = existing.get(key)
    if row is None:
        return model.objects.create(**values)
    changed = [name for name, value in values.items() if getattr(row, name) != value]
    if changed:
        for name in changed:
            setattr(row, name, values[name])
        row.save(update_fields=changed)
    return row


def _apply_members(config: NetworkConfig) -> dict[str, Member]:
    existing = {m.member_index: m for m in Member.objects.all()}
    applied: dict[str, Member] = {}
    for key, member in config.members.items():
        applied[key] = _upsert(
            Member,
            existing,
            key,
            {
                "member_index": key,
                "member_name": member.name,
                "member_website": member.website,
                "member_logo": member.logo,
                "membership_level": member.level,
                "membership_joined_ts": member.joined,
                "membership_promotion_ts": member.last_rankup,
                "service_active": 1 if member.active else 0,
                "service_ipv4": member.ipv4,
                "service_ipv6": member.ipv6,
                "service_monitor_url": member.monitor_url,
                "location_region": member.region,
                "location_latitude": member.latitude.quantize(_LAT_LON),
                "location_longitude": member.longitude.quantize(_LAT_LON),
            },
        )
    Member.objects.exclude(member_index__in=list(applied)).delete()
    return applied


def _apply_services(config: NetworkConfig) -> dict[str, Service]:
    existing = {s.service_index: s for s in Service.objects.all()}
    applied: dict[str, Service] = {}
    for key, service in config.services.items():
        applied[key] = _upsert(
            Service,
            existing,
            key,
            {
                "service_index": key,
                "configuration_name": service.name,
                "configuration_type": service.service_type,
                "configuration_active": 1 if service.active else 0,
                "configuration_member_level_req": service.level_required,
                "configuration_networkname": service.network_name,
                "configuration_stateroothash": service.state_root_hash,
                "configuration_displayname": service.display_name,
                "configuration_relaynetwork": service.relay_network,
                "configuration_networktype": service.network_type,
                "configuration_websiteurl": service.website_url,
                "configuration_logourl": service.logo_url,
                "configuration_description": service.description,
                "provisioned_nodes": service.nodes,
                "provisioned_cores": service.cores,
                "provisioned_memory": service.memory,
                "provisioned_disk": service.disk,
                "provisioned_bandwidth": service.bandwidth,
            },
        )
    Service.objects.exclude(service_index__in=list(applied)).delete()

    existing_providers = {(p.service_id, p.provider_index): p for p in ServiceProvider.objects.all()}
    kept: set[int] = set()
    for key, service in config.services.items():
        row = applied[key]
        for provider in service.providers:
            urls = list(provider.rpc_urls)
            # The Go table has three URL slots; they stay filled for its readers, and
            # rpc_urls holds the whole list.
            slots = [*urls[:3], None, None, None][:3]
            saved = _upsert(
                ServiceProvider,
                existing_providers,
                (row.pk, provider.name),
                {
                    "service": row,
                    "provider_index": provider.name,
                    "provider_rpc_url1": slots[0],
                    "provider_rpc_url2": slots[1],
                    "provider_rpc_url3": slots[2],
                    "rpc_urls": urls,
                },
            )
            kept.add(saved.pk)
    ServiceProvider.objects.exclude(pk__in=kept).delete()
    return applied


def _apply_assignments(config: NetworkConfig, members: dict[str, Member], services: dict[str, Service]) -> None:
    # Inactive services stay assigned: the registry mirrors the config, and billing skips them.
    wanted = {(members[m.key].pk, services[s.key].pk) for m, s in iter_assignment_pairs(config)}
    rows = {(a.member_id, a.service_id): a.pk for a in ServiceAssignment.objects.only("id", "member_id", "service_id")}
    stale = [pk for pair, pk in rows.items() if pair not in wanted]
    if stale:
        ServiceAssignment.objects.filter(pk__in=stale).delete()
    ServiceAssignment.objects.bulk_create(
        [ServiceAssignment(member_id=m, service_id=s) for m, s in sorted(wanted - set(rows))]
    )


def _apply_pricing(config: NetworkConfig) -> None:
    existing = {p.region: p for p in RegionPrice.objects.all()}
    for region, prices in config.pricing.items():
        _upsert(
            RegionPrice,
            existing,
            region,
            {
                "region": region,
                "cores": prices.cores,
                "memory": prices.memory,
                "disk": prices.disk,
                "bandwidth": prices.bandwidth,
            },
        )
    RegionPrice.objects.exclude(region__in=list(config.pricing)).delete()


def registry_apply(*, config: NetworkConfig) -> None:
    """Make the registry tables hold exactly `config`. Call inside a transaction."""
    members = _apply_members(config)
    services = _apply_services(config)
    _apply_assignments(config, members, services)
    _apply_pricing(config)


# --- the sync -------------------------------------------------------------------------------


def _q(value: object) -> str:
    """A log value, quoted so that a key=value line stays parseable."""
    return json.dumps(str(value), ensure_ascii=False)


def _error_entry(error: ConfigFileError) -> dict[str, str]:
    return {"file": error.file_key, "field": error.field_path, "source": error.source, "message": str(error)}


def _record_failure(
    *, error: ConfigFileError, files: Mapping[str, Mapping[str, str]], now: datetime, content_hash: str = ""
) -> ConfigSyncResult:
    errors = [_error_entry(error)]
    latest = ConfigSnapshot.objects.order_by("-id").first()
    if (
        latest is not None
        and latest.status == ConfigSnapshot.Status.FAILED
        and latest.errors == errors
        and latest.content_hash == content_hash
    ):
        # The same failure again (an hourly reload of a broken file): count it, add no row.
        latest.attempts += 1
        latest.last_attempt_at = now
        latest.save(update_fields=["attempts", "last_attempt_at"])
        snapshot = latest
    else:
        snapshot = ConfigSnapshot.objects.create(
            status=ConfigSnapshot.Status.FAILED,
            content_hash=content_hash,
            files=dict(files),
            errors=errors,
            fetched_at=now,
            last_attempt_at=now,
        )
    logger.error(
        "event=config_sync_failed snapshot=%s attempts=%d file=%s field=%s source=%s error=%s",
        snapshot.pk,
        snapshot.attempts,
        error.file_key,
        _q(error.field_path),
        _q(error.source),
        _q(error),
    )
    return ConfigSyncResult(
        status="failed", snapshot=snapshot, error=str(error), file_key=error.file_key, field_path=error.field_path
    )


def _unchanged(snapshot: ConfigSnapshot, *, now: datetime) -> ConfigSyncResult:
    # Nothing new to store, but the check itself is news: health compares it with the
    # latest failure (a failure older than this good reload is over).
    ConfigSnapshot.objects.filter(pk=snapshot.pk).update(last_checked_at=now)
    snapshot.last_checked_at = now
    logger.info("event=config_sync_unchanged snapshot=%s content_hash=%s", snapshot.pk, snapshot.content_hash)
    return ConfigSyncResult(
        status="unchanged", snapshot=snapshot, counts=dict(snapshot.counts), warnings=tuple(snapshot.warnings)
    )


def _latest_applied(*, lock: bool = False) -> ConfigSnapshot | None:
    rows = ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED)
    if lock:
        rows = rows.select_for_update()
    return rows.order_by("-applied_at", "-id").first()


def config_sync(*, urls: Mapping[str, str] | None = None, now: datetime | None = None) -> ConfigSyncResult:
    """Fetch every config file, then store and apply them as one snapshot if anything changed.

    `urls` maps ConfigUrls keys to URLs or paths (default: System.ConfigUrls). The registry
    changes all at once or not at all; a failure leaves it as it was and is recorded on a
    `failed` ConfigSnapshot row. Content equal to the last applied snapshot writes nothing.
    """
    now = now or timezone.now()
    configured = dict(settings.COLLATOR.system.config_urls if urls is None else urls)
    files: dict[str, dict[str, str]] = {}
    raw: dict[str, bytes] = {}
    try:
        # Every file is fetched before anything is parsed or written (data-model §5.9).
        for key in SYNCED_FILES:
            source = config_source_resolve((configured.get(key) or "").strip())
            if key == ALERTS and not source:
                continue  # optional: without it, alerts mention nobody
            if not source and urls is None and settings.COLLATOR.source is not None:
                # A config file must name all three files; the bundled snapshot stands in
                # only when there is no config file at all (collator/local_config.py).
                raise ConfigFileError(
                    key,
                    f"no URL or file path is configured: System.ConfigUrls.{key} is missing or empty "
                    f"in {settings.COLLATOR.source}",
                )
            data = config_fetch(source=source, key=key)
            raw[key] = data
            files[key] = _file_entry(source=source, data=data)
        config = parse_network_config(raw, sources={key: entry["source"] for key, entry in files.items()})
    except ConfigFileError as exc:
        return _record_failure(error=exc, files=files, now=now, content_hash=_content_hash(files) if files else "")

    content_hash = _content_hash(files)
    latest = _latest_applied()
    if latest is not None and latest.content_hash == content_hash:
        return _unchanged(latest, now=now)

    warnings = config_warnings(config)
    counts = _counts(config)
    try:
        with transaction.atomic():
            # Two syncs at once (beat and an operator): the second waits here, then sees the first.
            latest = _latest_applied(lock=True)
            if latest is not None and latest.content_hash == content_hash:
                return _unchanged(latest, now=now)
            snapshot = ConfigSnapshot.objects.create(
                status=ConfigSnapshot.Status.APPLIED,
                content_hash=content_hash,
                files=files,
                warnings=warnings,
                counts=counts,
                fetched_at=now,
                applied_at=now,
                last_attempt_at=now,
                last_checked_at=now,
            )
            registry_apply(config=config)
    except DatabaseError as exc:
        # e.g. two member keys that differ only in case, which the column's collation merges.
        error = ConfigFileError("registry", f"the database refused the config: {exc}")
        return _record_failure(error=error, files=files, now=now, content_hash=content_hash)

    logger.info(
        "event=config_sync_applied snapshot=%s content_hash=%s %s warnings=%d",
        snapshot.pk,
        content_hash,
        " ".join(f"{name}={value}" for name, value in counts.items()),
        len(warnings),
    )
    for warning in warnings:
        logger.warning("event=config_warning snapshot=%s warning=%s", snapshot.pk, _q(warning))
    return ConfigSyncResult(status="applied", snapshot=snapshot, counts=counts, warnings=tuple(warnings))
