"""Column types shared by the tables inherited from the Go collator."""

from __future__ import annotations

from typing import Any

from django.db import models


class UnsignedAutoField(models.AutoField):
    """`INT UNSIGNED AUTO_INCREMENT`, the primary key type of every Go table (data-model §3).

    On MySQL a foreign key must match its target's signedness exactly, so both the column
    and the columns that reference it are unsigned. Other databases use the plain type.
    """

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "mysql":
            return "integer UNSIGNED AUTO_INCREMENT"
        return super().db_type(connection)

    def rel_db_type(self, connection: Any) -> str | None:
        if connection.vendor == "mysql":
            return "integer UNSIGNED"
        return super().rel_db_type(connection)
