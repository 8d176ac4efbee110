"""config_sync against the real IBP config files, on the real database."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from collator.local_config import load_local_config
from members.config_files import ConfigFileError
from members.models import ConfigSnapshot, Member, RegionPrice, Service, ServiceAssignment, ServiceProvider
from members.services import DEFAULT_FETCH_TIMEOUT, config_fetch, config_sync
from tests.members.conftest import registry_fingerprint, snapshot_rows

pytestmark = pytest.mark.django_db

T1 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T2 = datetime(2026, 1, 18, 12, 0, tzinfo=UTC)
T3 = datetime(2026, 1, 19, 12, 0, tzinfo=UTC)


def test_it_applies_the_bundled_config(base_urls: dict[str, str]) -> None:
    """The bundled snapshot: 7 members, each assigned all 22 services, so 7 × 22 = 154 pairs."""
    result = config_sync(urls=base_urls, now=T1)

    assert result.status == "applied"
    assert Member.objects.count() == 7
    assert Service.objects.count() == 22
    assert Service.objects.filter(configuration_active=1).count() == 22
    assert RegionPrice.objects.count() == 8
    assert ServiceAssignment.objects.count() == 154
    assert ServiceProvider.objects.count() == 44
    assert result.counts == {
        "members": 7,
        "active_members": 5,
        "services": 22,
        "active_services": 22,
        "providers": 44,
        "regions": 8,
        "assignments": 154,
    }
    snapshot = ConfigSnapshot.objects.get()
    assert snapshot.status == ConfigSnapshot.Status.APPLIED
    assert snapshot.fetched_at == T1
    assert snapshot.applied_at == T1
    assert snapshot.warnings == []
    # AlertsConfig is empty, so it is skipped; the two unused files are not fetched.
    assert sorted(snapshot.files) == ["IaasPricingConfig", "MembersConfig", "ServicesConfig"]
    assert snapshot.files["MembersConfig"]["source"] == base_urls["MembersConfig"]
    raw = Path(base_urls["MembersConfig"]).read_bytes()
    assert snapshot.files["MembersConfig"]["text"] == raw.decode()
    assert len(snapshot.content_hash) == 64


def test_it_stores_member_service_provider_and_price_values_exactly(base_urls: dict[str, str]) -> None:
    """Stake Plus joined at Unix 1672549200 = 2023-01-01 05:00:00 UTC; Polkadot runs 2 nodes of 4 cores."""
    config_sync(urls=base_urls, now=T1)

    stake_plus = Member.objects.get(member_index="Stake Plus")
    assert stake_plus.member_name == "Stake Plus"
    assert stake_plus.membership_level == 6
    assert stake_plus.membership_joined_ts == datetime(2023, 1, 1, 5, 0, tzinfo=UTC)
    assert stake_plus.membership_promotion_ts == datetime(2024, 7, 17, 9, 44, 45, tzinfo=UTC)
    assert stake_plus.service_active == 1
    assert stake_plus.location_region == "North America"
    assert stake_plus.location_latitude == Decimal("38.777700")
    assert stake_plus.location_longitude == Decimal("-77.547400")
    assert stake_plus.assignments.count() == 22

    polkadot = Service.objects.get(service_index="Polkadot")
    assert polkadot.configuration_type == "RPC"
    assert polkadot.configuration_member_level_req == 3
    assert polkadot.configuration_displayname == "Polkadot Network"
    assert polkadot.provisioned_nodes == 2
    assert polkadot.provisioned_cores == Decimal(4)
    assert polkadot.provisioned_memory == Decimal(16)
    assert polkadot.provisioned_disk == Decimal(4164)
    assert polkadot.provisioned_bandwidth == Decimal(11000)
    providers = {p.provider_index: p for p in polkadot.providers.all()}
    assert sorted(providers) == ["Dotters", "Ibp"]
    dotters = providers["Dotters"]
    assert dotters.rpc_urls == ["wss://polkadot.dotters.network", "wss://rpc.dotters.network/polkadot"]
    assert dotters.provider_rpc_url1 == "wss://polkadot.dotters.network"
    assert dotters.provider_rpc_url2 == "wss://rpc.dotters.network/polkadot"
    assert dotters.provider_rpc_url3 is None

    europe = RegionPrice.objects.get(region="Europe")
    assert europe.cores == Decimal("14.172")
    assert europe.memory == Decimal("1.2562398")
    assert europe.disk == Decimal("0.17875")
    assert europe.bandwidth == Decimal("0.085")


def test_it_applies_the_2026_snapshot_next(base_urls: dict[str, str], urls_2026: dict[str, str]) -> None:
    """2026-01-18: 12 members, 34 services of which Mythos and Polimec are inactive (34 − 2 = 32 active).

    Nine members are assigned the two inactive services: 9 × 2 = 18 warnings, and the
    assignments stay listed (375 pairs), marked inactive through their service.
    """
    config_sync(urls=base_urls, now=T1)
    result = config_sync(urls=urls_2026, now=T2)

    assert result.status == "applied"
    assert Member.objects.count() == 12
    assert Service.objects.count() == 34
    assert sorted(Service.objects.filter(configuration_active=0).values_list("service_index", flat=True)) == [
        "Mythos",
        "Polimec",
    ]
    assert Service.objects.filter(configuration_active=1).count() == 32
    assert RegionPrice.objects.count() == 8
    assert ServiceAssignment.objects.count() == 375
    assert ServiceAssignment.objects.filter(service__configuration_active=0).count() == 18
    assert ServiceProvider.objects.count() == 68
    applied = ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED).order_by("applied_at")
    assert [s.applied_at for s in applied] == [T1, T2]
    assert applied[1].counts["members"] == 12
    assert applied[1].counts["active_services"] == 32
    assert len(applied[1].warnings) == 18
    assert "member 'Stake Plus': service 'Mythos' is inactive and is not billed" in applied[1].warnings


def test_it_deletes_what_left_the_config(base_urls: dict[str, str], urls_2026: dict[str, str]) -> None:
    """Going back from 2026-01-18 to the base: the 5 extra members and 12 extra services go away."""
    config_sync(urls=urls_2026, now=T1)
    result = config_sync(urls=base_urls, now=T2)

    assert result.status == "applied"
    assert Member.objects.count() == 7
    assert not Member.objects.filter(member_index="Helikon").exists()
    assert Service.objects.count() == 22
    assert not Service.objects.filter(service_index="Mythos").exists()
    assert ServiceProvider.objects.count() == 44
    assert ServiceAssignment.objects.count() == 154
    assert ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED).count() == 2


def test_it_writes_nothing_when_the_files_are_unchanged(base_urls: dict[str, str], urls_2026: dict[str, str]) -> None:
    config_sync(urls=base_urls, now=T1)
    config_sync(urls=urls_2026, now=T2)
    registry_before = registry_fingerprint()
    snapshots_before = snapshot_rows()

    result = config_sync(urls=urls_2026, now=T3)

    assert result.status == "unchanged"
    assert result.snapshot is not None and result.snapshot.applied_at == T2
    assert result.counts["members"] == 12
    assert registry_fingerprint() == registry_before
    # No new row and no change but one: the applied snapshot notes when it was last found good.
    assert [row | {"last_checked_at": None} for row in snapshot_rows()] == [
        row | {"last_checked_at": None} for row in snapshots_before
    ]
    assert [row["last_checked_at"] for row in snapshot_rows()] == [T1, T3]
    assert len(snapshots_before) == 2


def test_it_logs_and_stores_warnings(urls_2026: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="members.config_sync"):
        result = config_sync(urls=urls_2026, now=T1)

    assert len(result.warnings) == 18
    lines = [r.getMessage() for r in caplog.records if "event=config_warning" in r.getMessage()]
    assert len(lines) == 18
    assert lines[0] == (
        f"event=config_warning snapshot={result.snapshot.pk} "
        "warning=\"member 'Stake Plus': service 'Mythos' is inactive and is not billed\""
    )
    applied = [r.getMessage() for r in caplog.records if "event=config_sync_applied" in r.getMessage()]
    assert len(applied) == 1
    assert "members=12 active_members=12 services=34 active_services=32" in applied[0]


def test_it_syncs_over_http(http_server: str, base_urls: dict[str, str]) -> None:
    urls = dict(base_urls)
    for key in ("MembersConfig", "ServicesConfig", "IaasPricingConfig"):
        urls[key] = f"{http_server}/{Path(base_urls[key]).name}"

    result = config_sync(urls=urls, now=T1)

    assert result.status == "applied"
    assert Member.objects.count() == 7
    assert result.snapshot.files["ServicesConfig"]["source"] == f"{http_server}/services_rpc.json"
    # The same bytes from a file path are the same content: nothing to apply.
    assert config_sync(urls=base_urls, now=T2).status == "unchanged"


# --- failures: the registry stays exactly as it was ----------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _break_members_with_trailing_comma(urls: dict[str, str]) -> tuple[str, str]:
    path = Path(urls["MembersConfig"])
    text = path.read_text().rstrip()
    assert text.endswith("}\n}") or text.endswith("}")
    # `{..., "Turboflakes": {...},}`: a trailing comma before the closing brace.
    path.write_text(text[:-1].rstrip() + ",\n}\n")
    return "MembersConfig", str(path)


def _break_services_resources(urls: dict[str, str]) -> tuple[str, str]:
    path = Path(urls["ServicesConfig"])
    text = path.read_text()
    needle = '"Resources": {'
    assert needle in text
    start = text.index(needle)
    end = text.index("}", start)
    # The first service's Resources becomes a string.
    path.write_text(text[:start] + '"Resources": "2 nodes, 4 cores"' + text[end + 1 :])
    return "ServicesConfig", str(path)


def _unreachable_members(urls: dict[str, str]) -> tuple[str, str]:
    source = f"http://127.0.0.1:{_closed_port()}/members_professional.json"
    urls["MembersConfig"] = source
    return "MembersConfig", source


BREAKERS = {
    "trailing comma": (_break_members_with_trailing_comma, "invalid JSON at line"),
    "resources string": (_break_services_resources, "field Paseo.Resources: expected an object, got string"),
    "closed port": (_unreachable_members, "cannot fetch:"),
}


@pytest.mark.parametrize("case", sorted(BREAKERS))
def test_it_keeps_the_registry_when_a_sync_fails(
    case: str, base_urls: dict[str, str], editable_urls: dict[str, str], use_config_urls: object
) -> None:
    config_sync(urls=base_urls, now=T1)
    registry_before = registry_fingerprint()
    breaker, expected_text = BREAKERS[case]
    file_key, source = breaker(editable_urls)

    result = config_sync(urls=editable_urls, now=T2)

    assert result.status == "failed"
    assert result.file_key == file_key
    assert expected_text in result.error
    assert result.error.startswith(f"{file_key} ({source}): ")
    assert registry_fingerprint() == registry_before
    failed = ConfigSnapshot.objects.get(status=ConfigSnapshot.Status.FAILED)
    assert failed.errors == [{"file": file_key, "field": result.field_path, "source": source, "message": result.error}]
    assert failed.fetched_at == T2
    assert failed.applied_at is None
    assert ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED).count() == 1

    use_config_urls(editable_urls)
    with pytest.raises(CommandError) as raised:
        call_command("sync_config")
    assert file_key in str(raised.value)
    assert source in str(raised.value)
    assert registry_fingerprint() == registry_before


def test_it_names_the_field_of_a_schema_error(base_urls: dict[str, str], editable_urls: dict[str, str]) -> None:
    _break_services_resources(editable_urls)

    result = config_sync(urls=editable_urls, now=T1)

    assert result.field_path == "Paseo.Resources"
    assert result.error == (
        f"ServicesConfig ({editable_urls['ServicesConfig']}): field Paseo.Resources: expected an object, got string"
    )
    assert Member.objects.count() == 0
    assert Service.objects.count() == 0


def test_it_fails_on_http_404_from_a_real_server(
    http_server: str, base_urls: dict[str, str], use_config_urls: object
) -> None:
    config_sync(urls=base_urls, now=T1)
    registry_before = registry_fingerprint()
    urls = dict(base_urls) | {"ServicesConfig": f"{http_server}/no-such-file.json"}

    result = config_sync(urls=urls, now=T2)

    assert result.status == "failed"
    assert result.error == f"ServicesConfig ({http_server}/no-such-file.json): HTTP 404 File not found (expected 200)"
    assert registry_fingerprint() == registry_before
    assert ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.FAILED).count() == 1
    use_config_urls(urls)
    with pytest.raises(CommandError, match=r"ServicesConfig \(http://127\.0\.0\.1:\d+/no-such-file\.json\): HTTP 404"):
        call_command("sync_config")


def test_it_counts_a_repeated_failure_on_one_row(editable_urls: dict[str, str]) -> None:
    _break_members_with_trailing_comma(editable_urls)

    first = config_sync(urls=editable_urls, now=T1)
    second = config_sync(urls=editable_urls, now=T2)

    assert first.snapshot.pk == second.snapshot.pk
    failed = ConfigSnapshot.objects.get()
    assert failed.attempts == 2
    assert failed.fetched_at == T1
    assert failed.last_attempt_at == T2


def test_it_adds_a_row_for_a_different_failure(editable_urls: dict[str, str]) -> None:
    _break_members_with_trailing_comma(editable_urls)
    config_sync(urls=editable_urls, now=T1)
    editable_urls["MembersConfig"] = str(Path(editable_urls["MembersConfig"]).with_name("missing.json"))

    result = config_sync(urls=editable_urls, now=T2)

    assert ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.FAILED).count() == 2
    assert result.error.endswith("cannot read the file: No such file or directory")


def test_it_requires_the_three_files(base_urls: dict[str, str]) -> None:
    urls = dict(base_urls) | {"IaasPricingConfig": ""}

    result = config_sync(urls=urls, now=T1)

    assert result.status == "failed"
    assert result.error == "IaasPricingConfig: no URL or file path is configured"


@pytest.mark.mysql_only
def test_it_records_a_config_the_database_refuses(editable_urls: dict[str, str], base_urls: dict[str, str]) -> None:
    """Member keys `Amforc` and `AMFORC` differ, but the key column's collation merges them."""
    config_sync(urls=base_urls, now=T1)
    registry_before = registry_fingerprint()
    path = Path(editable_urls["MembersConfig"])
    text = path.read_text()
    path.write_text(text.replace('"Amforc": {', '"AMFORC": {"Details": {"Name": "Other"}},\n  "Amforc": {', 1))

    result = config_sync(urls=editable_urls, now=T2)

    assert result.status == "failed"
    assert result.file_key == "registry"
    assert "the database refused the config" in result.error
    assert registry_fingerprint() == registry_before


