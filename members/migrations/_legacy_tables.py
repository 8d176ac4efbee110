"""Create or adopt the Go collator's registry tables (data-model §3.1, §3.3–3.5).

The Go service created these tables but never wrote to them (bug B20), and their types do
not fit the config: a region name in a TINYINT, fractional resources in a SMALLINT, three
URL slots. We widen them in place. Rows that are there are kept.
"""

from __future__ import annotations

from typing import Any

from collator import schema_adopt as adopt

# The Go schema, as `docs/mysql/db.sql` creates it (data-model §3).
GO_REGISTRY_DDL = [
    """CREATE TABLE IF NOT EXISTS `members` (
      `id` INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      `member_index` VARCHAR(48) NOT NULL,
      `member_name` VARCHAR(48) NOT NULL,
      `member_website` VARCHAR(128) NOT NULL,
      `member_logo` VARCHAR(128) NOT NULL,
      `membership_level` TINYINT NOT NULL,
      `membership_joined_ts` DATETIME NOT NULL,
      `membership_promotion_ts` DATETIME NOT NULL,
      `service_active` TINYINT NOT NULL,
      `service_ipv4` VARCHAR(32) NOT NULL,
      `service_ipv6` VARCHAR(128) NOT NULL,
      `service_monitorUrl` VARCHAR(256) NOT NULL,
      `location_region` TINYINT NOT NULL,
      `location_latitude` DECIMAL(9,6) NOT NULL,
      `location_longitude` DECIMAL(9,6) NOT NULL,
      UNIQUE KEY `uniq_member_idx_name` (`member_index`, `member_name`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci""",
    """CREATE TABLE IF NOT EXISTS `services` (
      `id` INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      `service_index` VARCHAR(48) NOT NULL,
      `configuration_name` VARCHAR(48) NOT NULL,
      `configuration_type` TINYINT NOT NULL,
      `configuration_active` TINYINT NOT NULL,
      `configuration_memberLevelReq` TINYINT NOT NULL,
      `configuration_networkname` VARCHAR(48) NOT NULL,
      `configuration_stateroothash` VARCHAR(384) NOT NULL,
      `provisioned_nodes` SMALLINT NOT NULL,
      `provisioned_cores` SMALLINT NOT NULL,
      `provisioned_memory` SMALLINT NOT NULL,
      `provisioned_disk` SMALLINT NOT NULL,
      `provisioned_bandwidth` SMALLINT NOT NULL,
      UNIQUE KEY `uniq_service_cfg` (`service_index`, `configuration_name`, `configuration_networkname`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci""",
    """CREATE TABLE IF NOT EXISTS `service_provider` (
      `id` INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      `service_id` INT UNSIGNED NOT NULL,
      `provider_index` VARCHAR(48) NULL,
      `provider_rpcUrl1` VARCHAR(128) NULL,
      `provider_rpcUrl2` VARCHAR(128) NULL,
      `provider_rpcUrl3` VARCHAR(128) NULL,
      UNIQUE KEY `uniq_service_provider` (`service_id`, `provider_index`),
      CONSTRAINT `fk_service_provider_service` FOREIGN KEY (`service_id`) REFERENCES `services` (`id`)
        ON UPDATE CASCADE ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci""",
    """CREATE TABLE IF NOT EXISTS `service_assignment` (
      `id` INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      `service_id` INT UNSIGNED NOT NULL,
      `member_id` INT UNSIGNED NOT NULL,
      UNIQUE KEY `uniq_service_member` (`service_id`, `member_id`),
      CONSTRAINT `fk_service_assignment_service` FOREIGN KEY (`service_id`) REFERENCES `services` (`id`)
        ON UPDATE CASCADE ON DELETE CASCADE,
      CONSTRAINT `fk_service_assignment_member` FOREIGN KEY (`member_id`) REFERENCES `members` (`id`)
        ON UPDATE CASCADE ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci""",
]

_MEMBER_COLUMNS = [
    ("member_index", "VARCHAR(128) NOT NULL"),
    ("member_name", "VARCHAR(255) NOT NULL"),
    ("member_website", "VARCHAR(512) NOT NULL DEFAULT ''"),
    ("member_logo", "VARCHAR(512) NOT NULL DEFAULT ''"),
    ("membership_level", "SMALLINT NOT NULL DEFAULT 0"),
    ("membership_joined_ts", "DATETIME(6) NULL"),
    ("membership_promotion_ts", "DATETIME(6) NULL"),
    ("service_active", "SMALLINT NOT NULL DEFAULT 0"),
    ("service_ipv4", "VARCHAR(64) NOT NULL DEFAULT ''"),
    ("service_ipv6", "VARCHAR(128) NOT NULL DEFAULT ''"),
    ("service_monitorUrl", "VARCHAR(256) NOT NULL DEFAULT ''"),
    ("location_region", "VARCHAR(64) NOT NULL DEFAULT ''"),
    ("location_latitude", "DECIMAL(9,6) NOT NULL DEFAULT 0"),
    ("location_longitude", "DECIMAL(9,6) NOT NULL DEFAULT 0"),
]

