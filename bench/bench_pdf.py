"""PDF benchmark: every document of the real config's month, through the xhtml2pdf renderer.

In a database of its own (`bench_pdf`, created and dropped here): `config_sync` of
config/ibp-config (Apache-2.0), then `statement_generate_month` for March 2025 with the real
renderer (5 statements and the overview), then each statement, the overview and the daily
cost summary rendered again several times in process. Member logos point to hosts this
machine cannot reach, so the first run records each failure once (no network wait after).
Also times a statement whose one service has 150 outages (a 7-page table).

Prints `bench=pdf key=value` lines (seconds per PDF: median and max over the rounds).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collator.settings")

import django

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "config" / "ibp-config"
DB_NAME = "bench_pdf"
MONTH = "2025-03"
SYNCED_AT = datetime(2025, 3, 1, tzinfo=UTC)
NOW = datetime(2025, 4, 1, 0, 5, tzinfo=UTC)
ROUNDS = 3


def _emit(**values: object) -> None:
    print("bench=pdf " + " ".join(f"{key}={value}" for key, value in values.items()), flush=True)


def _timed(render: Callable[[], object], rounds: int = ROUNDS) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        render()
        times.append(time.perf_counter() - started)
    return times


def _run(work: Path) -> None:
    from django.conf import settings

    from billing.models import DocumentStatus, MonthlyOverview, Statement
    from billing.pdf.renderer import XhtmlPdfRenderer
    from billing.rendering import _renderer_for
    from billing.services import cost_summary_generate, statement_generate_month
    from members.config_files import MEMBERS, PRICING, SERVICES
    from members.services import config_sync
    from metrics.models import MemberEvent

    settings.WORK_DIR = work
    settings.BILLING_PDF_RENDERER = "billing.pdf.renderer.XhtmlPdfRenderer"
    _renderer_for.cache_clear()
    urls = {key: str(CONFIG_DIR / name) for key, name in (
        (MEMBERS, "members_professional.json"), (SERVICES, "services_rpc.json"), (PRICING, "services_rpc_iaaspricing.json"),
    )}  # fmt: skip
    sync = config_sync(urls=urls, now=SYNCED_AT)
    assert sync.ok, sync.error

    started = time.perf_counter()
    result = statement_generate_month(month=MONTH, now=NOW)
    generate = time.perf_counter() - started
    pdfs = [p for p in result.files_written if p.endswith(".pdf")]
    _emit(
        step="generate_month_with_pdfs", seconds=f"{generate:.2f}", statements=len(result.statements),
        pdfs=len(pdfs), failures=len(result.pdf_failures), per_pdf=f"{generate / max(len(pdfs), 1):.3f}",
    )  # fmt: skip

    renderer = XhtmlPdfRenderer()
    statements = list(Statement.objects.filter(month=f"{MONTH}-01", status=DocumentStatus.ISSUED))
    all_times: list[float] = []
    for statement in statements:
        out = work / "bench" / f"{statement.pk}.pdf"
        times = _timed(lambda s=statement, o=out: renderer.render_statement(statement=s, path=o))
        all_times += times
        _emit(
            document="statement", member=statement.member_key.replace(" ", "_"), lines=statement.service_count,
            bytes=out.stat().st_size, median_seconds=f"{statistics.median(times):.3f}", max_seconds=f"{max(times):.3f}",
        )  # fmt: skip
    _emit(
        document="statement_all", pdfs=len(all_times), seconds_per_pdf=f"{statistics.mean(all_times):.3f}",
        median_seconds=f"{statistics.median(all_times):.3f}", max_seconds=f"{max(all_times):.3f}",
    )  # fmt: skip

    overview = MonthlyOverview.objects.get(month=f"{MONTH}-01", status=DocumentStatus.ISSUED)
    out = work / "bench" / "overview.pdf"
    times = _timed(lambda: renderer.render_overview(overview=overview, statements=statements, path=out))
    _emit(
        document="overview",
        bytes=out.stat().st_size,
        median_seconds=f"{statistics.median(times):.3f}",
        max_seconds=f"{max(times):.3f}",
    )

    times = _timed(lambda: cost_summary_generate(now=NOW))
    _emit(
        document="cost_summary",
        services=22,
        median_seconds=f"{statistics.median(times):.3f}",
        max_seconds=f"{max(times):.3f}",
    )

    # One service with 150 outages: Stake Plus' Polkadot (domain polkadot.dotters.network).
    for n in range(150):
        start = datetime(2025, 3, 1, 1, tzinfo=UTC) + timedelta(hours=4 * n)
        MemberEvent.objects.create(
            check_type="2", check_name="ssl", member_name="Stake Plus", domain_name="polkadot.dotters.network",
            endpoint="polkadot.dotters.network", status=1, is_ipv6=0, start_time=start, end_time=start + timedelta(minutes=10),
        )  # fmt: skip
    statement_generate_month(month=MONTH, member="Stake Plus", now=NOW + timedelta(days=1))
    long = Statement.objects.get(month=f"{MONTH}-01", member_key="Stake Plus", status=DocumentStatus.ISSUED)
    out = work / "bench" / "long.pdf"
    times = _timed(lambda: renderer.render_statement(statement=long, path=out))
    from pypdf import PdfReader

    _emit(
        document="statement_150_outages", pages=len(PdfReader(str(out)).pages), bytes=out.stat().st_size,
        median_seconds=f"{statistics.median(times):.3f}", max_seconds=f"{max(times):.3f}",
    )  # fmt: skip


def main() -> None:
    django.setup()
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})["NAME"] = DB_NAME
    created = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        with tempfile.TemporaryDirectory() as work:
            _run(Path(work))
    finally:
        connection.creation.destroy_test_db(created, verbosity=0)


if __name__ == "__main__":
    main()
