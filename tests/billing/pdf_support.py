"""Helpers of the PDF tests: the real renderer switched on, PDFs parsed back to text."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

RENDERER = "billing.pdf.renderer.XhtmlPdfRenderer"
MONEY_RE = re.compile(r"-?\$[0-9][0-9,]*\.[0-9]{2}")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def pdf_settings(settings: Any, tmp_path: Path) -> Path:
    """The real renderer, files under a temporary WorkDir, logos from local test servers."""
    from billing.rendering import _renderer_for

    settings.WORK_DIR = tmp_path
    settings.BILLING_PDF_RENDERER = RENDERER
    settings.BILLING_LOGO_ALLOW_PRIVATE_HOSTS = True
    _renderer_for.cache_clear()
    return tmp_path


def pdf_pages(path: Path | str) -> list[str]:
    return [page.extract_text() or "" for page in PdfReader(str(path)).pages]


def pdf_text(path: Path | str) -> str:
    return "\n".join(pdf_pages(path))


def money_values(text: str) -> list[Decimal]:
    """Every `$1,234.56` / `-$9.29` in a text, as Decimal."""
    return [Decimal(m.replace("$", "").replace(",", "")) for m in MONEY_RE.findall(text)]