def _set_field(path: Path, dotted: str, raw_value: str) -> None:
    """Set one field of a config file to the JSON text `raw_value` (spliced in as text)."""
    document = json.loads(path.read_text())
    *parents, leaf = dotted.split(".")
    node = document
    for key in parents:
        node = node[key]
    node[leaf] = "__VALUE__"
    path.write_text(json.dumps(document, indent=2).replace('"__VALUE__"', raw_value))


# (file, field, JSON text, the error after "<file> (<source>): "): each applied before, or
# crashed the sync, or failed it in the database naming neither file nor field.
REFUSED_VALUES = {
    "negative nodes": (
        "ServicesConfig",
        "Paseo.Resources.nodes",
        "-3",
        "field Paseo.Resources.nodes: must not be negative, got -3",
    ),
    "negative price": (
        "IaasPricingConfig",
        "Africa.cores",
        "-100",
        "field Africa.cores: must not be negative, got -100",
    ),
    "cores beyond the column": (
        "ServicesConfig",
        "Paseo.Resources.cores",
        "1e308",
        "field Paseo.Resources.cores: is 1E+308; the registry column services.provisioned_cores holds at most "
        "999999999999.999999",
    ),
    "Joined beyond time_t": (
        "MembersConfig",
        "Amforc.Membership.Joined",
        str(10**20),
        "field Amforc.Membership.Joined: Unix time 100000000000000000000 is after 9999-12-31T23:59:59Z, "
        "the last time the registry holds",
    ),
    "Joined in the year 10000": (
        "MembersConfig",
        "Amforc.Membership.Joined",
        "253402300800",
        "field Amforc.Membership.Joined: Unix time 253402300800 is after 9999-12-31T23:59:59Z, "
        "the last time the registry holds",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_VALUES))
