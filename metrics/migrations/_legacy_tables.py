"""Create or adopt the Go collator's `member_events` and `requests` tables.

The Go keys are replaced on purpose:
- `member_events` had one row per identity for ever, so a new outage reopened an old row
  (bug B21). The new key adds `open_marker`, a generated column that is 1 while the row is
  open and NULL once closed, so at most one row per identity is open (DECISIONS 1).
- `requests` had a seven-column key without the node and the address family, and NULL key
  columns, which never compare equal (bug B22). The new key has nine NOT NULL columns with
  a binary collation (DECISIONS 6).

Nothing is thrown away. Legacy text check types become '1'/'2'/'3' (DECISIONS 3). NULL key
columns become ''. Usage rows that collide once their NULLs are '' are Go's repeated
inserts of the same day total: the largest (latest) is kept in `requests` and the others
are moved, whole, to `requests_adopt_rejects`, as are rows without a date.
"""

from __future__ import annotations

import logging
from typing import Any

from collator import schema_adopt as adopt

logger = logging.getLogger("metrics.migrations")

# The Go schema, as `docs/mysql/db.sql` creates it (data-model §3.2, §3.6).
GO_MEMBER_EVENTS_DDL = """CREATE TABLE IF NOT EXISTS `member_events` (
  `id` INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `check_type` VARCHAR(24) COLLATE utf8mb4_bin NULL,
  `check_name` VARCHAR(64) COLLATE utf8mb4_bin NULL,
  `endpoint` VARCHAR(256) COLLATE utf8mb4_bin NULL,
  `member_name` VARCHAR(128) COLLATE utf8mb4_bin NULL,
  `domain_name` VARCHAR(128) COLLATE utf8mb4_bin NULL,
  `status` TINYINT NULL,
  `is_ipv6` TINYINT NULL,
  `start_time` DATETIME DEFAULT CURRENT_TIMESTAMP,
  `end_time` DATETIME NULL,
  `error` TEXT COLLATE utf8mb4_general_ci NULL,
  `vote_data` LONGTEXT COLLATE utf8mb4_bin NULL CHECK (json_valid(`vote_data`)),
  `additional_data` LONGTEXT COLLATE utf8mb4_bin NULL CHECK (json_valid(`additional_data`)),
  UNIQUE KEY `uniq_member_event` (`check_type`, `check_name`, `endpoint`, `member_name`, `domain_name`, `is_ipv6`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"""

GO_REQUESTS_DDL = """CREATE TABLE IF NOT EXISTS `requests` (
  `id` INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `date` DATE NULL,
  `node_id` VARCHAR(32) NULL,
  `domain_name` VARCHAR(128) NULL,
  `member_name` VARCHAR(64) NULL,
  `network_asn` VARCHAR(32) NULL,
  `network_name` VARCHAR(96) NULL,
  `country_code` VARCHAR(2) NULL,
  `country_name` VARCHAR(64) NULL,
  `is_ipv6` TINYINT NULL,
  `hits` INT UNSIGNED NULL,
  UNIQUE KEY `uniq_traffic_dedupe` (`date`, `domain_name`, `member_name`, `network_asn`, `network_name`,
                                    `country_code`, `country_name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"""

EVENT_IDENTITY = ["check_type", "check_name", "endpoint", "member_name", "domain_name", "is_ipv6"]
USAGE_KEY = [
    "date",
    "node_id",
    "domain_name",
    "member_name",
    "network_asn",
    "network_name",
    "country_code",
    "country_name",
    "is_ipv6",
]

_BIN = "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"

_EVENT_COLUMNS = [
    ("check_type", f"VARCHAR(24) {_BIN} NOT NULL DEFAULT ''"),
    ("check_name", f"VARCHAR(64) {_BIN} NOT NULL DEFAULT ''"),
    ("endpoint", f"VARCHAR(256) {_BIN} NOT NULL DEFAULT ''"),
    ("member_name", f"VARCHAR(128) {_BIN} NOT NULL DEFAULT ''"),
    ("domain_name", f"VARCHAR(128) {_BIN} NOT NULL DEFAULT ''"),
    ("status", "SMALLINT NOT NULL DEFAULT 0"),
    ("is_ipv6", "SMALLINT NOT NULL DEFAULT 0"),
    ("start_time", "DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP"),
]

