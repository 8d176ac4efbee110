"""Usage ingest benchmark: NATS → listener → MariaDB, end to end.

- A database of its own (`bench_ingest` on the server of config/bench-mysql.json), created
  and migrated, and a nats-server of its own (64 MiB max_payload: each node's reply here is
  ~26 MB, far above the 1 MiB a real node can send, so that one round moves 500,000 rows).
- 4 simulated DNS nodes run in a child process (so the listener's RSS is the bench
  process's alone), with 125,000 distinct records each for one past day, from the real
  members and services of config/ibp-config (Apache-2.0). Replies are encoded before the
  clock starts: the benchmark times the collator, not the simulator.
- Round 1: the listener requests the day and stores 500,000 new rows. Round 2: the nodes
  change the hits of 10% of their records and the round is repeated.
- Ceiling: the same 500,000 rows upserted straight into the emptied table with a plain
  `executemany` (mysqlclient's multi-row INSERT … ON DUPLICATE KEY UPDATE) in batches.

Prints `bench=ingest key=value` lines. Goals: round 1 ≥ 70% of the ceiling, round 2 ≥ 5×
faster than round 1, listener peak RSS < 250 MB.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import time
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collator.settings")

REPO = Path(__file__).resolve().parent.parent
DB_NAME = f"bench_ingest_{os.getpid()}"  # concurrent runs must not drop each other's tables
DAY = date(2025, 3, 14)
NODES = 4
RECORDS_PER_NODE = 125_000
CHANGED_SHARE = 0.10
SEED = 20250314
CEILING_BATCH = 5_000
MAX_PAYLOAD = 64 * 1024 * 1024


def _emit(**values: object) -> None:
    print("bench=ingest " + " ".join(f"{key}={value}" for key, value in values.items()), flush=True)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the simulated DNS nodes (child process, no Django) ---------------------------------


def _simulator_main(url: str, commands: Any) -> None:
    from members.config_files import parse_network_config
    from metrics.simulator import NetworkShape, SimulatedNetwork, SimulatorOptions

    config_dir = REPO / "config" / "ibp-config"
    files = {
        "MembersConfig": (config_dir / "members_professional.json").read_bytes(),
        "ServicesConfig": (config_dir / "services_rpc.json").read_bytes(),
        "IaasPricingConfig": (config_dir / "services_rpc_iaaspricing.json").read_bytes(),
    }
    config = parse_network_config(files)
    urls = sorted({u for s in config.services.values() for p in s.providers for u in p.rpc_urls})
    shape = NetworkShape(members=tuple(sorted(m.name for m in config.members.values())), urls=tuple(urls))
    options = SimulatorOptions(
        nats_url=url, dns_nodes=NODES, monitors=0, records_per_node=RECORDS_PER_NODE, seed=SEED, node_prefix="BENCH"
    )

    async def run() -> None:
        network = SimulatedNetwork(options, shape)
        for node in network.dns_nodes:
            node.prepare(DAY)
        await network.start()
        commands.send(("ready", [len(n.universe.keys) for n in network.dns_nodes]))
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, commands.recv)
            if command == "change":
                changed = sum(
                    n.change_hits(share=CHANGED_SHARE, seed=SEED + i) for i, n in enumerate(network.dns_nodes)
                )
                for node in network.dns_nodes:
                    node.prepare(DAY)
                await network.join_all()
                commands.send(("changed", changed))
            elif command == "stop":
                await network.stop()
                commands.send(("stopped", None))
                return

    asyncio.run(run())


# --- database ----------------------------------------------------------------------------


def _server_connection() -> Any:
    import MySQLdb
    from django.conf import settings

    db = settings.DATABASES["default"]
    connection = MySQLdb.connect(
        host=db["HOST"], port=int(db["PORT"]), user=db["USER"], password=db["PASSWORD"], charset="utf8mb4"
    )
    connection.autocommit(True)
    return connection


def _prepare_database() -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    connection = _server_connection()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{DB_NAME}`")
        cursor.execute(f"CREATE DATABASE `{DB_NAME}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    connection.close()
    connections.close_all()
    settings.DATABASES["default"]["NAME"] = DB_NAME
    connections["default"].settings_dict["NAME"] = DB_NAME
    call_command("migrate", verbosity=0, interactive=False)
    connections.close_all()


def _drop_database() -> None:
    from django.db import connections

    connections.close_all()
    connection = _server_connection()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{DB_NAME}`")
    connection.close()


# --- the run -----------------------------------------------------------------------------


async def _rounds(url: str, commands: Any) -> dict[str, Any]:
    from metrics.listener import ListenerConfig, NatsListener

    listener = NatsListener(
        ListenerConfig(
            node_id="COLLATOR-BENCH",
            servers=(url,),
            collect_usage_hourly=False,
            reply_timeout=120.0,
            max_reply_bytes=MAX_PAYLOAD,
        )
    )
    await listener.start()
    try:
        deadline = time.monotonic() + 30
        while listener.active_count("IBPDns") < NODES:
            if time.monotonic() > deadline:
                raise RuntimeError("the simulated DNS nodes did not join")
            await asyncio.sleep(0.05)
        rss_before = _rss_mb()
        started = time.perf_counter()
        first = await listener.collect_usage(days=(DAY,), expected=NODES)
        first_seconds = time.perf_counter() - started
        # The rollup refresh starts when a round's writes are done, in the background; it
        # is timed on its own and finishes before the next round, as hourly rounds allow.
        first_rollups = await _rollups_settled(listener)
        loop = asyncio.get_running_loop()
        commands.send("change")
        _, changed = await loop.run_in_executor(None, commands.recv)
        started = time.perf_counter()
        second = await listener.collect_usage(days=(DAY,), expected=NODES)
        second_seconds = time.perf_counter() - started
        second_rollups = await _rollups_settled(listener)
    finally:
        await listener.stop()
    return {
        "rss_before_rounds_mb": rss_before,
        "first": first,
        "first_seconds": first_seconds,
        "second": second,
        "second_seconds": second_seconds,
        "rollup_seconds": (first_rollups, second_rollups),
        "changed": changed,
        "rejects": listener.counters.snapshot()["rejects"],
    }


async def _rollups_settled(listener: Any) -> float:
    """Seconds until the listener's rollup refresh is idle (its 1 s gathering pause included)."""
    started = time.perf_counter()
    await asyncio.sleep(0)
    if not await listener.rollups.wait_idle(timeout=600):
        raise RuntimeError("the rollup refresh did not finish")
    return time.perf_counter() - started