_SERVICE_COLUMNS = [
    ("service_index", "VARCHAR(128) NOT NULL"),
    ("configuration_name", "VARCHAR(128) NOT NULL DEFAULT ''"),
    ("configuration_type", "VARCHAR(16) NOT NULL DEFAULT ''"),
    ("configuration_active", "SMALLINT NOT NULL DEFAULT 0"),
    ("configuration_memberLevelReq", "SMALLINT NOT NULL DEFAULT 0"),
    ("configuration_networkname", "VARCHAR(128) NOT NULL DEFAULT ''"),
    ("configuration_stateroothash", "VARCHAR(384) NOT NULL DEFAULT ''"),
    ("provisioned_nodes", "INT NOT NULL DEFAULT 0"),
    ("provisioned_cores", "DECIMAL(18,6) NOT NULL DEFAULT 0"),
    ("provisioned_memory", "DECIMAL(18,6) NOT NULL DEFAULT 0"),
    ("provisioned_disk", "DECIMAL(18,6) NOT NULL DEFAULT 0"),
    ("provisioned_bandwidth", "DECIMAL(18,6) NOT NULL DEFAULT 0"),
]

_SERVICE_NEW_COLUMNS = [
    ("configuration_displayname", "VARCHAR(255) NOT NULL DEFAULT ''"),
    ("configuration_relaynetwork", "VARCHAR(128) NOT NULL DEFAULT ''"),
    ("configuration_networktype", "VARCHAR(64) NOT NULL DEFAULT ''"),
    ("configuration_websiteurl", "VARCHAR(512) NOT NULL DEFAULT ''"),
    ("configuration_logourl", "VARCHAR(512) NOT NULL DEFAULT ''"),
]

_PROVIDER_COLUMNS = [
    ("provider_index", "VARCHAR(128) NOT NULL DEFAULT ''"),
    ("provider_rpcUrl1", "VARCHAR(256) NULL"),
    ("provider_rpcUrl2", "VARCHAR(256) NULL"),
    ("provider_rpcUrl3", "VARCHAR(256) NULL"),
]


def _modify(schema_editor: Any, table: str, columns: list[tuple[str, str]]) -> None:
    clauses = ", ".join(f"MODIFY `{name}` {definition}" for name, definition in columns)
    schema_editor.execute(f"ALTER TABLE `{table}` {clauses}")


def _adopt_mysql(schema_editor: Any) -> None:
    for ddl in GO_REGISTRY_DDL:
        schema_editor.execute(ddl)

    # members: the key is the member key alone; the Go key also held the display name.
    adopt.drop_index_if_exists(schema_editor, "members", "uniq_member_idx_name")
    # A TINYINT region cannot hold "North America"; the old numbers mean nothing, and the
    # next config sync writes the real names.
    _modify(schema_editor, "members", _MEMBER_COLUMNS)
    adopt.add_index_if_missing(
        schema_editor, "members", "members_member_index_uniq", "UNIQUE KEY `members_member_index_uniq` (`member_index`)"
    )

    adopt.drop_index_if_exists(schema_editor, "services", "uniq_service_cfg")
    _modify(schema_editor, "services", _SERVICE_COLUMNS)
    for name, definition in _SERVICE_NEW_COLUMNS:
        adopt.add_column_if_missing(schema_editor, "services", name, definition)
    # MySQL 8 allows no literal default on TEXT/JSON columns, so these are added, filled, then tightened.
    adopt.add_filled_column(schema_editor, "services", "configuration_description", "LONGTEXT", "''")
    adopt.add_index_if_missing(
        schema_editor,
        "services",
        "services_service_index_uniq",
        "UNIQUE KEY `services_service_index_uniq` (`service_index`)",
    )

    adopt.execute(schema_editor, "UPDATE `service_provider` SET `provider_index` = '' WHERE `provider_index` IS NULL")
    _modify(schema_editor, "service_provider", _PROVIDER_COLUMNS)
    adopt.add_filled_column(schema_editor, "service_provider", "rpc_urls", "JSON", "'[]'")


def adopt_registry_tables(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "mysql":
        _adopt_mysql(schema_editor)
        return
    for model_name in ("Member", "Service", "ServiceProvider", "ServiceAssignment"):
        schema_editor.create_model(apps.get_model("members", model_name))


def drop_registry_tables(apps: Any, schema_editor: Any) -> None:
    """Unapplying keeps the tables: on MySQL they may hold the Go collator's history, and
    applying again adopts them in place. SQLite tables are only ever ours, so they go."""
    if schema_editor.connection.vendor == "mysql":
        return
    for model_name in ("ServiceAssignment", "ServiceProvider", "Service", "Member"):
        schema_editor.delete_model(apps.get_model("members", model_name))
