"""The overview's Member billings table, read back by position with pdfplumber.

The columns are the header row's cells (their dark fills): every word of the table must lie
inside one column, and a row's first line, column by column, gives its figures whole. The
table used to collapse when a cell was empty (the No member row): xhtml2pdf then sized those
columns to their padding, so headers wrapped one letter a line and figures ran over each other.
"""

from __future__ import annotations

import itertools
import json
from datetime import date
from pathlib import Path
from typing import Any

import pdfplumber
import pytest

from billing.models import MonthlyOverview, Statement
from billing.pdf.renderer import XhtmlPdfRenderer
from billing.services import statement_generate_month
from members.config_files import MEMBER_KEY_MAX_CHARS, MEMBERS
from metrics.models import RequestStat
from metrics.rollups import usage_rollups_refresh
from tests.billing.conftest import (  # noqa: F401
    SnapshotFactory,
    odd_credit_outages_create,
    outage_create,
    real_files,
    snapshot_applied,
    work_dir,
)
from tests.billing.pdf_support import pdf_settings, utc  # noqa: F401

pytestmark = pytest.mark.django_db

APRIL_1 = utc(2025, 4, 1, 0, 5)
CM = 72 / 2.54
SIDE_MARGIN = 1.2 * CM  # templates/billing/base.html
HEADER_FILL = (0.227451, 0.227451, 0.243137)  # table.data th: #3a3a3e
HEADERS = [
    "Member", "Lvl", "Requests", "Share", "Svcs", "Down", "Downtime", "Uptime", "Base", "Credit", "Billed", "SLA",
]  # fmt: skip
MARCH_5 = date(2025, 3, 5)
# March requests of the real members and of no member ("(none)"): 15,848,929 in all.
REAL_REQUESTS = {
    "Amforc": 470_152, "Dwellir": 12_345_678, "Gatotech": 98_765, "Rotko Networks": 1_001,
    "Stake Plus": 2_500_000, "Turboflakes": 333_333, "(none)": 100_000,
}  # fmt: skip


def _requests_record(hits: dict[str, int]) -> None:
    for member, count in hits.items():
        RequestStat.objects.create(
            date=MARCH_5, node_id="n1", domain_name="polkadot.dotters.network", member_name=member,
            country_code="DE", country_name="Germany", hits=count,
        )  # fmt: skip
    usage_rollups_refresh(dates=[MARCH_5])


def _columns(page: Any) -> list[tuple[float, float]]:
    """The x ranges of the header row's cells, left to right (the topmost dark fills: each cell's
    paragraph has a fill of its own, inset by the padding)."""
    fills = [r for r in page.rects if r.get("non_stroking_color") == HEADER_FILL]
    top = min(r["top"] for r in fills)
    cells = sorted((r for r in fills if abs(r["top"] - top) < 0.5), key=lambda r: r["x0"])
    return [(r["x0"], r["x1"]) for r in cells]


def _table(page: Any) -> tuple[list[tuple[float, float]], list[list[str]]]:
    """The columns and the table's lines of text, each cut into its columns. Every word of the
    table must lie inside a column."""
    columns = _columns(page)
    header_top = min(r["top"] for r in page.rects if r.get("non_stroking_color") == HEADER_FILL)
    words = page.extract_words()
    end = next((w["top"] for w in words if w["text"] == "Rows" and w["top"] > header_top), None)
    end = end or next(w["top"] for w in words if w["text"] == "Generated" and w["top"] > header_top)
    lines: dict[float, list[dict]] = {}
    for word in (w for w in words if header_top <= w["top"] < end):
        key = next((t for t in lines if abs(t - word["top"]) < 1), word["top"])
        lines.setdefault(key, []).append(word)
    table = []
    for top in sorted(lines):
        cells: list[list[str]] = [[] for _ in columns]
        for word in sorted(lines[top], key=lambda w: w["x0"]):
            inside = [i for i, (x0, x1) in enumerate(columns) if x0 <= word["x0"] and word["x1"] <= x1]
            assert inside, f"{word['text']!r} at x {word['x0']:.1f}-{word['x1']:.1f} is not inside one column"
            cells[inside[0]].append(word["text"])
        table.append([" ".join(cell) for cell in cells])
    return columns, table


def _assert_full_width(page: Any, columns: list[tuple[float, float]]) -> None:
    """Twelve columns side by side, from the left margin to the right one."""
    assert len(columns) == len(HEADERS)
    assert columns[0][0] == pytest.approx(SIDE_MARGIN, abs=1)
    assert columns[-1][1] == pytest.approx(page.width - SIDE_MARGIN, abs=1)
    assert all(a[1] == pytest.approx(b[0], abs=0.5) for a, b in itertools.pairwise(columns))


