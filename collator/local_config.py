"""The collator's local JSON config file (the seed's `ibpcollator.json`).

This is the primary configuration (DECISIONS 22). Go decodes it case-insensitively and
ignores unknown keys, so we do the same: an operator can point this service at the file
the Go collator already uses. Environment variables override the secrets.

The module is pure: it reads a file and the environment and returns a frozen dataclass.
Django settings call it once at import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_CONFIG_DIR = REPO_ROOT / "config" / "ibp-config"

# A value the operator must replace before the component that uses it is enabled.
SET_ME = "__SET_ME__"

DEFAULT_CONFIG_RELOAD_SECONDS = 3600
DEFAULT_MINIMUM_OFFLINE_SECONDS = 900
# The beat schedule stores the reload period in a 32-bit INT (django-celery-beat IntervalSchedule).
MAX_SECONDS = 2_147_483_647

# Each ConfigUrls entry is an http(s) URL or a file path (DECISIONS 23).
BUNDLED_CONFIG_URLS: dict[str, str] = {
    "StaticDNSConfig": str(BUNDLED_CONFIG_DIR / "geodns-static.json"),
    "MembersConfig": str(BUNDLED_CONFIG_DIR / "members_professional.json"),
    "ServicesConfig": str(BUNDLED_CONFIG_DIR / "services_rpc.json"),
    "IaasPricingConfig": str(BUNDLED_CONFIG_DIR / "services_rpc_iaaspricing.json"),
    "ServicesRequestsConfig": str(BUNDLED_CONFIG_DIR / "services_rpc_requests.json"),
    "AlertsConfig": "",
}


class LocalConfigError(ValueError):
    """The local config file is unreadable or has a value of the wrong type."""


@dataclass(frozen=True)
class SystemConfig:
    work_dir: Path
    log_level: str = "Info"
    config_urls: Mapping[str, str] = field(default_factory=lambda: dict(BUNDLED_CONFIG_URLS))
    config_reload_seconds: int = DEFAULT_CONFIG_RELOAD_SECONDS
    minimum_offline_seconds: int = DEFAULT_MINIMUM_OFFLINE_SECONDS


@dataclass(frozen=True)
class NatsConfig:
    node_id: str = "COLLATOR-LOCAL"
    urls: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    user: str = ""
    password: str = ""


@dataclass(frozen=True)
class MysqlConfig:
    host: str = ""
    port: str = "3306"
    user: str = ""
    password: str = ""
    database: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class MatrixConfig:
    homeserver_url: str = ""
    username: str = ""
    password: str = ""
    room_id: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.homeserver_url)


@dataclass(frozen=True)
class ApiConfig:
    listen_address: str = "0.0.0.0"
    listen_port: str = "9000"


@dataclass(frozen=True)
class CollatorConfig:
    source: Path | None
    system: SystemConfig
    nats: NatsConfig
    mysql: MysqlConfig
    matrix: MatrixConfig
    api: ApiConfig


def _ci_get(block: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Look a key up case-insensitively, as Go's encoding/json does."""
    wanted = key.lower()
    for candidate, value in block.items():
        if candidate.lower() == wanted:
            return value
    return default


