"""State the Matrix alerts and the listener's telemetry keep in the database.

Both live in the DB rather than in memory or files because the listener restarts (and may
run on another host than the web server) while the values must survive: a Matrix login
creates a device on the account, and the web process renders the listener's counters.
"""

from __future__ import annotations

from django.db import models


class MatrixSession(models.Model):
    """The bot's Matrix login, reused across restarts (nats-protocol §13 N15).

    REF logs in at every start and so creates a new device each time. We keep the access
    token and, when the homeserver rejects it, log in again with the same `device_id`, so
    the account keeps one device. Keyed by homeserver and user so that a config change
    never sends another account's token to a server.
    """

    homeserver_url = models.CharField(max_length=255)
    username = models.CharField(max_length=255)
    user_id = models.CharField(max_length=255, blank=True, default="")
    device_id = models.CharField(max_length=255, blank=True, default="")
    access_token = models.CharField(max_length=1024, blank=True, default="")
    logged_in_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "matrix_session"
        constraints = [
            models.UniqueConstraint(fields=["homeserver_url", "username"], name="uniq_matrix_session_account")
        ]

    def __str__(self) -> str:
        return f"{self.username}@{self.homeserver_url} device={self.device_id}"


class TelemetrySnapshot(models.Model):
    """The latest values of one process's Prometheus samples (see metrics/telemetry.py).

    `samples` is a list of `{"family", "type", "help", "name", "labels", "value"}`.
    """

    process = models.CharField(max_length=128, unique=True)
    samples = models.JSONField(default=list)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "telemetry_snapshot"

    def __str__(self) -> str:
        return f"{self.process} @ {self.updated_at:%Y-%m-%d %H:%M:%S}"