def test_it_keeps_the_last_good_config_when_a_value_is_out_of_range(
    case: str, base_urls: dict[str, str], editable_urls: dict[str, str], use_config_urls: Any
) -> None:
    good = config_sync(urls=base_urls, now=T1)
    registry_before = registry_fingerprint()
    file_key, dotted, raw_value, reason = REFUSED_VALUES[case]
    source = editable_urls[file_key]
    _set_field(Path(source), dotted, raw_value)

    result = config_sync(urls=editable_urls, now=T2)

    assert (result.status, result.file_key, result.field_path) == ("failed", file_key, dotted)
    assert result.error == f"{file_key} ({source}): {reason}"
    assert registry_fingerprint() == registry_before
    failed = ConfigSnapshot.objects.get(status=ConfigSnapshot.Status.FAILED)
    assert failed.errors == [{"file": file_key, "field": dotted, "source": source, "message": result.error}]
    assert list(ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED)) == [good.snapshot]

    use_config_urls(editable_urls)
    with pytest.raises(CommandError) as raised:
        call_command("sync_config")
    assert str(raised.value) == f"config sync failed, the registry is unchanged: {result.error}"


@pytest.mark.parametrize(
    ("file_key", "message"),
    [
        ("MembersConfig", "the file holds no members; an empty members file is refused"),
        ("ServicesConfig", "the file holds no services; an empty services file is refused"),
    ],
)
def test_it_refuses_an_empty_file_instead_of_emptying_the_registry(
    file_key: str, message: str, base_urls: dict[str, str], editable_urls: dict[str, str]
) -> None:
    """`{}` was applied as "0 members, 0 assignments" and wiped the registry."""
    good = config_sync(urls=base_urls, now=T1)
    registry_before = registry_fingerprint()
    Path(editable_urls[file_key]).write_text("{}\n")

    result = config_sync(urls=editable_urls, now=T2)

    assert result.status == "failed"
    assert result.error == f"{file_key} ({editable_urls[file_key]}): {message}"
    assert registry_fingerprint() == registry_before
    assert Member.objects.count() == 7
    assert list(ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED)) == [good.snapshot]