_USAGE_COLUMNS = [
    ("date", "DATE NOT NULL"),
    ("node_id", f"VARCHAR(64) {_BIN} NOT NULL DEFAULT ''"),
    ("domain_name", f"VARCHAR(128) {_BIN} NOT NULL DEFAULT ''"),
    ("member_name", f"VARCHAR(128) {_BIN} NOT NULL DEFAULT ''"),
    ("network_asn", f"VARCHAR(32) {_BIN} NOT NULL DEFAULT ''"),
    ("network_name", f"VARCHAR(96) {_BIN} NOT NULL DEFAULT ''"),
    ("country_code", f"VARCHAR(2) {_BIN} NOT NULL DEFAULT ''"),
    ("country_name", f"VARCHAR(64) {_BIN} NOT NULL DEFAULT ''"),
    ("is_ipv6", "SMALLINT NOT NULL DEFAULT 0"),
    ("hits", "INT UNSIGNED NOT NULL DEFAULT 0"),
]


def _modify(schema_editor: Any, table: str, columns: list[tuple[str, str]]) -> None:
    clauses = ", ".join(f"MODIFY `{name}` {definition}" for name, definition in columns)
    schema_editor.execute(f"ALTER TABLE `{table}` {clauses}")


def _quoted(columns: list[str]) -> str:
    return ", ".join(f"`{c}`" for c in columns)


def _adopt_member_events(schema_editor: Any) -> None:
    schema_editor.execute(GO_MEMBER_EVENTS_DDL)
    adopt.drop_index_if_exists(schema_editor, "member_events", "uniq_member_event")

    converted = adopt.execute(
        schema_editor,
        "UPDATE `member_events` SET `check_type` = CASE LOWER(`check_type`) "
        "WHEN 'site' THEN '1' WHEN 'domain' THEN '2' WHEN 'endpoint' THEN '3' END "
        "WHERE LOWER(`check_type`) IN ('site', 'domain', 'endpoint')",
    )
    for column in ("check_type", "check_name", "endpoint", "member_name", "domain_name"):
        adopt.execute(schema_editor, f"UPDATE `member_events` SET `{column}` = '' WHERE `{column}` IS NULL")
    adopt.execute(schema_editor, "UPDATE `member_events` SET `is_ipv6` = 0 WHERE `is_ipv6` IS NULL")
    adopt.execute(schema_editor, "UPDATE `member_events` SET `status` = 0 WHERE `status` IS NULL")

    # Once 'site' and '1' are one type, an identity can have two open rows (a legacy one and
    # a REF one). Each older open row is ended where the newest begins: the union of the
    # intervals, and so every downtime figure, stays exactly the same.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_quoted(EVENT_IDENTITY)}, MAX(`start_time`) FROM `member_events` "
            f"WHERE `end_time` IS NULL GROUP BY {_quoted(EVENT_IDENTITY)} HAVING COUNT(*) > 1"
        )
        duplicates = cursor.fetchall()
    ended = 0
    for *identity, newest_start in duplicates:
        where = " AND ".join(f"`{c}` = %s" for c in EVENT_IDENTITY)
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT `id` FROM `member_events` WHERE {where} AND `end_time` IS NULL "
                "ORDER BY `start_time` DESC, `id` DESC",
                identity,
            )
            older_ids = [row[0] for row in cursor.fetchall()[1:]]
            cursor.execute(
                "UPDATE `member_events` SET `end_time` = GREATEST(`start_time`, %s) "
                f"WHERE `id` IN ({', '.join(['%s'] * len(older_ids))})",
                [newest_start, *older_ids],
            )
            ended += len(older_ids)

    _modify(schema_editor, "member_events", _EVENT_COLUMNS)
    schema_editor.execute("ALTER TABLE `member_events` MODIFY `id` INT UNSIGNED NOT NULL AUTO_INCREMENT")
    adopt.add_column_if_missing(
        schema_editor, "member_events", "open_marker", "SMALLINT AS (IF(`end_time` IS NULL, 1, NULL)) STORED"
    )
    for column in ("proposal_id", "close_proposal_id"):
        adopt.add_column_if_missing(schema_editor, "member_events", column, "VARCHAR(128) NULL")
    adopt.add_column_if_missing(schema_editor, "member_events", "matrix_event_id", "VARCHAR(255) NULL")
    adopt.add_index_if_missing(
        schema_editor,
        "member_events",
        "uniq_member_event_open",
        f"UNIQUE KEY `uniq_member_event_open` ({_quoted([*EVENT_IDENTITY, 'open_marker'])})",
    )
    adopt.add_index_if_missing(
        schema_editor, "member_events", "member_events_start_idx", "INDEX `member_events_start_idx` (`start_time`)"
    )
    adopt.add_index_if_missing(
        schema_editor,
        "member_events",
        "member_events_member_idx",
        "INDEX `member_events_member_idx` (`member_name`, `start_time`)",
    )
    logger.info("event=member_events_adopted check_types_converted=%d duplicate_open_rows_ended=%d", converted, ended)


