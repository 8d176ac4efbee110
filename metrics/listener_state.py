"""Write the listener's live state to `listener_state` (metrics/listener_state_models.py).

`listener_state_save` is the write; `listener_state_flush_loop` runs it every few seconds in
the listener, from a snapshot the listener builds on its event loop, on a thread of its own
(so a slow or unreachable database never holds up NATS handling or the DB writers).
`/api/health` reads the row (collator/health.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import close_old_connections

from metrics.listener_state_models import ListenerState

logger = logging.getLogger("metrics.listener_state")


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def listener_state_save(
    *,
    node_id: str,
    connected: bool,
    last_heartbeat_sent: datetime | None,
    last_collection: Mapping[str, datetime],
    queue_depths: Mapping[str, int],
    queue_dropped: Mapping[str, int],
    durable_finalize: bool,
    started_at: datetime | None,
    now: datetime,
) -> ListenerState:
    """One UPDATE (or the first INSERT) of this node's row."""
    state, _ = ListenerState.objects.update_or_create(
        node_id=node_id,
        defaults={
            "connected": connected,
            "last_heartbeat_sent": last_heartbeat_sent,
            "last_collection": {node: _iso(at) for node, at in sorted(last_collection.items())},
            "queue_depths": dict(sorted(queue_depths.items())),
            "queue_dropped": dict(sorted(queue_dropped.items())),
            "durable_finalize": durable_finalize,
            "started_at": started_at,
            "updated_at": now,
        },
    )
    return state


async def listener_state_flush_loop(*, snapshot: Callable[[], dict[str, Any]], interval: float = 5.0) -> None:
    """Save `snapshot()` every `interval` seconds until cancelled, then once more (connected=False).

    A DB outage is logged and the next round tries again.
    """
    try:
        while True:
            await _save(snapshot())
            await asyncio.sleep(interval)
    finally:
        final = snapshot()
        final["connected"] = False
        await asyncio.shield(_save(final))


async def _save(values: dict[str, Any]) -> None:
    def save() -> None:
        close_old_connections()
        try:
            listener_state_save(**values)
        except Exception as exc:  # the DB may be the thing that is down
            logger.warning("event=listener_state_save_failed error=%r", str(exc)[:200])
        finally:
            close_old_connections()

    await asyncio.to_thread(save)