def test_it_refuses_an_unsupported_url_scheme(base_urls: dict[str, str]) -> None:
    """`ftp://…` was read as the relative path `ftp:/example.com/x.json`."""
    good = config_sync(urls=base_urls, now=T1)
    registry_before = registry_fingerprint()
    urls = dict(base_urls) | {"MembersConfig": "ftp://example.com/x.json"}

    result = config_sync(urls=urls, now=T2)

    assert result.status == "failed"
    assert result.error == (
        "MembersConfig (ftp://example.com/x.json): unsupported URL scheme ftp://; "
        "use http://, https://, file:// or a file path"
    )
    assert registry_fingerprint() == registry_before
    assert list(ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED)) == [good.snapshot]


def _local_config_file(tmp_path: Path, config_urls: dict[str, str]) -> Path:
    path = tmp_path / "ibpcollator.json"
    path.write_text(json.dumps({"System": {"ConfigUrls": config_urls}, "Nats": {"NodeID": "COLLATOR-TEST"}}))
    return path


@pytest.mark.parametrize("value", [None, "", "  "], ids=["missing", "empty", "blank"])
def test_it_refuses_a_config_file_that_does_not_name_the_members_file(
    value: str | None, base_urls: dict[str, str], tmp_path: Path, settings: Any
) -> None:
    """A config file that leaves MembersConfig out no longer syncs the bundled snapshot."""
    good = config_sync(urls=base_urls, now=T1)
    registry_before = registry_fingerprint()
    named = {key: url for key, url in base_urls.items() if key != "MembersConfig"}
    if value is not None:
        named["MembersConfig"] = value
    path = _local_config_file(tmp_path, named)
    settings.COLLATOR = load_local_config(path)

    result = config_sync(now=T2)

    assert (result.status, result.file_key) == ("failed", "MembersConfig")
    assert result.error == (
        "MembersConfig: no URL or file path is configured: System.ConfigUrls.MembersConfig is missing or empty "
        f"in {path}"
    )
    assert registry_fingerprint() == registry_before
    assert ConfigSnapshot.objects.get(status=ConfigSnapshot.Status.FAILED).errors == [
        {"file": "MembersConfig", "field": "", "source": "", "message": result.error}
    ]
    assert list(ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED)) == [good.snapshot]


