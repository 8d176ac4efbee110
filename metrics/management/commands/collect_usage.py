"""Collect DNS usage now, for today and yesterday or for given dates (manual runs, backfill)."""

from __future__ import annotations

import asyncio
import calendar
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from metrics.collection import MAX_REPLY_BYTES, REPLY_TIMEOUT_SECONDS, round_days, usage_collect_days
from metrics.models import ClusterNode
from metrics.protocol import ROLE_DNS
from metrics.rollups import usage_rollups_refresh


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"--date wants YYYY-MM-DD, got {text!r}") from exc


def _month(text: str) -> list[date]:
    try:
        year, month = (int(part) for part in text.split("-"))
        days = calendar.monthrange(year, month)[1]
    except ValueError as exc:
        raise CommandError(f"--month wants YYYY-MM, got {text!r}") from exc
    return [date(year, month, day) for day in range(1, days + 1)]


class Command(BaseCommand):
    help = "Ask the DNS nodes for usage (each day its own request) and store it per node."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", action="append", default=[], help="YYYY-MM-DD (repeatable)")
        parser.add_argument("--month", default="", help="YYYY-MM: every day of that month")
        parser.add_argument(
            "--expected",
            type=int,
            default=None,
            help="Nodes to wait for (default: the live DNS nodes of the node table, else wait the whole window)",
        )
        parser.add_argument(
            "--timeout", type=float, default=REPLY_TIMEOUT_SECONDS, help="Reply window per request, seconds"
        )
        parser.add_argument("--nats-url", default="", help="Override Nats.Url")

    def handle(self, *args: Any, **options: Any) -> None:
        days = [_date(text) for text in options["date"]] + (_month(options["month"]) if options["month"] else [])
        if not days:
            days = list(round_days(datetime.now(UTC)))
        expected = options["expected"]
        if expected is None:
            live = ClusterNode.objects.filter(
                node_role=ROLE_DNS, last_heard__gte=timezone.now() - timedelta(minutes=10)
            ).count()
            expected = live or None
        nats_config = settings.COLLATOR.nats
        servers = [u.strip() for u in options["nats_url"].split(",") if u.strip()] or list(nats_config.urls)
        result = asyncio.run(
            usage_collect_days(
                servers=servers,
                node_id=nats_config.node_id,
                days=sorted(set(days)),
                expected=expected,
                user=nats_config.user,
                password=nats_config.password,
                reply_timeout=options["timeout"],
                max_reply_bytes=int(getattr(settings, "NATS_MAX_REPLY_BYTES", MAX_REPLY_BYTES)),
            )
        )
        # The API reads the daily rollups: bring the touched days up to date (the listener
        # does the same after each of its rounds).
        usage_rollups_refresh(dates=result.dates)
        for day, nodes in sorted(result.replied.items()):
            self.stdout.write(f"{day.isoformat()}: {len(nodes)} node(s) replied: {', '.join(sorted(nodes)) or '-'}")
        self.stdout.write(
            f"rows received {result.stored.rows_received}, written {result.stored.rows_written}, "
            f"unchanged {result.stored.rows_unchanged}, rejected {sum(result.rejected.values())} {dict(result.rejected)}; "
            f"dates touched (rollups refreshed): {', '.join(d.isoformat() for d in sorted(result.dates)) or '-'}"
        )
