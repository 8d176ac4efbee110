"""The xhtml2pdf renderer of the billing PDFs (implements billing.rendering.BillingPdfRenderer).

Each method renders a Django template to HTML, xhtml2pdf turns it into a PDF in memory,
and the file is written atomically (a reader never sees half a PDF). A superseded revision
says so on every page: its kept PDF is stamped (`mark_superseded`), never rendered again.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from billing.costs import CostSummary
from billing.models import DocumentStatus, MonthlyOverview, Statement
from billing.pdf.context import cost_summary_context, overview_context, statement_context, status_banner
from billing.pdf.fonts import FONT_DIR, fonts_register
from billing.pdf.linebreak import xhtml2pdf_line_breaking
from billing.pdf.logos import ibp_logo_path, member_logo_path
from billing.pdf.stamp import pdf_is_stamped, pdf_stamp
from billing.pdf.usage import month_usage
from billing.rendering import billing_dir, file_write_atomic
from members.config_files import NetworkConfig
from members.models import ConfigSnapshot
from members.selectors import network_config_from_snapshot

logger = logging.getLogger("billing.pdf")

# xhtml2pdf (reportlab) keeps module-level state (fonts, counters); one document at a time.
_render_lock = threading.Lock()


class PdfRenderError(Exception):
    pass


def _link_callback(uri: str, rel: str | None) -> str:
    """Only local files the renderer put in the HTML itself (logos, fonts) are read."""
    path = Path(uri).resolve()
    allowed = (FONT_DIR.resolve(), billing_dir().resolve())
    if any(path.is_relative_to(root) for root in allowed) and path.is_file():
        return str(path)
    raise PdfRenderError(f"refusing to read {uri!r} into a PDF")


def pdf_bytes(*, template: str, context: dict[str, Any]) -> bytes:
    """Render a template to PDF bytes with the bundled fonts."""
    from xhtml2pdf import pisa

    fonts_register()
    html = render_to_string(template, context)
    out = io.BytesIO()
    with _render_lock, xhtml2pdf_line_breaking():
        result = pisa.CreatePDF(html, dest=out, encoding="utf-8", link_callback=_link_callback)
    if result.err:
        raise PdfRenderError(f"xhtml2pdf reported {result.err} error(s) rendering {template}")
    return out.getvalue()


def pdf_write(path: Path, data: bytes) -> None:
    file_write_atomic(path, data)


class XhtmlPdfRenderer:
    """The billing PDFs through Django templates and xhtml2pdf."""

    def __init__(self) -> None:
        self._configs: dict[tuple[int, str], NetworkConfig] = {}

    # --- inputs ---------------------------------------------------------------------------

    def _config(self, snapshot_id: int | None) -> NetworkConfig | None:
        if snapshot_id is None:
            return None
        snapshot = ConfigSnapshot.objects.filter(pk=snapshot_id).first()
        if snapshot is None:
            return None
        key = (snapshot.pk, snapshot.content_hash)
        if key not in self._configs:
            if len(self._configs) > 8:
                self._configs.clear()
            self._configs[key] = network_config_from_snapshot(snapshot=snapshot)
        return self._configs[key]

    def _usage(
        self, record: Statement | MonthlyOverview, config: NetworkConfig | None, now: datetime
    ) -> dict[str, Any]:
        return month_usage(month=record.month, config=config, now=now, freeze=record.status != DocumentStatus.DRAFT)

    # --- documents ------------------------------------------------------------------------

    def statement_pdf(self, *, statement: Statement, now: datetime | None = None) -> bytes:
        now = now or timezone.now()
        config = self._config(statement.config_snapshot_id)
        member = config.members.get(statement.member_key) if config is not None else None
        logo = member_logo_path(member_key=statement.member_key, url=member.logo) if member is not None else None
        context = statement_context(
            statement=statement,
            config=config,
            usage=self._usage(statement, config, now),
            now=now,
            member_logo=logo,
            ibp_logo=ibp_logo_path(),
        )
        return pdf_bytes(template="billing/statement.html", context=context)

    def render_statement(self, *, statement: Statement, path: Path) -> bool:
        started = time.monotonic()
        pdf_write(path, self.statement_pdf(statement=statement))
        logger.info(
            "event=pdf_written document=statement number=%s revision=%d path=%s bytes=%d seconds=%.3f",
            statement.number, statement.revision, path, path.stat().st_size, time.monotonic() - started,
        )  # fmt: skip
        return True

    def overview_pdf(
        self, *, overview: MonthlyOverview, statements: Sequence[Statement], now: datetime | None = None
    ) -> bytes:
        now = now or timezone.now()
        config = self._config(overview.config_snapshot_id)
        context = overview_context(
            overview=overview,
            statements=statements,
            usage=self._usage(overview, config, now),
            now=now,
            ibp_logo=ibp_logo_path(),
        )
        return pdf_bytes(template="billing/overview.html", context=context)

    def render_overview(self, *, overview: MonthlyOverview, statements: Sequence[Statement], path: Path) -> bool:
        started = time.monotonic()
        pdf_write(path, self.overview_pdf(overview=overview, statements=statements))
        logger.info(
            "event=pdf_written document=overview month=%s revision=%d path=%s bytes=%d seconds=%.3f",
            overview.month_label, overview.revision, path, path.stat().st_size, time.monotonic() - started,
        )  # fmt: skip
        return True

    def cost_summary_pdf(self, *, summary: CostSummary, now: datetime | None = None) -> bytes:
        context = cost_summary_context(summary=summary, now=now or timezone.now(), ibp_logo=ibp_logo_path())
        return pdf_bytes(template="billing/cost_summary.html", context=context)

    def render_cost_summary(self, *, summary: CostSummary, path: Path) -> bool:
        started = time.monotonic()
        pdf_write(path, self.cost_summary_pdf(summary=summary))
        logger.info(
            "event=pdf_written document=cost_summary day=%s path=%s bytes=%d seconds=%.3f",
            f"{summary.day:%Y-%m-%d}", path, path.stat().st_size, time.monotonic() - started,
        )  # fmt: skip
        return True

    # --- superseded revisions -------------------------------------------------------------

    def mark_superseded(self, *, record: Statement | MonthlyOverview, path: Path) -> bool:
        """Stamp the kept PDF of a superseded revision on every page, in place: its issued
        bytes are kept as they are, never rendered again (billing/pdf/stamp.py). A file that
        is already stamped is left alone, so a run that resumes after a crash can call this
        again."""
        data = path.read_bytes()
        if pdf_is_stamped(data):
            return True
        pdf_write(path, pdf_stamp(data, text=status_banner(record)))
        logger.info("event=pdf_marked_superseded path=%s revision=%d", path, record.revision)
        return True