def test_it_reads_file_urls_relative_to_the_config_file(ibp_config_dir: Path, tmp_path: Path, settings: Any) -> None:
    """`file://ibp/…` is a path relative to the config file, like a plain path."""
    shutil.copytree(ibp_config_dir, tmp_path / "ibp")
    urls = {
        "MembersConfig": "file://ibp/members_professional.json",
        "ServicesConfig": "ibp/services_rpc.json",
        "IaasPricingConfig": f"FILE://{tmp_path}/ibp/services_rpc_iaaspricing.json",
    }
    settings.COLLATOR = load_local_config(_local_config_file(tmp_path, urls))

    result = config_sync(now=T1)

    assert result.status == "applied"
    assert {key: entry["source"] for key, entry in result.snapshot.files.items()} == {
        "MembersConfig": f"{tmp_path}/ibp/members_professional.json",
        "ServicesConfig": f"{tmp_path}/ibp/services_rpc.json",
        "IaasPricingConfig": f"{tmp_path}/ibp/services_rpc_iaaspricing.json",
    }


@pytest.mark.mysql_only  # SQLite keeps decimals as floats: 18 digits do not come back exactly
def test_it_stores_the_largest_values_the_registry_holds(
    base_urls: dict[str, str], editable_urls: dict[str, str]
) -> None:
    """The parser's limits are the columns' own: the last value each holds is applied exactly."""
    _set_field(Path(editable_urls["ServicesConfig"]), "Paseo.Resources.nodes", "2147483647")
    _set_field(Path(editable_urls["ServicesConfig"]), "Paseo.Resources.cores", "999999999999.999999")
    _set_field(Path(editable_urls["IaasPricingConfig"]), "Africa.cores", "9999999999.9999999999")
    _set_field(Path(editable_urls["MembersConfig"]), "Amforc.Membership.Joined", "253402300799")
    _set_field(Path(editable_urls["MembersConfig"]), "Amforc.Membership.MemberLevel", "32767")
    _set_field(Path(editable_urls["MembersConfig"]), "Amforc.Location.Latitude", "-90")
    _set_field(Path(editable_urls["MembersConfig"]), "Amforc.Location.Longitude", "180")

    result = config_sync(urls=editable_urls, now=T1)

    assert result.status == "applied", result.error
    paseo = Service.objects.get(service_index="Paseo")
    assert (paseo.provisioned_nodes, paseo.provisioned_cores) == (2_147_483_647, Decimal("999999999999.999999"))
    assert RegionPrice.objects.get(region="Africa").cores == Decimal("9999999999.9999999999")
    amforc = Member.objects.get(member_index="Amforc")
    assert amforc.membership_joined_ts == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert amforc.membership_level == 32767
    assert (amforc.location_latitude, amforc.location_longitude) == (Decimal(-90), Decimal(180))


