"""Long cells wrap inside their column and page, and never inside a character (issue 6).

The rule is billing/pdf/linebreak.py: spaces first, then after `/ . - _ ,` and the like, or
around a CJK character, else between two characters. The PDFs are parsed back with
pdfplumber: every character of a long value lies inside its column (or page header), and
the lines read in order give the value back exactly.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pdfplumber
import pytest

from billing.models import DocumentStatus, Statement
from billing.pdf.linebreak import break_lines
from billing.services import statement_generate_month
from tests.billing.conftest import SnapshotFactory, outage_create, snapshot_applied  # noqa: F401
from tests.billing.pdf_support import pdf_settings, utc  # noqa: F401
from tests.billing.worked_example import MEMBERS_JSON, example_files

pytestmark = pytest.mark.django_db

APRIL_1 = utc(2025, 4, 1, 0, 5)
CM = 72 / 2.54
TD_PADDING = 3  # table.data td: 3 pt left and right (templates/billing/base.html)
# 75 characters, with break points; and one whose path is a single 44-character run.
LONG_URL = "wss://polkadot.dotters.network/archive-node-eu-west-1.backup_pool/rpc/v2?q=1"[:75]
UNBROKEN_URL = "wss://polkadot.dotters.network/" + "abcdefghij" * 4 + "klmn"
CJK_NAME = ("東京大阪名古屋札幌福岡" * 6)[:60]


def _issued(member_key: str) -> Statement:
    return Statement.objects.get(member_key=member_key, month="2025-03-01", status=DocumentStatus.ISSUED)


def _word(page: pdfplumber.page.Page, text: str, *, below: float = 0) -> dict:
    return next(w for w in page.extract_words() if w["text"] == text and w["top"] > below)


# --- the rule, on units one point wide --------------------------------------------------------


def _lines(text: str, width: float, *, hard: str = "\n") -> list[str]:
    units = ["" if ch == hard else ch for ch in text]
    breaks = [ch == hard for ch in text]
    return [
        "".join(units[a:b])
        for a, b, _ in break_lines(units, [1.0] * len(units), [width], line_breaks=breaks, cannot_start=frozenset("。"))
    ]


@pytest.mark.parametrize(
    ("text", "width", "lines"),
    [
        ("aaa bbb ccc", 7, ["aaa bbb", "ccc"]),  # spaces first, as xhtml2pdf does
        ("aaa   bbb", 4, ["aaa", "bbb"]),  # the spaces at a break are dropped
        ("ab/cd/ef", 5, ["ab/", "cd/ef"]),  # after a slash
        ("host.example-name_x", 8, ["host.", "example-", "name_x"]),  # after . - _
        ("abcdefghij", 4, ["abcd", "efgh", "ij"]),  # no break point: between two characters
        ("東京大阪名古屋", 3, ["東京大", "阪名古", "屋"]),  # around each CJK character
        ("Zürich 東京大阪", 9, ["Zürich 東京", "大阪"]),
        ("東京。大阪", 2, ["東", "京。", "大阪"]),  # 。 never starts a line
        ("aa\xa0bb cc", 5, ["aa\xa0bb", "cc"]),  # a no-break space does not break
        ("one\ntwo three", 20, ["one", "two three"]),  # <br>
        ("short", 80, ["short"]),
    ],
)
def test_it_breaks_lines_at_the_best_point_that_fits(text: str, width: float, lines: list[str]) -> None:
    assert _lines(text, width) == lines


def test_it_keeps_a_unit_wider_than_the_line_on_a_line_of_its_own() -> None:
    assert break_lines(["a", "", "b"], [1.0, 10.0, 1.0], [5.0]) == [(0, 1, False), (1, 2, False), (2, 3, False)]


# --- the PDFs -----------------------------------------------------------------------------------


def test_it_wraps_long_endpoints_inside_the_target_column(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
) -> None:
    """Two domain outages on polkadot.dotters.network with 75-character endpoints. Each wraps
    inside the Target column (33 % of the outage table): the first after `-`; the second after
    the `/`, and its 44-character path, with no break point and wider than the column, between
    two characters. Read back from the column alone, line by line, the endpoints are whole."""
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    assert len(LONG_URL) == len(UNBROKEN_URL) == 75
    for hour, url in ((1, LONG_URL), (5, UNBROKEN_URL)):
        start = utc(2025, 3, 3, hour)
        outage_create(
            member_name="Alpha Nodes", check_type="2", check_name="wss", domain_name="polkadot.dotters.network",
            endpoint=url, start_time=start, end_time=start + timedelta(minutes=10),
        )  # fmt: skip
    statement_generate_month(month="2025-03", now=APRIL_1)

    with pdfplumber.open(_issued("Alpha").pdf_path) as pdf:
        page = next(p for p in pdf.pages if "Target" in (p.extract_text() or ""))
        target, start_column = _word(page, "Target"), _word(page, "Start")
        level_total = _word(page, "Level", below=target["bottom"])
        left, right = target["x0"] - TD_PADDING, start_column["x0"] - TD_PADDING
        column = page.within_bbox((left, target["bottom"], right, level_total["top"]))
        lines = column.extract_text().splitlines()
        rows = [c for c in page.chars if target["bottom"] < c["top"] and c["bottom"] < level_total["top"]]
        straddling = [c["text"] for c in rows if c["x0"] < right < c["x1"] or c["x0"] < left < c["x1"]]
    assert lines == [
        "wss://polkadot.dotters.network/archive-node-",
        "eu-west-1.backup_pool/rpc/v2?q=",
        "wss",
        "wss://polkadot.dotters.network/",
        "abcdefghijabcdefghijabcdefghijabcdefghijklm",
        "n",
        "wss",
    ]
    assert "".join(lines[0:2]) == LONG_URL and "".join(lines[3:6]) == UNBROKEN_URL
    assert straddling == []  # nothing runs over the column's edges


def test_it_wraps_a_60_character_cjk_name_in_the_page_header_of_every_page(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
) -> None:
    """A member key of 60 CJK characters (180 bytes) is too long for the header's right cell:
    it gets a full-width row of its own in the header, where it wraps whole, inside the page,
    on every page. The header is not dropped (xhtml2pdf drops a header taller than its frame):
    heading, period and number are on every page too."""
    members = json.loads(json.dumps(MEMBERS_JSON))
    members[CJK_NAME] = json.loads(json.dumps(MEMBERS_JSON["Alpha"]))
    members[CJK_NAME]["Details"]["Name"] = CJK_NAME
    snapshot_applied(example_files(members=members), applied_at=utc(2025, 2, 1))
    statement_generate_month(month="2025-03", now=APRIL_1)
    statement = _issued(CJK_NAME)

    with pdfplumber.open(statement.pdf_path) as pdf:
        assert len(pdf.pages) == 2
        for page in pdf.pages:
            inside = (1.2 * CM, 0, page.width - 1.2 * CM, _word(page, "Generated")["top"])
            header = page.within_bbox((inside[0], 0, inside[2], 3.8 * CM)).extract_text().splitlines()
            number, period = "IBP-202503-0003 rev. 1", "1 March 2025 – 31 March 2025 (UTC)"
            assert header[:4] == ["IBP Service Statement", "IBP", number, period]
            assert header[4:] == [CJK_NAME[:49], CJK_NAME[49:]]
            assert all(inside[0] <= c["x0"] and c["x1"] <= inside[2] for c in page.chars)
        # The member information box wraps it too, within its cell.
        first = pdf.pages[0].extract_text()
    assert CJK_NAME in first.replace("\n", "")
