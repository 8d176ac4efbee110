"""The registry: members, services, providers, assignments, region prices, config snapshots.

The first four tables keep the Go collator's names and columns (data-model §3.1, §3.3–3.5)
so that an existing database can be adopted. The Go service never filled them; here they
are a cache of the config in force, written only by `config_sync` (members/services.py).
Their columns were widened where the reference types cannot hold the config's values
(a region name in a TINYINT, fractional resources in a SMALLINT).
"""

from __future__ import annotations

from django.db import models

from collator.db_fields import UnsignedAutoField


class Member(models.Model):
    id = UnsignedAutoField(primary_key=True)
    member_index = models.CharField(max_length=128, unique=True, help_text="The member key in the members file.")
    member_name = models.CharField(max_length=255, help_text="Details.Name: the name monitors write in events.")
    member_website = models.CharField(max_length=512, blank=True, default="")
    member_logo = models.CharField(max_length=512, blank=True, default="")
    membership_level = models.SmallIntegerField(default=0)
    membership_joined_ts = models.DateTimeField(null=True, blank=True)
    membership_promotion_ts = models.DateTimeField(null=True, blank=True)
    service_active = models.SmallIntegerField(default=0)
    service_ipv4 = models.CharField(max_length=64, blank=True, default="")
    service_ipv6 = models.CharField(max_length=128, blank=True, default="")
    service_monitor_url = models.CharField(max_length=256, blank=True, default="", db_column="service_monitorUrl")
    location_region = models.CharField(max_length=64, blank=True, default="")
    location_latitude = models.DecimalField(max_digits=9, decimal_places=6, default=0)
    location_longitude = models.DecimalField(max_digits=9, decimal_places=6, default=0)

    class Meta:
        db_table = "members"
        ordering = ["member_index"]

    def __str__(self) -> str:
        return self.member_name or self.member_index

    @property
    def is_active(self) -> bool:
        return self.service_active == 1


class Service(models.Model):
    id = UnsignedAutoField(primary_key=True)
    service_index = models.CharField(max_length=128, unique=True, help_text="The service key in the services file.")
    configuration_name = models.CharField(max_length=128, blank=True, default="")
    configuration_type = models.CharField(max_length=16, blank=True, default="", help_text="RPC or ETHRPC")
    configuration_active = models.SmallIntegerField(default=0)
    configuration_member_level_req = models.SmallIntegerField(default=0, db_column="configuration_memberLevelReq")
    configuration_networkname = models.CharField(max_length=128, blank=True, default="")
    configuration_stateroothash = models.CharField(max_length=384, blank=True, default="")
    configuration_displayname = models.CharField(max_length=255, blank=True, default="")
    configuration_relaynetwork = models.CharField(max_length=128, blank=True, default="")
    configuration_networktype = models.CharField(max_length=64, blank=True, default="")
    configuration_websiteurl = models.CharField(max_length=512, blank=True, default="")
    configuration_logourl = models.CharField(max_length=512, blank=True, default="")
    configuration_description = models.TextField(blank=True, default="")
    provisioned_nodes = models.IntegerField(default=0)
    provisioned_cores = models.DecimalField(max_digits=18, decimal_places=6, default=0)
    provisioned_memory = models.DecimalField(max_digits=18, decimal_places=6, default=0)
    provisioned_disk = models.DecimalField(max_digits=18, decimal_places=6, default=0)
    provisioned_bandwidth = models.DecimalField(max_digits=18, decimal_places=6, default=0)

    class Meta:
        db_table = "services"
        ordering = ["service_index"]

    def __str__(self) -> str:
        return self.service_index

    @property
    def is_active(self) -> bool:
        return self.configuration_active == 1


class ServiceProvider(models.Model):
    id = UnsignedAutoField(primary_key=True)
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="providers")
    provider_index = models.CharField(max_length=128, blank=True, default="")
    # The reference has three URL slots; they are kept filled for compatibility, and
    # rpc_urls holds the whole list, which is what outage matching reads.
    provider_rpc_url1 = models.CharField(max_length=256, null=True, blank=True, db_column="provider_rpcUrl1")
    provider_rpc_url2 = models.CharField(max_length=256, null=True, blank=True, db_column="provider_rpcUrl2")
    provider_rpc_url3 = models.CharField(max_length=256, null=True, blank=True, db_column="provider_rpcUrl3")
    rpc_urls = models.JSONField(default=list, blank=True)

    class Meta:
        db_table = "service_provider"
        ordering = ["service__service_index", "provider_index"]
        constraints = [models.UniqueConstraint(fields=["service", "provider_index"], name="uniq_service_provider")]

    def __str__(self) -> str:
        return f"{self.service.service_index} / {self.provider_index}"


class ServiceAssignment(models.Model):
    id = UnsignedAutoField(primary_key=True)
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="assignments")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="assignments")

    class Meta:
        db_table = "service_assignment"
        ordering = ["member__member_index", "service__service_index"]
        constraints = [models.UniqueConstraint(fields=["service", "member"], name="uniq_service_member")]

    def __str__(self) -> str:
        return f"{self.member.member_index} → {self.service.service_index}"


class RegionPrice(models.Model):
    """IaaS prices per region, in USD per unit per month (data-model §5.5)."""

    region = models.CharField(max_length=64, unique=True)
    cores = models.DecimalField(max_digits=20, decimal_places=10)
    memory = models.DecimalField(max_digits=20, decimal_places=10)
    disk = models.DecimalField(max_digits=20, decimal_places=10)
    bandwidth = models.DecimalField(max_digits=20, decimal_places=10)

    class Meta:
        db_table = "region_price"
        ordering = ["region"]

    def __str__(self) -> str:
        return self.region


class ConfigSnapshot(models.Model):
    """One attempt to load the config files: the raw files, their hashes, and the outcome.

    Applied snapshots are the billing history (DECISIONS 15): month M is billed with the
    last snapshot applied before M ended, parsed again from `files`.
    """

    class Status(models.TextChoices):
        APPLIED = "applied", "applied"
        FAILED = "failed", "failed"

    status = models.CharField(max_length=16, choices=Status.choices)
    content_hash = models.CharField(max_length=64, blank=True, default="", db_index=True)
    # {config key: {"source": url or path, "sha256": hex, "text": raw file text}}
    files = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField(db_index=True)
    applied_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # A failure that repeats unchanged bumps these instead of adding a row an hour.
    attempts = models.PositiveIntegerField(default=1)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # Applied snapshots: the last sync that loaded the config and found it valid and equal to
    # this one. An unchanged reload writes no new row, so without this a failure older than
    # the last good reload would still look like the latest news (/api/health).
    last_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "config_snapshot"
        ordering = ["-fetched_at", "-id"]
        get_latest_by = "fetched_at"

    def __str__(self) -> str:
        return f"#{self.pk} {self.status} {self.fetched_at:%Y-%m-%d %H:%M}"