def test_it_prints_each_member_billings_column_whole_at_the_page_width(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
    ibp_config_dir: Path,
) -> None:
    """The real config in March 2025, with outages (Stake Plus 61 min and Turboflakes 14 h 11 min
    on the site, so 22 lines each; Amforc 7 min on one line; Dwellir 73 min on the three lines of
    rpc.ibp.network) and requests, 100,000 of them for no member: that row leaves Lvl, Svcs, Down
    and Downtime empty, which is what squeezed those columns. Shares are of 15,848,929, floored.
    Every header is one word on one line, and every figure sits whole in its own column."""
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))
    odd_credit_outages_create()
    outage_create(member_name="Turboflakes", start_time=utc(2025, 3, 25), end_time=utc(2025, 3, 25, 14, 11))
    _requests_record(REAL_REQUESTS)
    statement_generate_month(month="2025-03", now=APRIL_1)

    with pdfplumber.open(MonthlyOverview.objects.get(month="2025-03-01").pdf_path) as pdf:
        page = next(p for p in pdf.pages if "Member billings" in (p.extract_text() or ""))
        columns, table = _table(page)
        _assert_full_width(page, columns)
    assert table[0] == HEADERS
    figures = [line for line in table[1:] if any(line[1:])]  # not the statement numbers' lines
    assert figures == [
        ["Amforc", "6", "470,152", "2.96%", "22", "1", "7m", "99.9992%", "$13,819.99", "-$0.74", "$13,819.25", "[FAIL]"],
        ["Dwellir", "6", "12,345,678", "77.89%", "22", "3", "3h 39m", "99.9777%", "$17,069.44", "-$18.71", "$17,050.73", "[FAIL]"],
        ["Gatotech", "6", "98,765", "0.62%", "22", "0", "0m", "100.0000%", "$17,069.44", "$0.00", "$17,069.44", "[OK]"],
        ["RadiumBlock", "6", "0", "0.00%", "0", "0", "–", "–", "$0.00", "$0.00", "$0.00", "inactive"],
        ["Rotko Networks", "6", "1,001", "0.00%", "0", "0", "–", "–", "$0.00", "$0.00", "$0.00", "inactive"],
        ["Stake Plus", "6", "2,500,000", "15.77%", "22", "22", "22h 22m", "99.8633%", "$13,633.24", "-$18.63", "$13,614.61", "[FAIL]"],
        ["Turboflakes", "6", "333,333", "2.10%", "22", "22", "13d 0h 2m", "98.0936%", "$13,819.99", "-$263.44", "$13,556.55", "[FAIL]"],
        ["No member", "", "100,000", "0.63%", "", "", "", "–", "–", "–", "–", ""],
        ["TOTALS", "", "15,848,929", "", "110", "", "", "99.5867%", "$75,412.10", "-$301.52", "$75,110.58", ""],
    ]  # fmt: skip


def _long_key(number: int) -> str:
    """Member keys of the longest length allowed: words, one unbroken run, CJK in turn."""
    kind = number % 3
    if kind == 0:
        text = f"Member {number:02d} " + "Decentralised Infrastructure Services Cooperative " * 3
    elif kind == 1:
        text = f"Member{number:02d}" + "Unbrokenrunofletterswithoutanybreakpoint" * 4
    else:
        text = f"{number:02d}" + "東京大阪名古屋札幌福岡" * 13
    return text[:MEMBER_KEY_MAX_CHARS].strip()


def test_it_keeps_the_columns_at_the_page_width_for_many_members_with_the_longest_names(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    work_dir: Path,  # noqa: F811
    ibp_config_dir: Path,
) -> None:
    """30 more members, copies of Stake Plus under 128-character keys, each with 12,345,678
    requests, one with a 4 d 12 h 43 min site outage (22 lines: 99d 15h 46m), and requests for
    no member. The table runs over several pages; on each, the header is repeated whole and the
    columns still span the page. A name wraps inside the Member column and reads back whole; the
    figures beside it stay whole in theirs. The TOTALS row's 9-digit requests fit too."""
    files = real_files(ibp_config_dir)
    members = json.loads(files[MEMBERS])
    keys = [_long_key(number) for number in range(30)]
    for key in keys:
        members[key] = json.loads(json.dumps(members["Stake Plus"]))
        members[key]["Details"].update({"Name": key, "Logo": ""})
    snapshot_applied({**files, MEMBERS: json.dumps(members)}, applied_at=utc(2025, 1, 1))
    outage_create(member_name=keys[4], start_time=utc(2025, 3, 3), end_time=utc(2025, 3, 7, 12, 43))
    _requests_record({**dict.fromkeys(keys, 12_345_678), "(none)": 100_000})
    statement_generate_month(month="2025-03", now=APRIL_1)
    overview = MonthlyOverview.objects.get(month="2025-03-01")
    path = work_dir / "overview.pdf"
    path.write_bytes(
        XhtmlPdfRenderer().overview_pdf(
            overview=overview, statements=list(Statement.objects.filter(month=overview.month))
        )
    )

    member_lines: list[str] = []
    figures: list[list[str]] = []
    with pdfplumber.open(path) as pdf:
        texts = [page.extract_text() or "" for page in pdf.pages]
        first = next(i for i, text in enumerate(texts) if "Member billings" in text)
        after = next(i for i, text in enumerate(texts) if "Top 10 countries" in text)
        pages = pdf.pages[first:after]
        assert len(pages) > 2
        for page in pages:
            columns, table = _table(page)
            _assert_full_width(page, columns)
            assert table[0] == HEADERS
            member_lines += [line[0] for line in table[1:]]
            figures += [line[1:] for line in table[1:] if any(line[1:])]
    read_back = "".join("".join(member_lines).split())
    assert all("".join(key.split()) in read_back for key in keys)
    copies = [f for f in figures if f[1] == "12,345,678"]
    assert len(copies) == 30
    assert all(f[0] == "6" and f[3] == "22" and f[7] == "$13,633.24" for f in copies)
    assert ["6", "12,345,678", "3.33%", "22", "22", "99d 15h 46m", "85.3875%"] in [f[:7] for f in copies]
    # 30 × 12,345,678 + 100,000 requests; $75,412.10 + 30 × $13,633.24 base.
    assert figures[-1][1] == "370,470,340" and figures[-1][7] == "$484,409.30"