def _key_as_new(column: str) -> str:
    """A key column as the new key will compare it: NULL is '' (0), and text is byte-wise.

    The Go columns are utf8mb4_general_ci, so comparing them as they are would merge
    `Turk` and `TURK`, which the new binary key keeps apart (DECISIONS 6).
    """
    if column == "date":
        return "`date`"
    if column == "is_ipv6":
        return "COALESCE(`is_ipv6`, 0)"
    return f"COALESCE(`{column}`, '') COLLATE utf8mb4_bin"


def _adopt_requests(schema_editor: Any) -> None:
    schema_editor.execute(GO_REQUESTS_DDL)
    adopt.drop_index_if_exists(schema_editor, "requests", "uniq_traffic_dedupe")

    # Rows that cannot take the new key are moved, never deleted, exactly as Go left them
    # (NULLs included), before any value is normalised.
    schema_editor.execute(
        "CREATE TABLE IF NOT EXISTS `requests_adopt_rejects` ("
        "`id` INT UNSIGNED NOT NULL PRIMARY KEY, `date` DATE NULL, `node_id` VARCHAR(64) NULL, "
        "`domain_name` VARCHAR(128) NULL, `member_name` VARCHAR(128) NULL, `network_asn` VARCHAR(32) NULL, "
        "`network_name` VARCHAR(96) NULL, `country_code` VARCHAR(2) NULL, `country_name` VARCHAR(64) NULL, "
        "`is_ipv6` SMALLINT NULL, `hits` INT UNSIGNED NULL, `reason` VARCHAR(32) NOT NULL"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )
    columns = _quoted(["id", *USAGE_KEY, "hits"])
    # A re-run after a half-applied upgrade must not move a row twice.
    not_moved = "`id` NOT IN (SELECT `id` FROM `requests_adopt_rejects`)"
    without_date = adopt.execute(
        schema_editor,
        f"INSERT INTO `requests_adopt_rejects` ({columns}, `reason`) "
        f"SELECT {columns}, 'no date' FROM `requests` WHERE `date` IS NULL AND {not_moved}",
    )

    # Rows that collide under the new key are Go's repeated inserts of one day total. The
    # survivor of each key is the row with the most hits (day totals only grow during a
    # day), the newest on a tie.
    ranked = (
        f"SELECT {columns}, ROW_NUMBER() OVER (PARTITION BY {', '.join(_key_as_new(c) for c in USAGE_KEY)} "
        "ORDER BY COALESCE(`hits`, 0) DESC, `id` DESC) AS `rank_in_key` FROM `requests` WHERE `date` IS NOT NULL"
    )
    duplicated = adopt.execute(
        schema_editor,
        f"INSERT INTO `requests_adopt_rejects` ({columns}, `reason`) "
        f"SELECT {columns}, 'duplicate key' FROM ({ranked}) ranked WHERE `rank_in_key` > 1 AND {not_moved}",
    )
    adopt.execute(schema_editor, "DELETE FROM `requests` WHERE `id` IN (SELECT `id` FROM `requests_adopt_rejects`)")

    for column in (
        "node_id",
        "domain_name",
        "member_name",
        "network_asn",
        "network_name",
        "country_code",
        "country_name",
    ):
        adopt.execute(schema_editor, f"UPDATE `requests` SET `{column}` = '' WHERE `{column}` IS NULL")
    adopt.execute(schema_editor, "UPDATE `requests` SET `is_ipv6` = 0 WHERE `is_ipv6` IS NULL")
    adopt.execute(schema_editor, "UPDATE `requests` SET `hits` = 0 WHERE `hits` IS NULL")

    _modify(schema_editor, "requests", _USAGE_COLUMNS)
    schema_editor.execute("ALTER TABLE `requests` MODIFY `id` INT UNSIGNED NOT NULL AUTO_INCREMENT")
    adopt.add_index_if_missing(
        schema_editor, "requests", "uniq_traffic_node", f"UNIQUE KEY `uniq_traffic_node` ({_quoted(USAGE_KEY)})"
    )
    logger.info("event=requests_adopted rows_without_date=%d duplicate_rows_moved=%d", without_date, duplicated)


def adopt_usage_and_event_tables(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "mysql":
        _adopt_member_events(schema_editor)
        _adopt_requests(schema_editor)
        return
    for model_name in ("MemberEvent", "RequestStat"):
        schema_editor.create_model(apps.get_model("metrics", model_name))


def drop_usage_and_event_tables(apps: Any, schema_editor: Any) -> None:
    """Unapplying keeps the tables: on MySQL they may hold the Go collator's history, and
    applying again adopts them in place. SQLite tables are only ever ours, so they go."""
    if schema_editor.connection.vendor == "mysql":
        return
    for model_name in ("RequestStat", "MemberEvent"):
        schema_editor.delete_model(apps.get_model("metrics", model_name))
