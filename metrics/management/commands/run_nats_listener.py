"""Run the collator's NATS node until SIGTERM (nats-protocol §1; metrics/listener.py)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from metrics.listener import NatsListener, listener_config_from_settings
from metrics.malloc_tuning import malloc_tune_for_large_messages


class Command(BaseCommand):
    help = "Join the NATS cluster as IBPCollator: outages from finalize messages, hourly usage collection."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--nats-url", default="", help="Override Nats.Url (comma-separated list)")
        parser.add_argument("--no-usage", action="store_true", help="Do not collect usage on the hour")

    def handle(self, *args: Any, **options: Any) -> None:
        overrides: dict[str, Any] = {"collect_usage_hourly": not options["no_usage"]}
        if options["nats_url"]:
            overrides["servers"] = tuple(u.strip() for u in options["nats_url"].split(",") if u.strip())
        config = listener_config_from_settings(settings, **overrides)
        malloc_tune_for_large_messages()
        asyncio.run(self._run(NatsListener(config)))

    async def _run(self, listener: NatsListener) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await listener.run_until(stop)
        self.stdout.write(f"stopped; counters {listener.counters.snapshot()}")
