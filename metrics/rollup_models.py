"""Daily rollups of the `requests` table, so that month-long API queries never scan raw rows.

The raw table holds one row per (day, node, domain, member, ASN, network, country, family)
(DECISIONS 6): about 100,000 rows a day on the live network. The API asks for a month at a
time, grouped by one dimension. These tables hold the same day totals summed over nodes and
address families:

- `requests_daily`: every dimension but node and family; it answers any combination of
  filters (members/stats, cross-filtered Data-page queries);
- one small table per dimension (`requests_daily_country`, `_asn`, `_domain`, `_member`):
  tens to hundreds of rows a day, which answer the unfiltered (or own-dimension filtered)
  month in a few milliseconds.

They are derived data, rebuilt for a day by `metrics.rollups.usage_rollups_refresh` from
the raw rows of that day, inside one transaction, so a replaced raw row (a later collection
round) never leaves a stale total behind.
"""

from __future__ import annotations

from typing import Any

from django.db import models


class BinaryCharField(models.CharField):
    """A VARCHAR compared byte-wise on MySQL, like the raw table's key columns (DECISIONS 6).

    `Türk`, `Turk` and `TURK` stay three groups. Other databases compare bytes already.
    """

    def db_parameters(self, connection: Any) -> dict[str, Any]:
        params = super().db_parameters(connection)
        if connection.vendor == "mysql":
            params["collation"] = "utf8mb4_bin"
        return params


class RequestDaily(models.Model):
    date = models.DateField()
    domain_name = BinaryCharField(max_length=128, default="")
    member_name = BinaryCharField(max_length=128, default="")
    network_asn = BinaryCharField(max_length=32, default="")
    network_name = BinaryCharField(max_length=96, default="")
    country_code = BinaryCharField(max_length=2, default="")
    country_name = BinaryCharField(max_length=64, default="")
    hits = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "requests_daily"
        verbose_name = "daily usage row"
        verbose_name_plural = "daily usage rows"
        # Few indexes on purpose: every index costs on each day's delete-and-rebuild
        # (measured in bench/bench_api.py). Member stats need the member one.
        indexes = [
            models.Index(fields=["date"], name="requests_daily_date_idx"),
            models.Index(fields=["member_name", "date"], name="requests_daily_member_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.member_name} {self.domain_name} {self.hits}"


class RequestDailyCountry(models.Model):
    date = models.DateField()
    country_code = BinaryCharField(max_length=2, default="")
    country_name = BinaryCharField(max_length=64, default="")
    hits = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "requests_daily_country"
        verbose_name = "daily usage by country"
        verbose_name_plural = "daily usage by country"
        constraints = [
            models.UniqueConstraint(fields=["date", "country_code", "country_name"], name="uniq_requests_daily_country")
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.country_code} {self.hits}"


class RequestDailyAsn(models.Model):
    date = models.DateField()
    network_asn = BinaryCharField(max_length=32, default="")
    network_name = BinaryCharField(max_length=96, default="")
    hits = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "requests_daily_asn"
        verbose_name = "daily usage by ASN"
        verbose_name_plural = "daily usage by ASN"
        constraints = [
            models.UniqueConstraint(fields=["date", "network_asn", "network_name"], name="uniq_requests_daily_asn")
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.network_asn} {self.hits}"


class RequestDailyDomain(models.Model):
    date = models.DateField()
    domain_name = BinaryCharField(max_length=128, default="")
    hits = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "requests_daily_domain"
        verbose_name = "daily usage by domain"
        verbose_name_plural = "daily usage by domain"
        constraints = [models.UniqueConstraint(fields=["date", "domain_name"], name="uniq_requests_daily_domain")]

    def __str__(self) -> str:
        return f"{self.date} {self.domain_name} {self.hits}"


class RequestDailyMember(models.Model):
    date = models.DateField()
    member_name = BinaryCharField(max_length=128, default="")
    hits = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "requests_daily_member"
        verbose_name = "daily usage by member"
        verbose_name_plural = "daily usage by member"
        constraints = [models.UniqueConstraint(fields=["date", "member_name"], name="uniq_requests_daily_member")]

    def __str__(self) -> str:
        return f"{self.date} {self.member_name} {self.hits}"
