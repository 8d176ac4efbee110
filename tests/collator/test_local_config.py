from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collator.local_config import (
    BUNDLED_CONFIG_URLS,
    LocalConfigError,
    load_local_config,
    nats_config_errors,
    nats_node_id_warnings,
    parse_local_config,
)


def test_it_uses_the_embedded_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLLATOR_CONFIG", raising=False)
    config = load_local_config()
    assert config.source is None
    assert config.mysql.enabled is False
    assert config.system.config_urls["MembersConfig"] == BUNDLED_CONFIG_URLS["MembersConfig"]
    assert config.system.config_reload_seconds == 3600
    assert config.api.listen_port == "9000"


def test_it_reads_keys_case_insensitively_and_ignores_unknown_blocks(tmp_path: Path) -> None:
    raw = {
        "system": {"workdir": "data", "configreloadtime": 600, "ConfigUrls": {"membersconfig": "https://x/m.json"}},
        "NATS": {"nodeid": "COLLATOR-02", "url": "nats://a:4222, nats://b:4222"},
        "Mysql": {"Host": "db", "Port": "3307", "User": "u", "Pass": "p", "DB": "ibp"},
        "Maxmind": {"whatever": 1},
    }
    config = parse_local_config(raw, source=tmp_path / "ibpcollator.json")
    assert config.system.work_dir == (tmp_path / "data").resolve()
    assert config.system.config_reload_seconds == 600
    assert config.system.config_urls["MembersConfig"] == "https://x/m.json"
    assert config.nats.node_id == "COLLATOR-02"
    assert config.nats.urls == ("nats://a:4222", "nats://b:4222")
    assert (config.mysql.host, config.mysql.port, config.mysql.database) == ("db", "3307", "ibp")


def test_it_lets_the_environment_override_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLATOR_MYSQL_PASS", "from-env")
    monkeypatch.setenv("COLLATOR_NATS_PASS", "nats-env")
    config = parse_local_config({"Mysql": {"Host": "db", "Pass": "from-file"}}, source=None)
    assert config.mysql.password == "from-env"
    assert config.nats.password == "nats-env"


def test_it_rejects_a_numeric_mysql_port_with_the_field_name() -> None:
    with pytest.raises(LocalConfigError, match=r"Mysql\.Port: expected a string"):
        parse_local_config({"Mysql": {"Host": "db", "Port": 3306}}, source=None)


def test_it_falls_back_to_the_default_reload_period_for_zero() -> None:
    """REF crashes on ConfigReloadTime 0 (bug B19); we use the default instead."""
    config = parse_local_config({"System": {"ConfigReloadTime": 0}}, source=None)
    assert config.system.config_reload_seconds == 3600


@pytest.mark.parametrize("key", ["ConfigReloadTime", "MinimumOfflineTime"])
def test_it_refuses_a_negative_period(key: str) -> None:
    """-5 is a typo, not a wish for the default: 0 is the documented way to ask for that."""
    default = {"ConfigReloadTime": 3600, "MinimumOfflineTime": 900}[key]
    with pytest.raises(LocalConfigError) as raised:
        parse_local_config({"System": {key: -5}}, source=None)
    assert str(raised.value) == f"System.{key}: must not be negative, got -5 (0 means the default, {default})"


def test_it_refuses_a_reload_period_the_beat_schedule_cannot_store() -> None:
    with pytest.raises(LocalConfigError) as raised:
        parse_local_config({"System": {"ConfigReloadTime": 2**31}}, source=None)
    assert str(raised.value) == (
        "System.ConfigReloadTime: 2147483648 seconds is more than the largest period, 2147483647"
    )
    assert parse_local_config(
        {"System": {"ConfigReloadTime": 2**31 - 1}}, source=None
    ).system.config_reload_seconds == (2**31 - 1)


def test_it_names_the_config_file_of_a_negative_period(tmp_path: Path) -> None:
    path = tmp_path / "ibpcollator.json"
    path.write_text('{"System": {"ConfigReloadTime": -5}}')
    with pytest.raises(LocalConfigError) as raised:
        load_local_config(path)
    assert (
        str(raised.value)
        == f"{path}: System.ConfigReloadTime: must not be negative, got -5 (0 means the default, 3600)"
    )


