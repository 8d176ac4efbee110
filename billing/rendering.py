"""Where billing documents go, and the one interface through which PDFs are rendered.

The statement service writes the JSON and CSV companions itself and asks the renderer
named by `settings.BILLING_PDF_RENDERER` for the PDF. The PDF documents issue provides the
real renderer; until then `NoPdfRenderer` writes nothing and says so, and statements are
still issued with `pdf_path = ''`.

File layout (DECISIONS 18, reports §2), so that listing tools keep working:
- `{WorkDir}/tmp/YYYY-MM/YYYY_MM-Monthly_Overview.pdf`
- `{WorkDir}/tmp/YYYY-MM/YYYY_MM-IBP-Service_{name}.pdf` (+ `.json`, `.csv`)
- `{WorkDir}/tmp/service_cost_YYYYMMDD.pdf`
The current revision always has the plain name. Superseded revisions are moved to
`{WorkDir}/tmp/YYYY-MM/superseded/…-rN.pdf` (their PDF stamped, its issued bytes kept), never
overwritten; drafts live in `{WorkDir}/tmp/YYYY-MM/draft/`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from billing.costs import CostSummary
    from billing.models import MonthlyOverview, Statement

logger = logging.getLogger("billing.rendering")

DEFAULT_RENDERER = "billing.pdf.renderer.XhtmlPdfRenderer"


@runtime_checkable
class BillingPdfRenderer(Protocol):
    """Renders the three billing PDFs. Each method writes the PDF at `path` (its folder exists)
    and returns True, or returns False when it writes no PDF. Raising marks the document as
    failed for this run; the run then retries it next time (the figures stay issued).

    Statements and overviews are saved records: read the figures from them (and
    `statement.lines.all()`, `line.counted_outages()`, `billing.selectors.statement_document`),
    never recompute them.
    """

    def render_statement(self, *, statement: Statement, path: Path) -> bool: ...

    def render_overview(self, *, overview: MonthlyOverview, statements: Sequence[Statement], path: Path) -> bool: ...

    def render_cost_summary(self, *, summary: CostSummary, path: Path) -> bool: ...

    def mark_superseded(self, *, record: Statement | MonthlyOverview, path: Path) -> bool:
        """Mark the kept PDF of a superseded revision as such on every page, in place, keeping
        its issued content (never rendered again; DECISIONS 16). Idempotent: a file already
        marked is left alone. Returns False when it marks nothing."""
        ...


class NoPdfRenderer:
    """The default until the PDF renderer exists: no PDF, and a log line that says so."""

    def _skip(self, document: str, path: Path) -> bool:
        logger.info("event=pdf_skipped document=%s path=%s reason=no_pdf_renderer_configured", document, path)
        return False

    def render_statement(self, *, statement: Statement, path: Path) -> bool:
        return self._skip("statement", path)

    def render_overview(self, *, overview: MonthlyOverview, statements: Sequence[Statement], path: Path) -> bool:
        return self._skip("overview", path)

    def render_cost_summary(self, *, summary: CostSummary, path: Path) -> bool:
        return self._skip("cost_summary", path)

    def mark_superseded(self, *, record: Statement | MonthlyOverview, path: Path) -> bool:
        return False


@cache
def _renderer_for(dotted_path: str) -> BillingPdfRenderer:
    renderer = import_string(dotted_path)()
    if not isinstance(renderer, BillingPdfRenderer):
        raise TypeError(f"BILLING_PDF_RENDERER {dotted_path!r} does not implement BillingPdfRenderer")
    return renderer


def pdf_renderer() -> BillingPdfRenderer:
    """The configured renderer (settings.BILLING_PDF_RENDERER), one instance per process."""
    return _renderer_for(getattr(settings, "BILLING_PDF_RENDERER", DEFAULT_RENDERER))


# --- paths ---------------------------------------------------------------------------------

# The ten characters the reference replaces with '_' in file names (reports §2).
_UNSAFE = str.maketrans(dict.fromkeys(' /\\:*?"<>|', "_"))
# File systems allow 255 bytes per name; leave room for the prefix, a revision and ".json".
_MAX_NAME_BYTES = 150


def file_write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that no reader, crash or second writer ever sees half of it.

    The data goes to a temporary file of this call's own in the same folder (pid and a
    random uuid: two runs never share one), is flushed to disk, and is renamed over `path`
    in one step. The temporary name does not grow with `path`'s, so a name near the
    file-system limit still has room for it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{os.getpid()}-{uuid.uuid4().hex}.partial"
    try:
        with temporary.open("xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def billing_dir() -> Path:
    return Path(settings.WORK_DIR) / "tmp"


def month_dir(month: date) -> Path:
    return billing_dir() / f"{month:%Y-%m}"


def superseded_dir(month: date) -> Path:
    return month_dir(month) / "superseded"


def draft_dir(month: date) -> Path:
    return month_dir(month) / "draft"


def file_name_sanitise(name: str) -> str:
    """As the reference does (ten characters → '_'), plus two guards it lacks: a name that
    would be a hidden file or too long for the file system is made safe (cut at whole
    characters, within _MAX_NAME_BYTES of UTF-8)."""
    safe = name.translate(_UNSAFE)
    safe = "".join("_" if ord(ch) < 32 else ch for ch in safe)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    safe = safe.encode()[:_MAX_NAME_BYTES].decode("utf-8", errors="ignore")
    return safe or "_"


def statement_stems(*, month: date, member_keys: Iterable[str]) -> dict[str, str]:
    """File stems per member key. Two keys that sanitise alike ("A B", "A_B") get distinct
    names deterministically: the key that sorts first keeps the plain name, the next gets `-2`…"""
    stems: dict[str, str] = {}
    taken: set[str] = set()
    for key in sorted(set(member_keys)):
        base = f"{month:%Y_%m}-IBP-Service_{file_name_sanitise(key)}"
        stem, n = base, 1
        while stem.lower() in taken:  # case-insensitive file systems exist too
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem.lower())
        stems[key] = stem
    return stems


def overview_stem(month: date) -> str:
    return f"{month:%Y_%m}-Monthly_Overview"


def cost_summary_pdf_path(day: date) -> Path:
    return billing_dir() / f"service_cost_{day:%Y%m%d}.pdf"
