"""Adopting the Go collator's database: `manage.py migrate` on the Go tables keeps every row.

A scratch database gets the Go schema of data-model §3 (the DDL in the migrations'
_legacy_tables.py, checked against §3.1–3.6) and a few rows in the shapes the Go services
left behind. `manage.py migrate` then runs in a subprocess against it, as an operator
would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import MySQLdb
import pytest

from members.migrations._legacy_tables import GO_REGISTRY_DDL
from metrics.migrations._legacy_tables import GO_MEMBER_EVENTS_DDL, GO_REQUESTS_DDL

pytestmark = pytest.mark.mysql_only

REPO_ROOT = Path(__file__).resolve().parents[2]

EVENT_COLUMNS = (
    "id, check_type, check_name, endpoint, member_name, domain_name, status, is_ipv6, start_time, end_time, "
    "error, vote_data, additional_data"
)
# (id, check_type, check_name, endpoint, member_name, domain_name, status, is_ipv6, start, end, error, votes, data)
GO_EVENTS = [
    # Identity A, twice open: a legacy 'site' row (NULL endpoint/domain, as the monitor-side
    # writer left them) and a REF '1' row. Go's key saw two identities; ours sees one.
    (1, "site", "ping", None, "Stake Plus", None, 0, 0, datetime(2026, 1, 10, 10), None, "ping timeout", None, None),
    (2, "1", "ping", "", "Stake Plus", "", 0, 0, datetime(2026, 1, 10, 12), None, None, "null", "null"),
    # A legacy endpoint outage, closed by REF.
    (
        3,
        "endpoint",
        "wss",
        "wss://rpc.dotters.network/polkadot",
        "Amforc",
        "rpc.dotters.network",
        1,
        0,
        datetime(2026, 1, 5, 1, 0),
        datetime(2026, 1, 5, 1, 30),
        "timeout",
        '{"monitor-1": false}',
        '{"latency": 1200}',
    ),
    # A legacy domain outage, open, NULL endpoint and NULL is_ipv6.
    (4, "domain", "ssl", None, "Amforc", "rpc.ibp.network", 0, None, datetime(2026, 1, 6), None, None, None, None),
    # Closed by the monitor-side writer: status stays 0, end_time is set.
    (
        5,
        "2",
        "ssl",
        "sys.dotters.network",
        "Dwellir",
        "sys.dotters.network",
        0,
        1,
        datetime(2026, 1, 7),
        datetime(2026, 1, 7, 2),
        None,
        None,
        None,
    ),
    # Identity B, twice closed once 'site' is '1' and NULL is '': closed rows coexist.
    (6, "site", "ping", None, "Amforc", None, 1, 0, datetime(2026, 1, 2), datetime(2026, 1, 2, 1), None, None, None),
    (7, "1", "ping", "", "Amforc", "", 1, 0, datetime(2026, 1, 3), datetime(2026, 1, 3, 1), None, None, None),
    # REF's unknown type and a NULL check type stay what they are (apart from NULL → '').
    (8, "0", "ping", "", "Rotko Networks", "", 0, 0, datetime(2026, 1, 8), None, None, None, None),
    (9, None, "ping", "", "Turboflakes", "", 1, 0, datetime(2026, 1, 9), datetime(2026, 1, 9, 3), None, None, None),
]

REQUEST_COLUMNS = (
    "id, date, node_id, domain_name, member_name, network_asn, network_name, country_code, country_name, is_ipv6, hits"
)
# (id, date, node, domain, member, asn, network, cc, country, ipv6, hits)
GO_REQUESTS = [
    (1, date(2026, 1, 5), "dns-eu-1", "rpc.ibp.network", "Amforc", "AS16276", "OVH SAS", "FR", "France", 0, 500),
    # 2 and 3 collide once NULL is '': the larger day total (3, 150 hits) stays.
    (2, date(2026, 1, 5), None, "rpc.ibp.network", "Amforc", None, "OVH SAS", "FR", "France", None, 100),
    (3, date(2026, 1, 5), "", "rpc.ibp.network", "Amforc", "", "OVH SAS", "FR", "France", 0, 150),
    # No date: cannot take the new key.
    (4, None, "dns-eu-1", "rpc.ibp.network", "Amforc", "AS16276", "OVH SAS", "FR", "France", 0, 7),
    # Differ only in case, NULL ASN (so Go's case-insensitive key never compared them):
    # under the binary key they are two keys, and both stay (DECISIONS 6).
    (5, date(2026, 1, 6), "dns-eu-1", "sys.ibp.network", "Dwellir", None, "Turk Telekom", "TR", "Türkiye", 0, 40),
    (6, date(2026, 1, 6), "dns-eu-1", "sys.ibp.network", "Dwellir", None, "TURK TELEKOM", "TR", "Türkiye", 0, 30),
]


def _connect(database: str = "") -> Any:
    return MySQLdb.connect(host="127.0.0.1", port=3306, user="root", passwd="", db=database, charset="utf8mb4")


def _query(database: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    connection = _connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    finally:
        connection.close()


def _execute(database: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    connection = _connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        connection.commit()
    finally:
        connection.close()


@pytest.fixture
def go_database() -> Iterator[str]:
    """A scratch database holding the Go tables and rows, dropped at the end."""
    name = f"adopt_{uuid.uuid4().hex[:12]}"
    _execute("", f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    try:
        connection = _connect(name)
        try:
            with connection.cursor() as cursor:
                for ddl in [*GO_REGISTRY_DDL, GO_MEMBER_EVENTS_DDL, GO_REQUESTS_DDL]:
                    cursor.execute(ddl)
                cursor.executemany(
                    f"INSERT INTO member_events ({EVENT_COLUMNS}) VALUES ({', '.join(['%s'] * 13)})", GO_EVENTS
                )
                cursor.executemany(
                    f"INSERT INTO requests ({REQUEST_COLUMNS}) VALUES ({', '.join(['%s'] * 11)})", GO_REQUESTS
                )
                # The registry tables were never filled by Go; a row there must survive all the same.
                cursor.execute(
                    "INSERT INTO members VALUES (1, 'Stake Plus', 'Stake Plus', 'https://stake.plus', '', 6, "
                    "'2023-01-01 05:00:00', '2024-07-17 09:44:45', 1, '192.96.202.175', '', '', 3, 38.7777, -77.5474)"
                )
                cursor.execute(
                    "INSERT INTO services VALUES (1, 'Polkadot', 'Polkadot', 1, 1, 3, 'Polkadot', '0x29', 2, 4, 16, 4164, 11000)"
                )
                cursor.execute(
                    "INSERT INTO service_provider VALUES (1, 1, 'Dotters', 'wss://polkadot.dotters.network', NULL, NULL)"
                )
                cursor.execute("INSERT INTO service_assignment VALUES (1, 1, 1)")
            connection.commit()
        finally:
            connection.close()
        yield name
    finally:
        _execute("", f"DROP DATABASE IF EXISTS `{name}`")


def _migrate(database: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"COLLATOR_CONFIG": "config/test-mysql.json", "COLLATOR_MYSQL_DB": database}
    return subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _events(database: str) -> dict[int, tuple[Any, ...]]:
    return {row[0]: row[1:] for row in _query(database, f"SELECT {EVENT_COLUMNS} FROM member_events")}


def _requests(database: str, table: str = "requests") -> dict[int, tuple[Any, ...]]:
    return {row[0]: row[1:] for row in _query(database, f"SELECT {REQUEST_COLUMNS} FROM `{table}`")}


def _union_seconds(intervals: list[tuple[datetime, datetime | None]], horizon: datetime) -> int:
    """Seconds covered by the union of [start, end or horizon)."""
    covered = 0
    current_start: datetime | None = None
    current_end: datetime | None = None
    for start, end in sorted((s, e or horizon) for s, e in intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                covered += int((current_end - current_start).total_seconds())
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        covered += int((current_end - current_start).total_seconds())
    return covered


def test_it_adopts_the_go_tables_without_losing_a_row(go_database: str) -> None:
    """Identity A (Stake Plus / site / ping) was open since 10 Jan 10:00 in two rows.

    Up to 1 Feb 00:00 that is 21 days 14 h = 21 × 86,400 + 14 × 3,600 = 1,864,800 s of
    downtime, before and after: row 1 now ends where row 2 begins (12:00), row 2 stays open.
    """
    horizon = datetime(2026, 2, 1)
    identity_a_before = [(row[8], row[9]) for row in GO_EVENTS if row[0] in (1, 2)]
    assert _union_seconds(identity_a_before, horizon) == 1_864_800

    result = _migrate(go_database)
    assert result.returncode == 0, result.stderr[-3000:]

    events = _events(go_database)
    assert sorted(events) == [row[0] for row in GO_EVENTS]
    # (check_type, check_name, endpoint, member, domain, status, is_ipv6, start, end, error, votes, data)
    assert events[1] == (
        "1", "ping", "", "Stake Plus", "", 0, 0,
        datetime(2026, 1, 10, 10), datetime(2026, 1, 10, 12), "ping timeout", None, None,
    )  # fmt: skip
    assert events[2] == ("1", "ping", "", "Stake Plus", "", 0, 0, datetime(2026, 1, 10, 12), None, None, "null", "null")
    assert events[3] == (
        "3", "wss", "wss://rpc.dotters.network/polkadot", "Amforc", "rpc.dotters.network", 1, 0,
        datetime(2026, 1, 5, 1, 0), datetime(2026, 1, 5, 1, 30), "timeout", '{"monitor-1": false}', '{"latency": 1200}',
    )  # fmt: skip
    assert events[4] == (
        "2",
        "ssl",
        "",
        "Amforc",
        "rpc.ibp.network",
        0,
        0,
        datetime(2026, 1, 6),
        None,
        None,
        None,
        None,
    )
    assert events[5] == (
        "2", "ssl", "sys.dotters.network", "Dwellir", "sys.dotters.network", 0, 1,
        datetime(2026, 1, 7), datetime(2026, 1, 7, 2), None, None, None,
    )  # fmt: skip
    assert events[6][:5] == events[7][:5] == ("1", "ping", "", "Amforc", "")
    assert events[8][0] == "0"
    assert events[9][0] == ""
    assert {row[0] for row in events.values()} == {"0", "1", "2", "3", ""}
    identity_a_after = [(row[7], row[8]) for event_id, row in events.items() if event_id in (1, 2)]
    assert _union_seconds(identity_a_after, horizon) == 1_864_800

    kept = _requests(go_database)
    rejected = {
        row[0]: row[1:] for row in _query(go_database, f"SELECT {REQUEST_COLUMNS}, reason FROM requests_adopt_rejects")
    }
    assert sorted([*kept, *rejected]) == [row[0] for row in GO_REQUESTS]
    assert sorted(kept) == [1, 3, 5, 6]
    assert kept[1] == GO_REQUESTS[0][1:]
    assert kept[3] == GO_REQUESTS[2][1:]
    assert kept[5] == (
        date(2026, 1, 6),
        "dns-eu-1",
        "sys.ibp.network",
        "Dwellir",
        "",
        "Turk Telekom",
        "TR",
        "Türkiye",
        0,
        40,
    )
    assert kept[6] == (
        date(2026, 1, 6),
        "dns-eu-1",
        "sys.ibp.network",
        "Dwellir",
        "",
        "TURK TELEKOM",
        "TR",
        "Türkiye",
        0,
        30,
    )
    # Rejects keep the rows exactly as Go left them, NULLs included.
    assert rejected[2] == (*GO_REQUESTS[1][1:], "duplicate key")
    assert rejected[4] == (*GO_REQUESTS[3][1:], "no date")
    null_keys = _query(
        go_database,
        "SELECT COUNT(*) FROM requests WHERE node_id IS NULL OR network_asn IS NULL OR is_ipv6 IS NULL",
    )
    assert null_keys == [(0,)]

    assert _query(go_database, "SELECT id, member_index, location_region FROM members") == [(1, "Stake Plus", "3")]
    assert _query(go_database, "SELECT id, service_index, provisioned_cores FROM services")[0][:2] == (1, "Polkadot")
    assert _query(go_database, "SELECT id, provider_index, rpc_urls FROM service_provider") == [(1, "Dotters", "[]")]
    assert _query(go_database, "SELECT id, service_id, member_id FROM service_assignment") == [(1, 1, 1)]


def test_it_allows_many_closed_rows_but_one_open_row_per_identity(go_database: str) -> None:
    assert _migrate(go_database).returncode == 0
    insert = (
        "INSERT INTO member_events (check_type, check_name, endpoint, member_name, domain_name, status, is_ipv6, "
        "start_time, end_time) VALUES ('1', 'ping', '', 'Stake Plus', '', %s, 0, %s, %s)"
    )

    _execute(go_database, insert, (1, datetime(2026, 1, 11), datetime(2026, 1, 11, 1)))
    _execute(go_database, insert, (1, datetime(2026, 1, 12), datetime(2026, 1, 12, 1)))
    with pytest.raises(MySQLdb.IntegrityError):
        _execute(go_database, insert, (0, datetime(2026, 1, 13), None))

    assert _query(
        go_database,
        "SELECT COUNT(*), SUM(end_time IS NULL) FROM member_events "
        "WHERE check_type = '1' AND check_name = 'ping' AND member_name = 'Stake Plus'",
    ) == [(4, 1)]
    # A usage row with the same key but another node is a new row; the same node's is a duplicate.
    usage = (
        "INSERT INTO requests (date, node_id, domain_name, member_name, network_asn, network_name, country_code, "
        "country_name, is_ipv6, hits) VALUES ('2026-01-05', %s, 'rpc.ibp.network', 'Amforc', 'AS16276', 'OVH SAS', "
        "'FR', 'France', 0, 1)"
    )
    _execute(go_database, usage, ("dns-us-1",))
    with pytest.raises(MySQLdb.IntegrityError):
        _execute(go_database, usage, ("dns-eu-1",))


def test_it_is_harmless_to_migrate_twice(go_database: str) -> None:
    assert _migrate(go_database).returncode == 0
    events = _events(go_database)
    requests = _requests(go_database)
    rejects = _requests(go_database, "requests_adopt_rejects")

    again = _migrate(go_database)

    assert again.returncode == 0, again.stderr[-3000:]
    assert "No migrations to apply" in again.stdout
    assert _events(go_database) == events
    assert _requests(go_database) == requests
    assert _requests(go_database, "requests_adopt_rejects") == rejects


RERUN_ADOPTION = """
from django.apps import apps
from django.db import connection
from members.migrations._legacy_tables import adopt_registry_tables
from metrics.migrations._legacy_tables import adopt_usage_and_event_tables
with connection.schema_editor() as editor:
    adopt_registry_tables(apps, editor)
    adopt_usage_and_event_tables(apps, editor)