def _block(root: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = _ci_get(root, name, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LocalConfigError(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _string(block: Mapping[str, Any], path: str, key: str, default: str = "") -> str:
    value = _ci_get(block, key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        # Go rejects a number where a string is expected (Mysql.Port is the classic case);
        # we say which field is wrong instead of failing later and far away.
        raise LocalConfigError(f"{path}.{key}: expected a string, got {type(value).__name__}")
    return value


def _positive_int(block: Mapping[str, Any], path: str, key: str, default: int) -> int:
    value = _ci_get(block, key, None)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalConfigError(f"{path}.{key}: expected an integer number of seconds")
    if value < 0:
        # A typo, not a wish for the default: refused, as 0 is the documented way to ask for it.
        raise LocalConfigError(f"{path}.{key}: must not be negative, got {value} (0 means the default, {default})")
    if value > MAX_SECONDS:
        raise LocalConfigError(f"{path}.{key}: {value} seconds is more than the largest period, {MAX_SECONDS}")
    # REF crashes on 0 (a ticker with a non-positive period); we fall back to the default.
    return value or default


def _env(name: str, current: str) -> str:
    return os.environ.get(name, current)


def parse_local_config(raw: Mapping[str, Any], *, source: Path | None, repo_root: Path = REPO_ROOT) -> CollatorConfig:
    """Build the config from a decoded JSON object, then apply environment overrides."""
    if not isinstance(raw, Mapping):
        raise LocalConfigError("the config file must hold a JSON object")
    system = _block(raw, "System")
    nats = _block(raw, "Nats")
    mysql = _block(raw, "Mysql")
    matrix = _block(raw, "Matrix")
    api = _block(raw, "CollatorApi")

    work_dir_text = _env("COLLATOR_WORK_DIR", _string(system, "System", "WorkDir", ""))
    work_dir = Path(work_dir_text) if work_dir_text else repo_root / "var"
    if not work_dir.is_absolute():
        base = source.parent if source else repo_root
        work_dir = (base / work_dir).resolve()

    # The bundled snapshot stands in only when there is no config file at all. A config file
    # names its own files: one it leaves out stays empty, and the config sync refuses it by
    # name (members/services.py) rather than quietly billing from the bundled snapshot. The
    # check is left to the sync so that a process that never loads the files (the test and
    # bench configs name none) still starts, as with an unfilled Nats block.
    urls_block = _block(system, "ConfigUrls")
    config_urls = {
        key: _string(urls_block, "System.ConfigUrls", key, "").strip() or (bundled if source is None else "")
        for key, bundled in BUNDLED_CONFIG_URLS.items()
    }

    nats_urls_text = _env("COLLATOR_NATS_URL", _string(nats, "Nats", "Url", ""))
    nats_urls = tuple(u.strip() for u in nats_urls_text.split(",") if u.strip()) or NatsConfig.urls

    return CollatorConfig(
        source=source,
        system=SystemConfig(
            work_dir=work_dir,
            log_level=_env("COLLATOR_LOG_LEVEL", _string(system, "System", "LogLevel", "Info")) or "Info",
            config_urls=config_urls,
            config_reload_seconds=_positive_int(system, "System", "ConfigReloadTime", DEFAULT_CONFIG_RELOAD_SECONDS),
            minimum_offline_seconds=_positive_int(
                system, "System", "MinimumOfflineTime", DEFAULT_MINIMUM_OFFLINE_SECONDS
            ),
        ),
        nats=NatsConfig(
            # The embedded default names a node only when there is no config file at all; a
            # file with an empty NodeID is refused by the listener (nats-protocol §3).
            node_id=_env("COLLATOR_NATS_NODE_ID", _string(nats, "Nats", "NodeID", ""))
            or (NatsConfig.node_id if source is None else ""),
            urls=nats_urls,
            user=_env("COLLATOR_NATS_USER", _string(nats, "Nats", "User")),
            password=_env("COLLATOR_NATS_PASS", _string(nats, "Nats", "Pass")),
        ),
        mysql=MysqlConfig(
            host=_env("COLLATOR_MYSQL_HOST", _string(mysql, "Mysql", "Host")),
            port=_env("COLLATOR_MYSQL_PORT", _string(mysql, "Mysql", "Port", "3306")) or "3306",
            user=_env("COLLATOR_MYSQL_USER", _string(mysql, "Mysql", "User")),
            password=_env("COLLATOR_MYSQL_PASS", _string(mysql, "Mysql", "Pass")),
            database=_env("COLLATOR_MYSQL_DB", _string(mysql, "Mysql", "DB")),
        ),
        matrix=MatrixConfig(
            homeserver_url=_env("COLLATOR_MATRIX_HOMESERVER_URL", _string(matrix, "Matrix", "HomeServerURL")),
            username=_env("COLLATOR_MATRIX_USERNAME", _string(matrix, "Matrix", "Username")),
            password=_env("COLLATOR_MATRIX_PASSWORD", _string(matrix, "Matrix", "Password")),
            room_id=_env("COLLATOR_MATRIX_ROOM_ID", _string(matrix, "Matrix", "RoomID")),
        ),
        api=ApiConfig(
            listen_address=_env("COLLATOR_API_LISTEN_ADDRESS", _string(api, "CollatorApi", "ListenAddress", "0.0.0.0"))
            or "0.0.0.0",
            listen_port=_env("COLLATOR_API_LISTEN_PORT", _string(api, "CollatorApi", "ListenPort", "9000")) or "9000",
        ),
    )


def unset_values(component: object) -> list[str]:
    """Names of the fields of an enabled component still holding `__SET_ME__` (DECISIONS 22)."""
    return [name for name, value in vars(component).items() if value == SET_ME]


# Where each Nats field comes from, for an error that names the field and its override.
_NATS_FIELDS = (
    ("NodeID", "COLLATOR_NATS_NODE_ID"),
    ("Url", "COLLATOR_NATS_URL"),
    ("User", "COLLATOR_NATS_USER"),
    ("Pass", "COLLATOR_NATS_PASS"),
)


def nats_config_errors(*, node_id: str, urls: tuple[str, ...], user: str, password: str) -> list[str]:
    """Why the Nats block cannot be used by a process that joins the bus (empty if it can).

    A `__SET_ME__` is an error once NATS is used (DECISIONS 22), and NodeID must be
    non-empty (nats-protocol §3). Only the NATS processes check this, so the web server
    runs with a Nats block that is not filled in yet.
    """
    errors: list[str] = []
    if not node_id.strip():
        errors.append("Nats.NodeID is empty: it names this collator on the bus and must be set (nats-protocol §3)")
    values = (node_id, ",".join(urls), user, password)
    for (name, env), value in zip(_NATS_FIELDS, values, strict=True):
        if SET_ME in value:
            errors.append(f"Nats.{name} is still {SET_ME}: set it in the config file or in {env}")
    if not urls:
        errors.append("Nats.Url names no server")
    return errors


def nats_node_id_warnings(node_id: str) -> list[str]:
    """Substrings other nodes guess a role from (nats-protocol §3, §6.2): SHOULD NOT be in NodeID."""
    lowered = node_id.lower()
    return [word for word in ("monitor", "dns") if word in lowered]


def load_local_config(path: str | os.PathLike[str] | None = None) -> CollatorConfig:
    """Read the config named by `path` or `COLLATOR_CONFIG`; embedded defaults without one."""
    chosen = path or os.environ.get("COLLATOR_CONFIG") or ""
    if not chosen:
        return parse_local_config({}, source=None)
    file_path = Path(chosen).expanduser().resolve()
    try:
        raw = json.loads(file_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LocalConfigError(f"{file_path}: cannot read the config file ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise LocalConfigError(f"{file_path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    try:
        return parse_local_config(raw, source=file_path)
    except LocalConfigError as exc:
        raise LocalConfigError(f"{file_path}: {exc}") from exc
