"""API benchmark: month-long requests queries over 3,000,000 usage rows, through gunicorn.

- Loads 3,000,000 raw `requests` rows (31 days × 4 DNS nodes × ~24,200 keys per node-day)
  into a database of its own (`bench_api` on the server of config/bench-mysql.json), with
  multi-row INSERTs. Keys use the real members (Details.Name), the hosts of the real
  services' RPC URLs (config/ibp-config, Apache-2.0), 60 countries and 300 ASNs.
- Builds the daily rollups (timing one day's refresh, which ingestion runs after each round).
- Baseline: the plain GROUP BY over the raw table for the full month, per endpoint.
- Starts the real gunicorn server (collator/gunicorn_conf.py) on loopback and measures
  /api/requests/country, /asn, /service and /member for the full month with a bounded
  thread-pool client on keep-alive connections: p50, p99, requests/s.

- The requests endpoints cache each body until the rollups change (metrics/api_cache.py), so
  the figures above are mostly cache hits, as they are in production where every visitor asks
  for the same month. The uncached path is measured too (`cache=cold` lines): before each of
  BENCH_API_COLD_REQUESTS requests the rollup version is bumped, as a refresh does.

Set BENCH_API_KEEP_DB=1 to keep the loaded database for the next run (it is reused, with
its rollups, when it holds the expected row count). BENCH_API_CONCURRENCY=1,4 (default)
and BENCH_API_REQUESTS=200 set the load. Prints `bench=api key=value` lines.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collator.settings")

import django

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "config" / "ibp-config"
DB_NAME = "bench_api"
FIRST_DAY = date(2025, 3, 1)
DAYS = 31
NODES = ("DNS-EU-01", "DNS-US-01", "DNS-AS-01", "DNS-SA-01")
TARGET_ROWS = 3_000_000
COUNTRIES = 60
ASNS = 300
SEED = 20250301
INSERT_BATCH = 10_000
CONCURRENCY_LEVELS = tuple(int(c) for c in os.environ.get("BENCH_API_CONCURRENCY", "1,4").split(","))
REQUESTS_PER_ENDPOINT = int(os.environ.get("BENCH_API_REQUESTS", "200"))
COLD_REQUESTS = int(os.environ.get("BENCH_API_COLD_REQUESTS", "50"))
ENDPOINTS = ("country", "asn", "service", "member")


def _emit(**values: object) -> None:
    print("bench=api " + " ".join(f"{key}={value}" for key, value in values.items()), flush=True)


def _use_database(name: str) -> None:
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


def _server_cursor():  # type: ignore[no-untyped-def]
    import MySQLdb
    from django.conf import settings

    db = settings.DATABASES["default"]
    connection = MySQLdb.connect(
        host=db["HOST"], port=int(db["PORT"]), user=db["USER"], password=db["PASSWORD"], charset="utf8mb4"
    )
    connection.autocommit(True)
    return connection


def _row_count() -> int | None:
    connection = _server_cursor()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s", [DB_NAME])
            if not cursor.fetchone()[0]:
                return None
            cursor.execute(f"SELECT COUNT(*) FROM `{DB_NAME}`.`requests`")
            return int(cursor.fetchone()[0])
    except Exception:
        return None
    finally:
        connection.close()


def _recreate_database() -> None:
    connection = _server_cursor()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{DB_NAME}`")
            cursor.execute(f"CREATE DATABASE `{DB_NAME}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    finally:
        connection.close()


def _drop_database() -> None:
    connection = _server_cursor()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{DB_NAME}`")
    finally:
        connection.close()


def _apply_config() -> tuple[list[str], list[str]]:
    """Store the bundled config as the applied snapshot; returns the usage domains."""
    from billing.sla import url_host
    from members.config_files import MEMBERS, PRICING, SERVICES, parse_network_config
    from members.models import ConfigSnapshot

    files = {
        MEMBERS: (CONFIG_DIR / "members_professional.json").read_text(),
        SERVICES: (CONFIG_DIR / "services_rpc.json").read_text(),
        PRICING: (CONFIG_DIR / "services_rpc_iaaspricing.json").read_text(),
    }
    config = parse_network_config(files)
    ConfigSnapshot.objects.all().delete()
    from django.utils import timezone

    ConfigSnapshot.objects.create(
        status=ConfigSnapshot.Status.APPLIED,
        content_hash="bench-api",
        files={key: {"source": f"bench:{key}", "sha256": "", "text": text} for key, text in files.items()},
        fetched_at=timezone.now(),
        applied_at=timezone.now(),
    )
    return sorted({url_host(url) for service in config.services.values() for url in service.rpc_urls} - {""}), [
        m.name for m in config.members.values()
    ]


def _load_rows(domains: list[str], members: list[str]) -> int:
    from django.db import connection

    rng = random.Random(SEED)
    countries = [(f"{chr(65 + i // 26)}{chr(65 + i % 26)}", f"Country {i:02d}") for i in range(COUNTRIES)]
    asns = [(f"AS{64500 + i}", f"Network {i:03d} GmbH") for i in range(ASNS)]
    per_node_day = -(-TARGET_ROWS // (DAYS * len(NODES)))
    sql = (
        "INSERT INTO `requests` (`date`, `node_id`, `domain_name`, `member_name`, `network_asn`, `network_name`, "
        "`country_code`, `country_name`, `is_ipv6`, `hits`) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    total = 0
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET unique_checks = 0")
        for day_index in range(DAYS):
            day = FIRST_DAY + timedelta(days=day_index)
            for node in NODES:
                keys: set[tuple[int, int, int, int, int]] = set()
                while len(keys) < per_node_day and total + len(keys) < TARGET_ROWS:
                    keys.add(
                        (
                            rng.randrange(len(domains)),
                            rng.randrange(len(members)),
                            rng.randrange(ASNS),
                            rng.randrange(COUNTRIES),
                            rng.randrange(2),
                        )
                    )
                batch = []
                for d, m, a, c, v in keys:
                    batch.append(
                        (day, node, domains[d], members[m], *asns[a], *countries[c], v, rng.randrange(1, 5000))
                    )
                    if len(batch) == INSERT_BATCH:
                        cursor.executemany(sql, batch)
                        batch = []
                if batch:
                    cursor.executemany(sql, batch)
                total += len(keys)
            print(f"# loaded {day} rows={total}", flush=True)
        cursor.execute("SET unique_checks = 1")
    _emit(phase="load", rows=total, seconds=f"{time.perf_counter() - started:.1f}")
    return total


def _baseline_sql() -> dict[str, str]:
    where = f"WHERE `date` BETWEEN '{FIRST_DAY}' AND '{FIRST_DAY + timedelta(days=DAYS - 1)}'"
    return {
        "country": f"SELECT `date`, `country_code`, MAX(`country_name`), SUM(`hits`) AS r FROM `requests` {where} "
        "GROUP BY `date`, `country_code` ORDER BY `date`, r DESC",
        "asn": f"SELECT `date`, `network_asn`, `network_name`, SUM(`hits`) AS r FROM `requests` {where} "
        "GROUP BY `date`, `network_asn`, `network_name` ORDER BY `date`, r DESC",
        "service": f"SELECT `date`, `domain_name`, SUM(`hits`) AS r FROM `requests` {where} AND `domain_name` <> '' "
        "GROUP BY `date`, `domain_name` ORDER BY `date`, r DESC",
        "member": f"SELECT `date`, `member_name`, SUM(`hits`) AS r FROM `requests` {where} "
        "GROUP BY `date`, `member_name` ORDER BY `date`, r DESC",
    }


def _baseline() -> dict[str, float]:
    from django.db import connection

    seconds: dict[str, float] = {}
    with connection.cursor() as cursor:
        for name, sql in _baseline_sql().items():
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                cursor.execute(sql)
                rows = cursor.fetchall()
                runs.append(time.perf_counter() - started)
            seconds[name] = statistics.median(runs)
            _emit(phase="baseline", endpoint=name, rows=len(rows), median_ms=f"{seconds[name] * 1000:.1f}")
    return seconds


def _free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]


def _start_server(tmp: Path, port: int) -> subprocess.Popen:
    from django.conf import settings

    base = json.loads(Path(os.environ["COLLATOR_CONFIG"]).read_text())
    base["Mysql"]["DB"] = DB_NAME
    base["CollatorApi"] = {"ListenAddress": "127.0.0.1", "ListenPort": str(port)}
    base.setdefault("System", {})["WorkDir"] = str(settings.WORK_DIR)
    base["System"]["LogLevel"] = "Warn"
    config_path = tmp / "bench-api.json"
    config_path.write_text(json.dumps(base))
    env = os.environ | {"COLLATOR_CONFIG": str(config_path), "API_ANON_THROTTLE_RATE": "1000000/minute"}
    env.pop("SSL_CERT", None)
    env.pop("SSL_KEY", None)
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "collator/gunicorn_conf.py",
            "--access-logfile",
            "/dev/null",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "gunicorn.log").open("wb"),
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp / "gunicorn.log").read_text()) from None
            time.sleep(0.2)


_local = threading.local()


def _get(port: int, path: str) -> tuple[float, int, int]:
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.will_close:
        connection.close()
        _local.connection = None
    return elapsed, response.status, len(body)


def _measure(port: int, endpoint: str, concurrency: int) -> dict[str, float]:
    last = FIRST_DAY + timedelta(days=DAYS - 1)
    path = f"/api/requests/{endpoint}?start={FIRST_DAY}&end={last}"
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: _get(port, path), range(concurrency * 3)))  # warm-up
        started = time.perf_counter()
        results = list(pool.map(lambda _: _get(port, path), range(REQUESTS_PER_ENDPOINT)))
        wall = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    statuses = {r[1] for r in results}
    if statuses != {200}:
        raise RuntimeError(f"{endpoint}: statuses {statuses}")
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "rps": len(results) / wall,
        "bytes": results[0][2],
    }


def _measure_cold(port: int, endpoint: str) -> dict[str, float]:
    """One client; the cache invalidated before every request, as a rollup refresh does."""
    from metrics.api_cache import usage_rollups_version_bump

    last = FIRST_DAY + timedelta(days=DAYS - 1)
    path = f"/api/requests/{endpoint}?start={FIRST_DAY}&end={last}"
    latencies = []
    for _ in range(COLD_REQUESTS):
        usage_rollups_version_bump()
        elapsed, status, _size = _get(port, path)
        if status != 200:
            raise RuntimeError(f"{endpoint}: status {status}")
        latencies.append(elapsed)
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def main() -> None:
    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from metrics.rollups import usage_rollups_rebuild, usage_rollups_refresh

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.mysql":
        print("bench=api skipped=needs-mysql (run with COLLATOR_CONFIG=config/bench-mysql.json)")
        return
    keep = os.environ.get("BENCH_API_KEEP_DB") == "1"
    existing = _row_count()
    reuse = keep and existing is not None and existing >= TARGET_ROWS * 0.99
    if not reuse:
        _recreate_database()
    _use_database(DB_NAME)
    call_command("migrate", verbosity=0)
    domains, members = _apply_config()
    if reuse:
        rows = existing or 0
        _emit(phase="load", rows=rows, reused=1)
    else:
        rows = _load_rows(domains, members)

    if not reuse:
        started = time.perf_counter()
        days = usage_rollups_rebuild()
        _emit(phase="rollups", days=days, seconds=f"{time.perf_counter() - started:.1f}")
    refresh_runs = []
    for _ in range(3):
        started = time.perf_counter()
        usage_rollups_refresh(dates=[FIRST_DAY + timedelta(days=DAYS - 1)])
        refresh_runs.append(time.perf_counter() - started)
    _emit(phase="rollups", one_day_refresh_ms=f"{statistics.median(refresh_runs) * 1000:.0f}")

    baseline = _baseline()
    from django.db import connections

    connections.close_all()

    port = _free_port(int(settings.COLLATOR.api.listen_port or "9100"))
    with tempfile.TemporaryDirectory() as folder:
        server = _start_server(Path(folder), port)
        try:
            for concurrency, endpoint in ((c, e) for c in CONCURRENCY_LEVELS for e in ENDPOINTS):
                figures = _measure(port, endpoint, concurrency)
                speedup = baseline[endpoint] * 1000 / figures["p50_ms"]
                _emit(
                    endpoint=endpoint,
                    rows=rows,
                    concurrency=concurrency,
                    requests=REQUESTS_PER_ENDPOINT,
                    response_bytes=int(figures["bytes"]),
                    p50_ms=f"{figures['p50_ms']:.1f}",
                    p99_ms=f"{figures['p99_ms']:.1f}",
                    rps=f"{figures['rps']:.0f}",
                    baseline_ms=f"{baseline[endpoint] * 1000:.0f}",
                    speedup_p50=f"{speedup:.0f}x",
                    goal_met=int(figures["p99_ms"] < 100 and speedup >= 20),
                )
            for endpoint in ENDPOINTS:
                cold = _measure_cold(port, endpoint)
                _emit(
                    endpoint=endpoint,
                    cache="cold",
                    concurrency=1,
                    requests=COLD_REQUESTS,
                    p50_ms=f"{cold['p50_ms']:.1f}",
                    p99_ms=f"{cold['p99_ms']:.1f}",
                    baseline_ms=f"{baseline[endpoint] * 1000:.0f}",
                    speedup_p50=f"{baseline[endpoint] * 1000 / cold['p50_ms']:.0f}x",
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    if not keep:
        _drop_database()


if __name__ == "__main__":
    main()
