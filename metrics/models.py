"""Usage rows, outage rows and the cluster node table.

`member_events` and `requests` keep the Go collator's table and column names so that an
operator can point this service at the Go database and keep its history. The keys differ
on purpose (DECISIONS 1, 6): see metrics/migrations/0001_initial.py for how an existing
database is upgraded.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Case, Value, When

from collator.db_fields import UnsignedAutoField


class CheckType(models.TextChoices):
    """Canonical numeric text form (DECISIONS 3); legacy rows hold the words."""

    SITE = "1", "site"
    DOMAIN = "2", "domain"
    ENDPOINT = "3", "endpoint"


# Legacy spelling → canonical form. Readers match both forms of a type.
LEGACY_CHECK_TYPES: dict[str, str] = {"site": "1", "domain": "2", "endpoint": "3"}
CHECK_TYPE_WORDS: dict[str, str] = {"1": "site", "2": "domain", "3": "endpoint"}


def check_type_forms(canonical: str) -> tuple[str, ...]:
    """Both stored forms of a check type, e.g. '3' → ('3', 'endpoint')."""
    word = CHECK_TYPE_WORDS.get(canonical)
    return (canonical, word) if word else (canonical,)


class MemberEvent(models.Model):
    """One outage of one identity (check type, check, endpoint, member, domain, IP family).

    A new outage always inserts a new row; a closed row is never reopened. At most one row
    per identity is open: `open_marker` is 1 while `end_time` is NULL and NULL once closed,
    and the unique key includes it, so closed rows never collide (data-model §3.8).
    """

    id = UnsignedAutoField(primary_key=True)
    check_type = models.CharField(max_length=24, default="")
    check_name = models.CharField(max_length=64, default="")
    endpoint = models.CharField(max_length=256, default="")
    member_name = models.CharField(max_length=128, default="")
    domain_name = models.CharField(max_length=128, default="")
    status = models.SmallIntegerField(default=0, help_text="0 = opened, 1 = closed by the collator")
    is_ipv6 = models.SmallIntegerField(default=0)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    vote_data = models.JSONField(null=True, blank=True)
    additional_data = models.JSONField(null=True, blank=True)
    open_marker = models.GeneratedField(
        expression=Case(When(end_time__isnull=True, then=Value(1)), default=None),
        output_field=models.SmallIntegerField(null=True),
        db_persist=True,
    )
    proposal_id = models.CharField(max_length=128, null=True, blank=True)
    close_proposal_id = models.CharField(max_length=128, null=True, blank=True)
    matrix_event_id = models.CharField(max_length=255, null=True, blank=True)
    # The ONLINE announcement of a closed row (edit or message id, or `fold:<summary id>`):
    # a close whose ONLINE was still waiting when the listener stopped has none, and the
    # next start's sweep announces it (metrics/alerts.py).
    matrix_online_event_id = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        db_table = "member_events"
        ordering = ["-start_time", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["check_type", "check_name", "endpoint", "member_name", "domain_name", "is_ipv6", "open_marker"],
                name="uniq_member_event_open",
            )
        ]
        indexes = [
            models.Index(fields=["start_time"], name="member_events_start_idx"),
            models.Index(fields=["member_name", "start_time"], name="member_events_member_idx"),
            # The alert sweep looks for rows closed in the last day (metrics/alerts.py).
            models.Index(fields=["end_time"], name="member_events_end_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.member_name} {self.check_type_word}/{self.check_name} {self.domain_name or self.endpoint}"

    @property
    def check_type_word(self) -> str:
        return CHECK_TYPE_WORDS.get(self.check_type, self.check_type)

    @property
    def is_open(self) -> bool:
        return self.end_time is None


class RequestStat(models.Model):
    """Day total of DNS hits for one key, as reported by one DNS node (DECISIONS 6).

    A later report for the same key replaces `hits`; readers sum over nodes.
    """

    id = UnsignedAutoField(primary_key=True)
    date = models.DateField()
    node_id = models.CharField(max_length=64, default="")
    domain_name = models.CharField(max_length=128, default="")
    member_name = models.CharField(max_length=128, default="")
    network_asn = models.CharField(max_length=32, default="")
    network_name = models.CharField(max_length=96, default="")
    country_code = models.CharField(max_length=2, default="")
    country_name = models.CharField(max_length=64, default="")
    is_ipv6 = models.SmallIntegerField(default=0)
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "requests"
        verbose_name = "usage row"
        verbose_name_plural = "usage rows"
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "date",
                    "node_id",
                    "domain_name",
                    "member_name",
                    "network_asn",
                    "network_name",
                    "country_code",
                    "country_name",
                    "is_ipv6",
                ],
                name="uniq_traffic_node",
            )
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.node_id} {self.domain_name} {self.hits}"


class ClusterNode(models.Model):
    """A node heard on `consensus.cluster` (nats-protocol §6). Liveness is from our clock."""

    node_id = models.CharField(max_length=128, unique=True)
    node_role = models.CharField(max_length=32, blank=True, default="")
    public_address = models.CharField(max_length=255, blank=True, default="")
    listen_address = models.CharField(max_length=255, blank=True, default="")
    listen_port = models.CharField(max_length=16, blank=True, default="")
    announced_last_heard = models.DateTimeField(null=True, blank=True, help_text="LastHeard as the node sent it")
    first_seen = models.DateTimeField()
    last_heard = models.DateTimeField(db_index=True, help_text="When we last heard the node, by our clock")

    class Meta:
        db_table = "cluster_nodes"
        ordering = ["node_role", "node_id"]

    def __str__(self) -> str:
        return f"{self.node_id} ({self.node_role})"


from metrics.listener_state_models import ListenerState  # noqa: E402, F401  (listener state lives there)
from metrics.matrix_models import MatrixSession, TelemetrySnapshot  # noqa: E402, F401  (models live there)
from metrics.rollup_models import (  # noqa: E402, F401  (rollups live there)
    RequestDaily,
    RequestDailyAsn,
    RequestDailyCountry,
    RequestDailyDomain,
    RequestDailyMember,
)


class _EventIdentityFields(models.Model):
    """The six columns that name an outage's check (nats-protocol §8.3 step 1)."""

    check_type = models.CharField(max_length=24, default="")
    check_name = models.CharField(max_length=64, default="")
    endpoint = models.CharField(max_length=256, default="")
    member_name = models.CharField(max_length=128, default="")
    domain_name = models.CharField(max_length=128, default="")
    is_ipv6 = models.SmallIntegerField(default=0)

    class Meta:
        abstract = True


