"""The listener's counters, in one place: messages by subject, rejects by reason, finalize
outcomes, rows written. Prometheus (or anything else) subscribes with `add_observer`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

logger = logging.getLogger("metrics.nats")

# (kind, label, amount): kind is "message", "reject", "finalize" or "rows".
Observer = Callable[[str, str, int], None]


def subject_label(subject: str) -> str:
    """Inbox subjects carry a timestamp; count them under one label."""
    if subject.startswith("_INBOX."):
        return "usage_reply" if ".usageReply." in subject else "inbox"
    return subject


class ListenerCounters:
    """Thread-safe counters; worker threads and the event loop both count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()
        self.finalize: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()
        self._observers: list[Observer] = []

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    def _bump(self, kind: str, counter: Counter[str], label: str, amount: int) -> None:
        if amount <= 0:
            return
        with self._lock:
            counter[label] += amount
        for observer in self._observers:
            try:
                observer(kind, label, amount)
            except Exception:  # an observer never breaks message handling
                logger.exception("event=counter_observer_failed kind=%s", kind)

    def message(self, subject: str) -> None:
        self._bump("message", self.messages, subject_label(subject), 1)

    def reject(self, reason: str, *, subject: str = "", detail: str = "", amount: int = 1) -> None:
        """Count a rejected message (or `amount` rejected records) and log one line saying why."""
        logger.warning(
            "event=message_rejected reason=%s subject=%s count=%d detail=%r",
            reason,
            subject_label(subject),
            amount,
            detail[:300],
        )
        self._bump("reject", self.rejects, reason, amount)

    def finalize_outcome(self, action: str) -> None:
        self._bump("finalize", self.finalize, action, 1)

    def rows_written(self, table: str, amount: int) -> None:
        self._bump("rows", self.rows, table, amount)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "messages": dict(self.messages),
                "rejects": dict(self.rejects),
                "finalize": dict(self.finalize),
                "rows": dict(self.rows),
            }