def _ceiling() -> tuple[int, float]:
    """The same rows, upserted with a plain batched executemany into the emptied table."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT date, node_id, domain_name, member_name, network_asn, network_name, country_code, "
            "country_name, is_ipv6, hits FROM requests WHERE date = %s",
            [DAY],
        )
        rows = list(cursor.fetchall())
        cursor.execute("DELETE FROM requests WHERE date = %s", [DAY])
    raw = connection.connection  # the MySQLdb connection, so that executemany is mysqlclient's own
    statement = (
        "INSERT INTO requests (date, node_id, domain_name, member_name, network_asn, network_name, country_code, "
        "country_name, is_ipv6, hits) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON DUPLICATE KEY UPDATE hits = VALUES(hits)"
    )
    started = time.perf_counter()
    with raw.cursor() as cursor:
        for start in range(0, len(rows), CEILING_BATCH):
            cursor.executemany(statement, rows[start : start + CEILING_BATCH])
            raw.commit()
    return len(rows), time.perf_counter() - started


def main() -> None:
    import django

    django.setup()
    import logging

    from django.conf import settings

    if os.environ.get("BENCH_INGEST_VERBOSE"):
        logging.getLogger("metrics.collection").setLevel(logging.INFO)

    from tests.nats_server import NatsServer

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.mysql":
        _emit(skipped="needs_mysql")
        return
    from metrics.malloc_tuning import malloc_tune_for_large_messages

    # The listener runs in this process: tuned as `run_nats_listener` tunes its own.
    malloc_tune_for_large_messages()
    _prepare_database()
    server = NatsServer.start(max_payload=MAX_PAYLOAD, jetstream=False)
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    simulator = context.Process(target=_simulator_main, args=(server.url, child_end), daemon=True)
    try:
        simulator.start()
        _, universe = parent_end.recv()
        records = sum(universe)
        result = asyncio.run(_rounds(server.url, parent_end))
        peak_rss = _rss_mb()
        first, second = result["first"], result["second"]
        _emit(nodes=NODES, records=records, reply_mb_per_node=round(records / NODES * 210 / 1e6, 1))
        _emit(
            round=1,
            seconds=round(result["first_seconds"], 2),
            records_per_s=round(first.stored.rows_received / result["first_seconds"]),
            rows_written=first.stored.rows_written,
            rows_unchanged=first.stored.rows_unchanged,
            rollup_refresh_seconds_after=round(result["rollup_seconds"][0], 2),
        )
        _emit(
            round=2,
            seconds=round(result["second_seconds"], 2),
            records_per_s=round(second.stored.rows_received / result["second_seconds"]),
            rows_written=second.stored.rows_written,
            rows_unchanged=second.stored.rows_unchanged,
            hits_changed=result["changed"],
            rollup_refresh_seconds_after=round(result["rollup_seconds"][1], 2),
        )
        ceiling_rows, ceiling_seconds = _ceiling()
        ceiling_rate = ceiling_rows / ceiling_seconds
        first_rate = first.stored.rows_received / result["first_seconds"]
        _emit(
            ceiling_rows=ceiling_rows,
            ceiling_seconds=round(ceiling_seconds, 2),
            ceiling_records_per_s=round(ceiling_rate),
        )
        _emit(
            round1_pct_of_ceiling=round(100 * first_rate / ceiling_rate, 1),
            round2_speedup=round(result["first_seconds"] / result["second_seconds"], 1),
            listener_peak_rss_mb=round(peak_rss, 1),
            rss_before_rounds_mb=round(result["rss_before_rounds_mb"], 1),
            rejects=sum(result["rejects"].values()),
        )
        parent_end.send("stop")
        parent_end.recv()
    finally:
        simulator.join(timeout=10)
        if simulator.is_alive():
            simulator.terminate()
        server.stop()
        if not os.environ.get("BENCH_INGEST_KEEP_DB"):
            _drop_database()


if __name__ == "__main__":
    main()