"""


def test_it_can_run_the_adoption_steps_again(go_database: str) -> None:
    """A half-applied upgrade is finished by running it again: on an adopted database it changes nothing."""
    assert _migrate(go_database).returncode == 0
    before = (_events(go_database), _requests(go_database), _requests(go_database, "requests_adopt_rejects"))
    env = os.environ | {"COLLATOR_CONFIG": "config/test-mysql.json", "COLLATOR_MYSQL_DB": go_database}

    rerun = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", RERUN_ADOPTION],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (_events(go_database), _requests(go_database), _requests(go_database, "requests_adopt_rejects")) == before


# A domain recovery as a monitor sends it, applied by the service the listener calls.
CLOSE_ADOPTED_DOMAIN = """
import os
from datetime import UTC, datetime
from metrics.protocol import FinalizeMessage
from metrics.services import downtime_finalize
message = FinalizeMessage.from_json(os.environ["FINALIZE_JSON"])
outcome = downtime_finalize(message=message, now=datetime(2026, 1, 6, 3, tzinfo=UTC))
print(outcome.action, outcome.closed_ids)
"""


def test_it_closes_an_adopted_open_domain_row_whose_endpoint_was_null(go_database: str) -> None:
    """Row 4 (Amforc / domain / ssl on rpc.ibp.network) is open with a NULL endpoint, as the
    monitor-side writer leaves domain checks; after adoption a recovery must close it."""
    assert _migrate(go_database).returncode == 0
    recovery = (
        b'{"Proposal":{"ID":"rec-4","SenderNodeID":"MONITOR-EU-1","CheckType":"domain","CheckName":"ssl",'
        b'"MemberName":"Amforc","DomainName":"rpc.ibp.network","Endpoint":"","ProposedStatus":true,'
        b'"ErrorText":"","Data":null,"IsIPv6":false,"Timestamp":"2026-01-06T02:30:00Z"},'
        b'"Passed":true,"DecidedAt":"2026-01-06T02:30:00.25Z"}'
    )
    env = os.environ | {
        "COLLATOR_CONFIG": "config/test-mysql.json",
        "COLLATOR_MYSQL_DB": go_database,
        "FINALIZE_JSON": recovery.decode(),
    }

    run = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", CLOSE_ADOPTED_DOMAIN],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[-1] == "closed (4,)"
    assert _events(go_database)[4] == (
        "2", "ssl", "", "Amforc", "rpc.ibp.network", 1, 0,
        datetime(2026, 1, 6), datetime(2026, 1, 6, 2, 30, 0), None, None, None,
    )  # fmt: skip
    assert _query(go_database, "SELECT close_proposal_id FROM member_events WHERE id = 4") == [("rec-4",)]
    # Every other row is as the adoption left it.
    assert _query(go_database, "SELECT COUNT(*) FROM member_events WHERE close_proposal_id IS NOT NULL") == [(1,)]
