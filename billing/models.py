"""Statements as records (DECISIONS 16): statements, their lines, the monthly overview, and runs.

A statement is written once per (member, month) and never silently overwritten. A re-run
with unchanged inputs writes nothing; changed inputs (a late outage) write a new revision
that supersedes the old one, keeps its number, and leaves the old files in place.

The member is stored as text (key and Details.Name), not as a foreign key: a statement
must outlive the member leaving the config. The config it was computed with is a
protected foreign key, so the inputs of every issued figure stay in the database.
"""

from __future__ import annotations

from django.db import models

from members.models import ConfigSnapshot

MONEY = {"max_digits": 14, "decimal_places": 2}
# Uptime in percent, floored to 6 places as the API shows it (DECISIONS 17a).
PERCENT = {"max_digits": 9, "decimal_places": 6}


class DocumentStatus(models.TextChoices):
    ISSUED = "issued", "issued"
    SUPERSEDED = "superseded", "superseded"
    # A run with --draft for a month that has not ended: never numbered as issued, replaced by
    # the next draft of the same month, and deleted when the month is issued.
    DRAFT = "draft", "draft"


class Statement(models.Model):
    member_key = models.CharField(max_length=128, db_index=True, help_text="The member key in the members file.")
    member_name = models.CharField(max_length=255, help_text="Details.Name when the statement was computed.")
    member_level = models.SmallIntegerField(default=0)
    member_region = models.CharField(max_length=64, blank=True, default="")
    month = models.DateField(help_text="First day of the billed month (UTC).")
    number = models.CharField(max_length=32, db_index=True, help_text="IBP-YYYYMM-NNNN, the same for every revision.")
    revision = models.PositiveSmallIntegerField(help_text="1, 2, …; 0 for a draft.")
    status = models.CharField(max_length=16, choices=DocumentStatus.choices, db_index=True)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )

    base_total = models.DecimalField(**MONEY)
    credit_total = models.DecimalField(**MONEY)
    billed_total = models.DecimalField(**MONEY)
    service_count = models.PositiveSmallIntegerField(default=0)
    services_missing_sla = models.PositiveSmallIntegerField(default=0)
    meets_sla = models.BooleanField(default=True)
    # Σ over lines; the member's average uptime is (service − downtime) / service seconds.
    downtime_seconds = models.BigIntegerField(default=0)
    service_seconds = models.BigIntegerField(default=0)
    uptime_percent = models.DecimalField(**PERCENT)
    month_seconds = models.PositiveIntegerField()

    credit_policy = models.CharField(max_length=32)
    config_snapshot = models.ForeignKey(ConfigSnapshot, on_delete=models.PROTECT, related_name="statements")
    config_postdates_month = models.BooleanField(
        default=False, help_text="No config predates the month's end; the earliest one was used (DECISIONS 15)."
    )
    # Every outage that counts against at least one line, once:
    # [{id, check_type, check_name, domain_name, endpoint, is_ipv6, start_time, end_time, status,
    #   counted_start, counted_end, counted_seconds}], by counted start. Site outages count
    # against every line; lines list the ids of their own domain/endpoint outages.
    outages = models.JSONField(default=list, blank=True)
    content_hash = models.CharField(max_length=64, help_text="sha256 over the inputs and figures.")
    computed_at = models.DateTimeField(help_text="The 'now' ongoing outages were counted up to.")
    pdf_path = models.CharField(max_length=1024, blank=True, default="")
    # The PDF as issued. Once superseded, the file is these bytes unchanged plus an appended
    # update that stamps every page (billing/pdf/stamp.py), so its first bytes still hash to this.
    pdf_sha256 = models.CharField(max_length=64, blank=True, default="", help_text="sha256 of the PDF as issued.")
    json_path = models.CharField(max_length=1024, blank=True, default="")
    csv_path = models.CharField(max_length=1024, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "billing_statement"
        ordering = ["-month", "member_key", "-revision"]
        constraints = [
            models.UniqueConstraint(fields=["member_key", "month", "revision"], name="uniq_statement_revision"),
            models.UniqueConstraint(fields=["number", "revision"], name="uniq_statement_number_revision"),
        ]
        indexes = [models.Index(fields=["month", "status"], name="billing_statement_month_idx")]
        # Statements are never edited by hand; re-generating a month (admin action) issues new
        # revisions, so it is a permission of its own rather than "change".
        permissions = [("regenerate_statement", "Can re-generate a month's statements")]

    def __str__(self) -> str:
        return f"{self.number} r{self.revision} {self.member_key} {self.month:%Y-%m} ({self.status})"

    @property
    def month_label(self) -> str:
        return f"{self.month:%Y-%m}"

    def outages_by_id(self) -> dict[int, dict]:
        return {int(outage["id"]): outage for outage in self.outages}


class StatementLine(models.Model):
    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    service_key = models.CharField(max_length=128)
    service_name = models.CharField(max_length=128, blank=True, default="")
    level_required = models.SmallIntegerField(default=0)
    nodes = models.IntegerField(default=0)
    cores = models.DecimalField(max_digits=18, decimal_places=6)
    memory = models.DecimalField(max_digits=18, decimal_places=6)
    disk = models.DecimalField(max_digits=18, decimal_places=6)
    bandwidth = models.DecimalField(max_digits=18, decimal_places=6)
    price_cores = models.DecimalField(max_digits=20, decimal_places=10)
    price_memory = models.DecimalField(max_digits=20, decimal_places=10)
    price_disk = models.DecimalField(max_digits=20, decimal_places=10)
    price_bandwidth = models.DecimalField(max_digits=20, decimal_places=10)
    base_exact = models.DecimalField(max_digits=24, decimal_places=10, help_text="Before rounding to the cent.")
    base = models.DecimalField(**MONEY)
    credit = models.DecimalField(**MONEY)
    billed = models.DecimalField(**MONEY)
    downtime_seconds = models.PositiveIntegerField(default=0)
    month_seconds = models.PositiveIntegerField()
    uptime_percent = models.DecimalField(**PERCENT)
    meets_sla = models.BooleanField()
    # Ids of the domain/endpoint outages (Statement.outages) that count against this line. The
    # statement's site outages count against every line and are not repeated here, so that a
    # month with thousands of site outages does not store them once per service.
    service_outage_ids = models.JSONField(default=list, blank=True)

    class Meta:
        db_table = "billing_statement_line"
        ordering = ["statement", "position"]
        constraints = [models.UniqueConstraint(fields=["statement", "service_key"], name="uniq_statement_line")]

    def __str__(self) -> str:
        return f"{self.statement.number} {self.service_key}"

    def counted_outages(self) -> list[dict]:
        """Every outage that counts against this line (site ones included), by counted start."""
        own = {int(outage_id) for outage_id in self.service_outage_ids}
        return [
            outage for outage in self.statement.outages if outage["check_type"] == "site" or int(outage["id"]) in own
        ]

    @property
    def outage_ids(self) -> list[int]:
        """Ids of every outage that counts against this line, by counted start (then id)."""
        return [int(outage["id"]) for outage in self.counted_outages()]


class MonthlyOverview(models.Model):
    """The network figures of one month (the overview document), revisioned like statements."""

    month = models.DateField()
    revision = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=DocumentStatus.choices, db_index=True)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    base_total = models.DecimalField(**MONEY)
    credit_total = models.DecimalField(**MONEY)
    billed_total = models.DecimalField(**MONEY)
    active_members = models.PositiveSmallIntegerField(default=0)
    inactive_members = models.PositiveSmallIntegerField(default=0)
    service_lines = models.PositiveIntegerField(default=0)
    services_missing_sla = models.PositiveIntegerField(default=0)
    uptime_percent = models.DecimalField(**PERCENT)
    month_seconds = models.PositiveIntegerField()
    # [{key, name, level, region, status: billed|inactive|unpriced, statement_number, base,
    #   credit, billed, uptime_percent, meets_sla, services, services_missing_sla}], by key.
    members = models.JSONField(default=list, blank=True)
    problems = models.JSONField(default=list, blank=True)
    credit_policy = models.CharField(max_length=32)
    config_snapshot = models.ForeignKey(ConfigSnapshot, on_delete=models.PROTECT, related_name="overviews")
    config_postdates_month = models.BooleanField(default=False)
    content_hash = models.CharField(max_length=64)
    computed_at = models.DateTimeField()
    pdf_path = models.CharField(max_length=1024, blank=True, default="")
    pdf_sha256 = models.CharField(max_length=64, blank=True, default="", help_text="sha256 of the PDF as issued.")
    json_path = models.CharField(max_length=1024, blank=True, default="")
    csv_path = models.CharField(max_length=1024, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "billing_monthly_overview"
        ordering = ["-month", "-revision"]
        constraints = [models.UniqueConstraint(fields=["month", "revision"], name="uniq_overview_revision")]

    def __str__(self) -> str:
        return f"overview {self.month:%Y-%m} r{self.revision} ({self.status})"

    @property
    def month_label(self) -> str:
        return f"{self.month:%Y-%m}"


class BillingRun(models.Model):
    """One row per month: the lock that keeps two runs of a month apart, and the persisted
    "generated" marker (DECISIONS 17, B17).

    The lock is taken with a conditional UPDATE (`… WHERE lock_token = ''`, or a stale
    lock): exactly one of two racing runs updates the row. This works the same on MariaDB
    and SQLite and needs no lock server.
    """

    month = models.DateField(unique=True)
    lock_token = models.CharField(max_length=64, blank=True, default="")
    locked_at = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=255, blank=True, default="", help_text="host/pid of the holder")
    # Set when the month's statements were issued (not by drafts or dry runs).
    generated_at = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=32, blank=True, default="")
    last_summary = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True, default="")
    runs = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "billing_run"
        ordering = ["-month"]

    def __str__(self) -> str:
        return f"billing run {self.month:%Y-%m}"

    @property
    def is_locked(self) -> bool:
        return bool(self.lock_token)


class CostSummaryRun(models.Model):
    """One row per day: the lock that keeps two runs of the daily cost summary apart (the
    scheduled one and a manual `generate_cost_summary`), taken like BillingRun's."""

    day = models.DateField(unique=True)
    lock_token = models.CharField(max_length=64, blank=True, default="")
    locked_at = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=255, blank=True, default="", help_text="host/pid of the holder")
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=32, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    runs = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "billing_cost_summary_run"
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"cost summary run {self.day:%Y-%m-%d}"