class FinalizeApplied(models.Model):
    """Finalize decisions already applied, keyed by (proposal ID, status).

    Up to one finalize per monitor arrives for each decision (nats-protocol §7); the first
    is applied and the others are recognised here. Rows older than a day are pruned; the
    outage rows themselves make a later straggler harmless (DECISIONS 1).
    """

    proposal_id = models.CharField(max_length=128)
    proposed_status = models.BooleanField()
    outcome = models.CharField(max_length=24)
    event_id = models.PositiveIntegerField(null=True, blank=True, help_text="The member_events row it touched")
    decided_at = models.DateTimeField()
    applied_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "metrics_finalize_applied"
        verbose_name = "applied finalize decision"
        verbose_name_plural = "applied finalize decisions"
        constraints = [
            models.UniqueConstraint(fields=["proposal_id", "proposed_status"], name="uniq_finalize_applied"),
        ]

    def __str__(self) -> str:
        return f"{self.proposal_id} {'online' if self.proposed_status else 'offline'} {self.outcome}"


class PendingRecovery(_EventIdentityFields):
    """An online finalize that closed nothing, kept so that a crossed offline can still be
    recorded as the closed outage it was (DECISIONS 1)."""

    decided_at = models.DateTimeField()
    proposal_id = models.CharField(max_length=128, default="")
    remembered_at = models.DateTimeField(db_index=True, help_text="By our clock; kept for at least an hour")

    class Meta:
        db_table = "metrics_pending_recovery"
        verbose_name = "pending recovery"
        verbose_name_plural = "pending recoveries"
        indexes = [
            models.Index(
                fields=["member_name", "check_type", "check_name", "domain_name", "endpoint", "is_ipv6"],
                name="pending_recovery_identity_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.member_name} {self.check_type}/{self.check_name} online at {self.decided_at}"
