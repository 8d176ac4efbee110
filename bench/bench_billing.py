"""Billing benchmark: the SLA for a month of 12 members × 34 services and 100,000 outage rows,
then `generate_invoices` for that month without PDFs.

Runs against a database of its own (`bench_billing`, created and dropped here), with the real
config snapshot of 2026-01-18 (config/ibp-config/2026-01-18, Apache-2.0). The generate step
runs in a child process so that its peak RSS is its own, not the data loader's.

Prints `bench=billing key=value` lines.
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collator.settings")

import django

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "config" / "ibp-config" / "2026-01-18"
DB_NAME = "bench_billing"
ROWS = 100_000
MONTH = "2026-01"
MONTH_START = datetime(2026, 1, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 2, 1, tzinfo=UTC)
NOW = datetime(2026, 2, 1, 0, 5, tzinfo=UTC)
SEED = 20260118


def _emit(**values: object) -> None:
    print("bench=billing " + " ".join(f"{key}={value}" for key, value in values.items()), flush=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _use_database(name: str) -> None:
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


def _load_data() -> None:
    from billing.sla import url_host
    from members.config_files import MEMBERS, PRICING, SERVICES, parse_network_config
    from members.models import ConfigSnapshot
    from metrics.models import MemberEvent

    files = {
        MEMBERS: (CONFIG_DIR / "members_professional.json").read_text(),
        SERVICES: (CONFIG_DIR / "services_rpc.json").read_text(),
        PRICING: (CONFIG_DIR / "services_rpc_iaaspricing.json").read_text(),
    }
    config = parse_network_config(files)
    ConfigSnapshot.objects.create(
        status=ConfigSnapshot.Status.APPLIED,
        content_hash="bench-2026-01-18",
        files={key: {"source": f"bench:{key}", "sha256": "", "text": text} for key, text in files.items()},
        fetched_at=MONTH_START,
        applied_at=MONTH_START,
    )
    rng = random.Random(SEED)
    members = [config.members[key] for key in sorted(config.members)]
    urls = {m.key: [u for s in config.member_services(m) for u in s.rpc_urls] for m in members}
    span = int((MONTH_END - MONTH_START).total_seconds())
    batch: list[MemberEvent] = []
    for index in range(ROWS):
        member = rng.choice(members)
        start = MONTH_START + timedelta(seconds=rng.randrange(-3600, span))
        ongoing = rng.random() < 0.02
        end = None if ongoing else start + timedelta(seconds=int(rng.expovariate(1 / 600)) + 1)
        kind = rng.random()
        url = rng.choice(urls[member.key])
        if kind < 0.2:
            check_type, domain, endpoint = rng.choice(["1", "site"]), "", ""
        elif kind < 0.6:
            check_type, domain, endpoint = rng.choice(["2", "domain"]), url_host(url), ""
        else:
            check_type, domain, endpoint = rng.choice(["3", "endpoint"]), url_host(url), url
        batch.append(
            MemberEvent(
                check_type=check_type,
                # Open rows must differ in identity (one open row per identity).
                check_name=f"bench-{index}" if ongoing else "bench",
                endpoint=endpoint,
                member_name=member.name,
                domain_name=domain,
                status=0 if ongoing else rng.choice([0, 1]),
                is_ipv6=rng.choice([0, 1]),
                start_time=start,
                end_time=end,
            )
        )
        if len(batch) == 5000:
            MemberEvent.objects.bulk_create(batch)
            batch = []
    if batch:
        MemberEvent.objects.bulk_create(batch)


def _sla_once() -> tuple[float, float, int, int]:
    from billing.bills import month_bills_compute
    from billing.selectors import billing_policy, member_event_names_for, outage_rows_for_month
    from billing.sla import parse_month
    from members.selectors import config_snapshot_in_force

    window = parse_month(MONTH)
    in_force = config_snapshot_in_force(at=window.end)
    policy, tiers = billing_policy()
    started = time.perf_counter()
    rows = outage_rows_for_month(window=window, now=NOW, member_names=member_event_names_for(in_force.config))
    loaded = time.perf_counter()
    bills = month_bills_compute(config=in_force.config, window=window, rows=rows, now=NOW, policy=policy, tiers=tiers)
    computed = time.perf_counter()
    lines = sum(len(b.lines) for b in bills.members)
    return loaded - started, computed - loaded, len(rows), lines


def generate_child() -> None:
    """Entry point of the child process: one generate run, then an unchanged re-run."""
    django.setup()
    _use_database(DB_NAME)
    from django.conf import settings

    settings.BILLING_PDF_RENDERER = "billing.rendering.NoPdfRenderer"
    import tempfile

    from billing.services import statement_generate_month

    with tempfile.TemporaryDirectory() as work:
        settings.WORK_DIR = Path(work)
        started = time.perf_counter()
        result = statement_generate_month(month=MONTH, now=NOW)
        first = time.perf_counter() - started
        started = time.perf_counter()
        again = statement_generate_month(month=MONTH, now=NOW)
        second = time.perf_counter() - started
    _emit(
        step="generate_invoices",
        seconds=f"{first:.3f}",
        statements=len(result.statements),
        billed=result.billed,
        credit=result.credit,
        peak_rss_mb=f"{_peak_rss_mb():.1f}",
    )
    _emit(step="generate_invoices_unchanged", seconds=f"{second:.3f}", changed=again.changed)


def main() -> None:
    django.setup()
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})["NAME"] = DB_NAME
    created = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        started = time.perf_counter()
        _load_data()
        _emit(step="load", rows=ROWS, seconds=f"{time.perf_counter() - started:.1f}", database=connection.vendor)
        best = None
        for _ in range(3):
            load_seconds, sla_seconds, rows, lines = _sla_once()
            best = sla_seconds if best is None else min(best, sla_seconds)
        _emit(
            step="sla",
            members=12,
            services=34,
            rows_in_month=rows,
            lines=lines,
            query_seconds=f"{load_seconds:.3f}",
            sla_seconds=f"{best:.3f}",
            goal_seconds=1,
        )
        connection.close()
        child = subprocess.run(
            [sys.executable, "-c", "import bench.bench_billing as b; b.generate_child()"],
            cwd=REPO,
            env=os.environ.copy(),
            check=False,
            capture_output=True,
            text=True,
        )
        sys.stdout.write(child.stdout)
        if child.returncode != 0:
            sys.stderr.write(child.stderr)
            _emit(step="generate_invoices", error=f"exit_{child.returncode}")
    finally:
        connection.creation.destroy_test_db(created, verbosity=0)


if __name__ == "__main__":
    main()
