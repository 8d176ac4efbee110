"""Run a simulated IBP network (DNS nodes and monitors) on NATS: staging, demo, benchmark."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from metrics.simulator import SimulatedNetwork, SimulatorOptions, network_shape_from_config, outage_summary


class Command(BaseCommand):
    help = "Simulate N DNS nodes and M monitors as real NATS peers, using the synced members and services."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--nats-url", default="", help="Default: the first Nats.Url")
        parser.add_argument("--dns-nodes", type=int, default=2)
        parser.add_argument("--monitors", type=int, default=3)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--records-per-node", type=int, default=300, help="Distinct usage records per node and day")
        parser.add_argument("--outages-per-hour", type=float, default=6.0)
        parser.add_argument(
            "--duplicate-share", type=float, default=0.5, help="Share of decisions finalized by several monitors"
        )
        parser.add_argument(
            "--out-of-order-share", type=float, default=0.1, help="Share of outages whose online finalize comes first"
        )
        parser.add_argument(
            "--backfill-month", default="", help="YYYY-MM: publish that month's outages (past DecidedAt) at once"
        )
        parser.add_argument("--backfill-per-day", type=float, default=2.0, help="Outages per day in the backfill month")
        parser.add_argument("--duration", type=float, default=0.0, help="Seconds to run (0: until SIGTERM)")
        parser.add_argument("--heartbeat", type=float, default=90.0, help="Join interval, seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        options_ = SimulatorOptions(
            nats_url=options["nats_url"] or settings.COLLATOR.nats.urls[0],
            dns_nodes=options["dns_nodes"],
            monitors=options["monitors"],
            seed=options["seed"],
            records_per_node=options["records_per_node"],
            outages_per_hour=options["outages_per_hour"],
            duplicate_share=options["duplicate_share"],
            out_of_order_share=options["out_of_order_share"],
            heartbeat_seconds=options["heartbeat"],
        )
        backfill = None
        if options["backfill_month"]:
            try:
                year, month = (int(part) for part in options["backfill_month"].split("-"))
                backfill = (year, month)
            except ValueError as exc:
                raise CommandError("--backfill-month wants YYYY-MM") from exc
        network = SimulatedNetwork(options_, network_shape_from_config())
        asyncio.run(self._run(network, backfill, options["backfill_per_day"], options["duration"] or None))

    async def _run(
        self, network: SimulatedNetwork, backfill: tuple[int, int] | None, per_day: float, duration: float | None
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await network.start()
        self.stdout.write(
            f"simulating {len(network.dns_nodes)} DNS node(s), {len(network.monitor_ids)} monitor(s), "
            f"{len(network.targets)} checks on {network.options.nats_url}"
        )
        if backfill is not None:
            count = await network.publish_backfill_month(*backfill, per_day=per_day)
            self.stdout.write(f"backfill {backfill[0]}-{backfill[1]:02d}: {count} outages published")
        outages = asyncio.create_task(network.run_outages(duration=duration))
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({outages, waiter}, return_when=asyncio.FIRST_COMPLETED)
        outages.cancel()
        waiter.cancel()
        await network.stop()
        self.stdout.write(f"done: {outage_summary(network.published)}")
