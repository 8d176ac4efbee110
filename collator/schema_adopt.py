"""Helpers for migrations that adopt the Go collator's MySQL tables in place.

A migration that owns a Go table first runs `CREATE TABLE IF NOT EXISTS` with the Go
schema, then upgrades it step by step. A fresh database and a Go database therefore take
the same path, and the upgrade is exercised by every test run on MySQL. Each step checks
the live schema first, so a half-applied upgrade can be run again.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("collator.schema_adopt")


def _scalar(schema_editor: Any, sql: str, params: list[Any]) -> Any:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def column_exists(schema_editor: Any, table: str, column: str) -> bool:
    return bool(
        _scalar(
            schema_editor,
            "SELECT COUNT(*) FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s AND column_name = %s",
            [table, column],
        )
    )


def index_exists(schema_editor: Any, table: str, index: str) -> bool:
    return bool(
        _scalar(
            schema_editor,
            "SELECT COUNT(*) FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND table_name = %s AND index_name = %s",
            [table, index],
        )
    )


def table_exists(schema_editor: Any, table: str) -> bool:
    return bool(
        _scalar(
            schema_editor,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = %s",
            [table],
        )
    )


def drop_index_if_exists(schema_editor: Any, table: str, index: str) -> None:
    if index_exists(schema_editor, table, index):
        schema_editor.execute(f"ALTER TABLE `{table}` DROP INDEX `{index}`")


def add_column_if_missing(schema_editor: Any, table: str, column: str, definition: str) -> None:
    if not column_exists(schema_editor, table, column):
        schema_editor.execute(f"ALTER TABLE `{table}` ADD COLUMN `{column}` {definition}")


def add_filled_column(schema_editor: Any, table: str, column: str, column_type: str, fill_sql: str) -> None:
    """Add a NOT NULL column without a literal default: add it nullable, fill it, tighten it."""
    if column_exists(schema_editor, table, column):
        return
    schema_editor.execute(f"ALTER TABLE `{table}` ADD COLUMN `{column}` {column_type} NULL")
    schema_editor.execute(f"UPDATE `{table}` SET `{column}` = {fill_sql}")
    schema_editor.execute(f"ALTER TABLE `{table}` MODIFY `{column}` {column_type} NOT NULL")


def add_index_if_missing(schema_editor: Any, table: str, index: str, definition: str) -> None:
    if not index_exists(schema_editor, table, index):
        schema_editor.execute(f"ALTER TABLE `{table}` ADD {definition}")


def execute(schema_editor: Any, sql: str, params: list[Any] | None = None) -> int:
    """Run a data statement and return the number of rows it changed (for the log)."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return int(cursor.rowcount or 0)