def test_config_fetch_reads_a_file_and_a_url(http_server: str, ibp_config_dir: Path) -> None:
    expected = (ibp_config_dir / "services_rpc_iaaspricing.json").read_bytes()

    assert config_fetch(source=str(ibp_config_dir / "services_rpc_iaaspricing.json")) == expected
    assert config_fetch(source=f"{http_server}/services_rpc_iaaspricing.json", timeout=5) == expected


def test_config_fetch_names_the_key_and_source_of_an_unreachable_url() -> None:
    source = f"http://127.0.0.1:{_closed_port()}/x.json"

    with pytest.raises(ConfigFileError) as raised:
        config_fetch(source=source, timeout=5, key="AlertsConfig")

    assert raised.value.file_key == "AlertsConfig"
    assert str(raised.value).startswith(f"AlertsConfig ({source}): cannot fetch:")


# --- warnings: what a sync applies but an operator must see (issue 2, DECISIONS 10) ---------


@pytest.fixture
def small_config(ibp_config_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Two members and two services cut from the bundled real config (Apache-2.0,
    ibp-network/config; its README and LICENSE are copied alongside), edited so that each
    warning of the sync shows exactly once:

    - Amforc is level 4, below Asset-Hub-Paseo's LevelRequired 5, and is also assigned
      `No-Such-Chain`, which names no service;
    - Gatotech sits in region `Antarctica`, which the pricing file has no price for.
    """
    folder = tmp_path / "ibp-small"
    folder.mkdir()
    for name in ("README.md", "LICENSE", "SNAPSHOT", "services_rpc_iaaspricing.json"):
        shutil.copy(ibp_config_dir / name, folder / name)
    members = json.loads((ibp_config_dir / "members_professional.json").read_text())
    services = json.loads((ibp_config_dir / "services_rpc.json").read_text())
    amforc, gatotech = members["Amforc"], members["Gatotech"]
    amforc["Membership"]["MemberLevel"] = 4
    amforc["ServiceAssignments"] = {"Paseo": ["Paseo", "Asset-Hub-Paseo", "No-Such-Chain"]}
    gatotech["Location"]["Region"] = "Antarctica"
    gatotech["ServiceAssignments"] = {"Paseo": ["Paseo"]}
    (folder / "members_professional.json").write_text(json.dumps({"Amforc": amforc, "Gatotech": gatotech}, indent=2))
    kept = {name: services[name] for name in ("Paseo", "Asset-Hub-Paseo")}
    assert (
        kept["Paseo"]["Configuration"]["LevelRequired"],
        kept["Asset-Hub-Paseo"]["Configuration"]["LevelRequired"],
    ) == (3, 5)
    (folder / "services_rpc.json").write_text(json.dumps(kept, indent=2))
    return {
        "MembersConfig": str(folder / "members_professional.json"),
        "ServicesConfig": str(folder / "services_rpc.json"),
        "IaasPricingConfig": str(folder / "services_rpc_iaaspricing.json"),
        "AlertsConfig": "",
    }


def test_it_warns_about_an_unknown_service_a_region_without_price_and_a_level_too_low(
    small_config: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="members.config_sync"):
        result = config_sync(urls=small_config, now=T1)

    expected = [
        "member 'Amforc': level 4 is below 'Asset-Hub-Paseo''s required level 5; it is billed all the same",
        "member 'Amforc': assignment 'No-Such-Chain' names no known service",
        "member 'Gatotech': region 'Antarctica' has no price, so it cannot be billed",
    ]
    assert result.status == "applied"
    assert list(result.warnings) == expected
    assert ConfigSnapshot.objects.get().warnings == expected
    assert [r.getMessage() for r in caplog.records] == [
        f"event=config_warning snapshot={result.snapshot.pk} warning={json.dumps(w)}" for w in expected
    ]
    # Warnings do not stop the sync: the unknown name is left out, the rest is applied.
    assert sorted(ServiceAssignment.objects.values_list("member__member_index", "service__service_index")) == [
        ("Amforc", "Asset-Hub-Paseo"),
        ("Amforc", "Paseo"),
        ("Gatotech", "Paseo"),
    ]
    assert sorted(Member.objects.values_list("member_index", "membership_level")) == [("Amforc", 4), ("Gatotech", 6)]


# --- a server that accepts and never answers -----------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A real TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


def test_config_fetch_gives_up_on_a_server_that_never_answers(silent_server: str) -> None:
    source = f"{silent_server}/services_rpc.json"
    started = time.monotonic()

    with pytest.raises(ConfigFileError) as raised:
        config_fetch(source=source, timeout=1.5, key="ServicesConfig")

    assert 1.4 < time.monotonic() - started < 4
    assert str(raised.value) == f"ServicesConfig ({source}): no answer within 1.5 s"


def test_it_keeps_the_last_good_config_when_a_file_times_out(
    silent_server: str, base_urls: dict[str, str], use_config_urls: Any
) -> None:
    """The sync's own timeout (DEFAULT_FETCH_TIMEOUT, 15 s): it fails within it, naming the file."""
    config_sync(urls=base_urls, now=T1)
    registry_before = registry_fingerprint()
    source = f"{silent_server}/members_professional.json"
    urls = dict(base_urls) | {"MembersConfig": source}
    started = time.monotonic()

    result = config_sync(urls=urls, now=T2)

    took = time.monotonic() - started
    assert DEFAULT_FETCH_TIMEOUT - 0.5 < took < DEFAULT_FETCH_TIMEOUT + 5
    assert (result.status, result.file_key) == ("failed", "MembersConfig")
    assert result.error == f"MembersConfig ({source}): no answer within 15 s"
    assert registry_fingerprint() == registry_before
    failed = ConfigSnapshot.objects.get(status=ConfigSnapshot.Status.FAILED)
    assert failed.errors == [{"file": "MembersConfig", "field": "", "source": source, "message": result.error}]
    assert ConfigSnapshot.objects.filter(status=ConfigSnapshot.Status.APPLIED).count() == 1