def test_it_leaves_the_config_urls_a_config_file_does_not_name_empty(tmp_path: Path) -> None:
    """Only without a config file does the bundled snapshot stand in; the sync refuses an empty one."""
    path = tmp_path / "ibpcollator.json"
    path.write_text(
        json.dumps(
            {"System": {"ConfigUrls": {"ServicesConfig": "", "IaasPricingConfig": " https://x/p.json ", "x": "y"}}}
        )
    )
    assert load_local_config(path).system.config_urls == {
        "StaticDNSConfig": "",
        "MembersConfig": "",
        "ServicesConfig": "",
        "IaasPricingConfig": "https://x/p.json",
        "ServicesRequestsConfig": "",
        "AlertsConfig": "",
    }


def test_it_fills_the_config_urls_from_the_bundled_snapshot_only_without_a_config_file() -> None:
    urls = parse_local_config({"System": {"ConfigUrls": {"MembersConfig": "https://x/m.json"}}}, source=None)
    assert urls.system.config_urls == BUNDLED_CONFIG_URLS | {"MembersConfig": "https://x/m.json"}


def test_it_names_the_file_when_the_json_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"System": {"WorkDir": "x",}}')
    with pytest.raises(LocalConfigError, match=r"broken\.json: invalid JSON at line 1"):
        load_local_config(path)


def test_it_ships_an_example_config_that_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "ibpcollator.example.json"
    config = parse_local_config(json.loads(example.read_text()), source=example)
    assert config.nats.node_id
    assert config.mysql.enabled


def test_it_names_the_node_collator_local_only_without_a_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config file with an empty NodeID keeps it empty, so the listener can refuse it (nats-protocol §3)."""
    monkeypatch.delenv("COLLATOR_CONFIG", raising=False)
    monkeypatch.delenv("COLLATOR_NATS_NODE_ID", raising=False)
    path = tmp_path / "ibpcollator.json"

    assert load_local_config().nats.node_id == "COLLATOR-LOCAL"
    assert parse_local_config({"Nats": {"NodeID": ""}}, source=path).nats.node_id == ""
    assert parse_local_config({"Nats": {"Url": "nats://a:4222"}}, source=path).nats.node_id == ""
    monkeypatch.setenv("COLLATOR_NATS_NODE_ID", "COLLATOR-ENV")
    assert parse_local_config({"Nats": {"NodeID": ""}}, source=path).nats.node_id == "COLLATOR-ENV"


@pytest.mark.parametrize(
    ("nats", "errors"),
    [
        ({"node_id": "COLLATOR-01", "urls": ("nats://a:4222",), "user": "", "password": ""}, []),
        (
            {"node_id": " ", "urls": ("nats://a:4222",), "user": "", "password": "__SET_ME__"},
            [
                "Nats.NodeID is empty: it names this collator on the bus and must be set (nats-protocol §3)",
                "Nats.Pass is still __SET_ME__: set it in the config file or in COLLATOR_NATS_PASS",
            ],
        ),
        (
            {"node_id": "COLLATOR-01", "urls": ("nats://a:4222", "__SET_ME__"), "user": "u", "password": "p"},
            ["Nats.Url is still __SET_ME__: set it in the config file or in COLLATOR_NATS_URL"],
        ),
        ({"node_id": "COLLATOR-01", "urls": (), "user": "", "password": ""}, ["Nats.Url names no server"]),
    ],
)
def test_it_lists_what_keeps_the_nats_block_from_being_used(nats: dict[str, Any], errors: list[str]) -> None:
    assert nats_config_errors(**nats) == errors


@pytest.mark.parametrize(
    ("node_id", "words"),
    [
        ("COLLATOR-01", []),
        ("collator-dns-1", ["dns"]),
        ("MonitorCollator", ["monitor"]),
        ("DNSMONITOR", ["monitor", "dns"]),
    ],
)
def test_it_finds_the_role_words_peers_guess_from(node_id: str, words: list[str]) -> None:
    assert nats_node_id_warnings(node_id) == words
