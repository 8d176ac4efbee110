"""members/config_files.py: values the registry and billing cannot use fail the file, naming the field.

Each case edits one field of the bundled real config (Apache-2.0, ibp-network/config) and
asserts the whole error text: the config key, the source, the field path and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.db.backends.base.operations import BaseDatabaseOperations

from members.config_files import (
    COLUMN_DECIMAL_DIGITS,
    COLUMN_MAX_CHARS,
    COLUMN_MAX_INTEGER,
    DESCRIPTION_MAX_BYTES,
    LAST_UNIX_SECOND,
    ConfigFileError,
    parse_members,
    parse_pricing,
    parse_services,
)

Parser = Callable[..., dict[str, Any]]
PARSERS: dict[str, tuple[str, Parser]] = {
    "MembersConfig": ("members_professional.json", parse_members),
    "ServicesConfig": ("services_rpc.json", parse_services),
    "IaasPricingConfig": ("services_rpc_iaaspricing.json", parse_pricing),
}


def _edited_text(ibp_config_dir: Path, file_key: str, path: str, raw_value: str) -> str:
    """The bundled file with the field at dotted `path` set to the JSON text `raw_value`.

    The value is spliced in as text, so NaN, Infinity and numbers too long for a float reach
    the parser exactly as an operator would have written them.
    """
    name, _ = PARSERS[file_key]
    document = json.loads((ibp_config_dir / name).read_text())
    *parents, leaf = path.split(".")
    node = document
    for key in parents:
        node = node[key]
    node[leaf] = "__VALUE__"
    return json.dumps(document, indent=2).replace('"__VALUE__"', raw_value)


def _parse(file_key: str, text: str) -> dict[str, Any]:
    name, parser = PARSERS[file_key]
    return parser(text, source=name)


# (file, field, JSON text of the new value, the reason after "field <path>: ")
REFUSED = [
    # Resources and prices: negative or non-finite values would bill a negative or NaN cost.
    ("ServicesConfig", "Paseo.Resources.nodes", "-3", "must not be negative, got -3"),
    ("ServicesConfig", "Paseo.Resources.cores", "-1.5", "must not be negative, got -1.5"),
    ("ServicesConfig", "Paseo.Resources.disk", "NaN", "expected a finite number, got NaN"),
    ("ServicesConfig", "Paseo.Resources.memory", "Infinity", "expected a finite number, got Infinity"),
    ("ServicesConfig", "Paseo.Resources.bandwidth", "-Infinity", "expected a finite number, got -Infinity"),
    ("ServicesConfig", "Paseo.Resources.nodes", "Infinity", "expected an integer, got Infinity"),
    ("IaasPricingConfig", "Africa.cores", "-100", "must not be negative, got -100"),
    ("IaasPricingConfig", "Europe.memory", "NaN", "expected a finite number, got NaN"),
    # What the registry columns cannot hold (the database refused it, naming neither file nor field).
    (
        "ServicesConfig",
        "Paseo.Resources.cores",
        "1e308",
        "is 1E+308; the registry column services.provisioned_cores holds at most 999999999999.999999",
    ),
    (
        # The database rounds to 6 places first: 999999999999.9999995 would be 10^12.
        "ServicesConfig",
        "Paseo.Resources.disk",
        "999999999999.9999995",
        "is 999999999999.9999995; the registry column services.provisioned_disk holds at most 999999999999.999999",
    ),
    (
        "ServicesConfig",
        "Paseo.Resources.nodes",
        "2147483648",
        "is 2147483648; the registry column services.provisioned_nodes holds at most 2147483647",
    ),
    (
        "ServicesConfig",
        "Paseo.Configuration.LevelRequired",
        "32768",
        "is 32768; the registry column services.configuration_memberLevelReq holds at most 32767",
    ),
    ("ServicesConfig", "Paseo.Configuration.LevelRequired", "-1", "must not be negative, got -1"),
    (
        "ServicesConfig",
        "Paseo.Configuration.ServiceType",
        json.dumps("R" * 17),
        "is 17 characters long; the registry column services.configuration_type holds at most 16",
    ),
    (
        "IaasPricingConfig",
        "Africa.cores",
        "1e10",
        "is 1E+10; the registry column region_price.cores holds at most 9999999999.9999999999",
    ),
    # Membership times: out of Python's and MariaDB's datetime range, they crashed the sync.
    (
        "MembersConfig",
        "Amforc.Membership.Joined",
        str(10**20),
        "Unix time 100000000000000000000 is after 9999-12-31T23:59:59Z, the last time the registry holds",
    ),
    (
        "MembersConfig",
        "Amforc.Membership.Joined",
        "253402300800",
        "Unix time 253402300800 is after 9999-12-31T23:59:59Z, the last time the registry holds",
    ),
    (
        "MembersConfig",
        "Amforc.Membership.LastRankup",
        "-1",
        "Unix time -1 is before 1970 (0 means unknown)",
    ),
    ("MembersConfig", "Amforc.Membership.Joined", "Infinity", "expected an integer, got Infinity"),
    (
        "MembersConfig",
        "Amforc.Membership.MemberLevel",
        "32768",
        "is 32768; the registry column members.membership_level holds at most 32767",
    ),
    ("MembersConfig", "Amforc.Membership.MemberLevel", "-6", "must not be negative, got -6"),
    # Coordinates: 1e30 crashed the sync in Decimal.quantize, 1000 overflowed DECIMAL(9, 6).
    ("MembersConfig", "Amforc.Location.Latitude", "1e30", "must be between -90 and 90, got 1E+30"),
    ("MembersConfig", "Amforc.Location.Longitude", "-180.5", "must be between -180 and 180, got -180.5"),
    (
        "MembersConfig",
        "Amforc.Details.Website",
        json.dumps("https://" + "a" * 505),
        "is 513 characters long; the registry column members.member_website holds at most 512",
    ),
]


@pytest.mark.parametrize(
    ("file_key", "field_path", "raw_value", "reason"), REFUSED, ids=[f"{c[1]}={c[2][:24]}" for c in REFUSED]
)
def test_it_refuses_a_value_billing_or_the_registry_cannot_use(
    ibp_config_dir: Path, file_key: str, field_path: str, raw_value: str, reason: str
) -> None:
    text = _edited_text(ibp_config_dir, file_key, field_path, raw_value)

    with pytest.raises(ConfigFileError) as raised:
        _parse(file_key, text)

    name, _ = PARSERS[file_key]
    assert str(raised.value) == f"{file_key} ({name}): field {field_path}: {reason}"
    assert (raised.value.file_key, raised.value.field_path) == (file_key, field_path)


def test_it_names_the_rpc_url_too_long_for_its_column(ibp_config_dir: Path) -> None:
    urls = json.dumps(["wss://paseo.dotters.network", "wss://" + "p" * 251])
    text = _edited_text(ibp_config_dir, "ServicesConfig", "Paseo.Providers.Dotters.RpcUrls", urls)

    with pytest.raises(ConfigFileError) as raised:
        parse_services(text, source="services_rpc.json")

    assert str(raised.value) == (
        "ServicesConfig (services_rpc.json): field Paseo.Providers.Dotters.RpcUrls[1]: is 257 characters long; "
        "the registry column service_provider.provider_rpcUrl1 holds at most 256"
    )


def test_it_accepts_the_largest_values_the_registry_holds(ibp_config_dir: Path) -> None:
    """The limits are inclusive: the last value each column holds is parsed exactly."""
    services_text = _edited_text(ibp_config_dir, "ServicesConfig", "Paseo.Resources.cores", "999999999999.999999")
    members_text = _edited_text(ibp_config_dir, "MembersConfig", "Amforc.Membership.Joined", str(LAST_UNIX_SECOND))
    pricing_text = _edited_text(ibp_config_dir, "IaasPricingConfig", "Africa.cores", "9999999999.9999999999")

    paseo = parse_services(services_text)["Paseo"]
    amforc = parse_members(members_text)["Amforc"]
    africa = parse_pricing(pricing_text)["Africa"]

    assert paseo.cores == Decimal("999999999999.999999")
    assert amforc.joined == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert africa.cores == Decimal("9999999999.9999999999")


def test_it_reads_zero_as_an_unknown_membership_time(ibp_config_dir: Path) -> None:
    text = _edited_text(ibp_config_dir, "MembersConfig", "Amforc.Membership.Joined", "0")

    assert parse_members(text)["Amforc"].joined is None


@pytest.mark.parametrize(
    ("file_key", "message"),
    [
        ("MembersConfig", "the file holds no members; an empty members file is refused"),
        ("ServicesConfig", "the file holds no services; an empty services file is refused"),
        ("IaasPricingConfig", "the file holds no regions; an empty pricing file is refused"),
    ],
)
def test_it_refuses_a_file_with_no_entries(file_key: str, message: str) -> None:
    """Applied, `{}` deleted every member (or service) and every assignment from the registry."""
    with pytest.raises(ConfigFileError) as raised:
        _parse(file_key, "{}")

    assert str(raised.value) == f"{file_key} ({PARSERS[file_key][0]}): {message}"


def test_it_refuses_a_description_longer_than_its_text_column(ibp_config_dir: Path) -> None:
    # 21,846 three-byte characters are 65,538 bytes: more than TEXT holds, though far fewer characters.
    text = _edited_text(ibp_config_dir, "ServicesConfig", "Paseo.Configuration.Description", json.dumps("€" * 21_846))

    with pytest.raises(ConfigFileError) as raised:
        parse_services(text, source="services_rpc.json")

    assert str(raised.value) == (
        "ServicesConfig (services_rpc.json): field Paseo.Configuration.Description: is 65538 bytes long in UTF-8; "
        f"the registry column services.configuration_description holds at most {DESCRIPTION_MAX_BYTES}"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"Amforc": {"Details": {"Name": "Amf\xf6rc"}}}', "the file is not UTF-8 text"),
        ("[" * 100_000 + "]" * 100_000, "invalid JSON: nested too deeply"),
        (
            '{"Amforc": {"Membership": {"Joined": ' + "9" * 5000 + "}}}",
            "invalid JSON: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits;"
            " use sys.set_int_max_str_digits() to increase the limit",
        ),
    ],
    ids=["latin-1", "deep nesting", "5000 digits"],
)
def test_it_turns_what_python_cannot_decode_into_a_file_error(raw: bytes | str, message: str) -> None:
    """These raised UnicodeDecodeError, RecursionError or ValueError out of the sync."""
    with pytest.raises(ConfigFileError) as raised:
        parse_members(raw, source="members_professional.json")

    assert str(raised.value) == f"MembersConfig (members_professional.json): {message}"


def _model_field(column_key: str) -> Any:
    table, column = column_key.split(".")
    model = next(m for m in apps.get_app_config("members").get_models() if m._meta.db_table == table)
    return next(f for f in model._meta.concrete_fields if f.column == column)


def test_it_holds_values_to_the_limits_of_the_registry_columns() -> None:
    """The parser's limits are the models' columns, so a migration cannot leave them behind."""
    for column_key, max_chars in COLUMN_MAX_CHARS.items():
        assert _model_field(column_key).max_length == max_chars, column_key
    for column_key, (max_digits, decimal_places) in COLUMN_DECIMAL_DIGITS.items():
        field = _model_field(column_key)
        assert (field.max_digits, field.decimal_places) == (max_digits, decimal_places), column_key
    for column_key, maximum in COLUMN_MAX_INTEGER.items():
        # The SQL ranges MySQL/MariaDB use (SQLite stores every integer in 64 bits).
        _, largest = BaseDatabaseOperations.integer_field_ranges[_model_field(column_key).get_internal_type()]
        assert largest == maximum, column_key
    assert _model_field("services.configuration_description").get_internal_type() == "TextField"
