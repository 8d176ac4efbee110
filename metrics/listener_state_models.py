"""The NATS listener's live state, kept in the database for `/api/health` (issue 4).

The listener and the web server are separate processes (possibly on separate hosts) that
always share the database, so the listener writes what an operator needs to see here every
few seconds: whether it is connected to NATS, when it last announced itself, when each DNS
node's usage was last stored, how much DB work it is holding back while the database is
unreachable, and whether finalizes come from the durable JetStream consumer.
"""

from __future__ import annotations

from django.db import models


class ListenerState(models.Model):
    """One row per listener process, keyed by its NodeID."""

    node_id = models.CharField(max_length=64, unique=True)
    connected = models.BooleanField(default=False)
    last_heartbeat_sent = models.DateTimeField(null=True, blank=True)
    # {"DNS-EU-1": "2025-03-01T10:00:02Z", ...}: when each node's usage was last stored.
    last_collection = models.JSONField(default=dict, blank=True)
    # {"finalize": 0, "usage": 0, "rollups": 0}: items held for a DB that is unreachable.
    queue_depths = models.JSONField(default=dict, blank=True)
    # {"finalize": 0, "usage": 0}: items refused because a queue was full (since start).
    queue_dropped = models.JSONField(default=dict, blank=True)
    durable_finalize = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "listener_state"

    def __str__(self) -> str:
        return f"{self.node_id} connected={self.connected} updated={self.updated_at:%Y-%m-%d %H:%M:%S}"
