"""Monthly overview and daily cost summary PDFs, parsed back with pypdf."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from billing.models import MonthlyOverview
from billing.money import money_sum
from billing.services import cost_summary_generate, statement_generate_month
from metrics.models import RequestStat
from metrics.rollups import usage_rollups_refresh
from tests.billing.conftest import (  # noqa: F401
    SnapshotFactory,
    odd_credit_outages_create,
    outage_create,
    real_files,
    snapshot_applied,
)
from tests.billing.pdf_support import pdf_pages, pdf_settings, pdf_text, utc  # noqa: F401

pytestmark = pytest.mark.django_db

APRIL_1 = utc(2025, 4, 1, 0, 5)
MONEY = r"-?\$[0-9][0-9,]*\.\d\d"


def _amount(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", ""))


@pytest.fixture
def real_month_with_outages(snapshot_applied: SnapshotFactory, pdf_settings: Path, ibp_config_dir: Path) -> Path:  # noqa: F811
    """The real config in March 2025 with outages that give odd credits (as in test_services):
    a 61-min site outage on Stake Plus, a 7-min endpoint outage on Amforc/Kusama, a 73-min
    domain outage on Dwellir (rpc.ibp.network, shared by several services)."""
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))
    odd_credit_outages_create()
    statement_generate_month(month="2025-03", now=APRIL_1)
    return pdf_settings


def test_it_prints_a_totals_row_equal_to_the_sum_of_the_member_rows(real_month_with_outages: Path) -> None:
    """Each member row ends `Base Credit Billed [OK|FAIL|inactive]`; the TOTALS row's base,
    credit and billed equal the sums of the seven rows printed above it (RadiumBlock and Rotko
    Networks are inactive with $0.00). No outage: base = billed; here the credits are > 0."""
    overview = MonthlyOverview.objects.get(month="2025-03-01")
    path = Path(overview.pdf_path)
    assert path == real_month_with_outages / "tmp" / "2025-03" / "2025_03-Monthly_Overview.pdf"
    text = pdf_text(path)

    row = re.compile(rf"({MONEY})\s+({MONEY})\s+({MONEY})\s*\n?\s*(\[OK\]|\[FAIL\]|inactive)")
    rows = [tuple(_amount(v) for v in match[:3]) for match in row.findall(text)]
    assert len(rows) == 7
    totals = re.search(rf"TOTALS[\s\S]*?({MONEY})\s+({MONEY})\s+({MONEY})", text)
    assert totals is not None
    printed = tuple(_amount(v) for v in totals.groups())
    bases, credits, billed = zip(*rows, strict=True)
    assert printed[0] == money_sum(bases) == overview.base_total == Decimal("75412.10")
    assert -printed[1] == -money_sum(credits) == overview.credit_total > 0
    assert printed[2] == money_sum(billed) == overview.billed_total
    assert text.count("[FAIL]") == 3 and text.count("inactive") >= 2


def test_it_shows_cards_health_and_the_downtime_calendar(real_month_with_outages: Path) -> None:
    """Three outages, each on its own day (3, 9, 20 March): the calendar notes one outage on
    each; Stake Plus' 22 lines + Amforc/Kusama + Dwellir's lines on rpc.ibp.network have
    downtime. The cards print the overview record's figures."""
    overview = MonthlyOverview.objects.get(month="2025-03-01")
    pages = pdf_pages(overview.pdf_path)
    first = pages[0]
    assert "Active members" in first and "$75,412.10" in first
    assert f"-${overview.credit_total:,.2f}" in first
    assert "3 outages in the month" in first
    assert first.count("1 outage\n") == 3 or first.count("1 outage") == 3
    assert f"SLA misses {overview.services_missing_sla}" in first
    reader = PdfReader(overview.pdf_path)
    assert reader.metadata.title == "IBP Monthly Overview – March 2025"
    assert reader.metadata.author == "IBP Collator"
    assert "revision 1" in reader.metadata.subject
    # Landscape A4: 842 × 595 pt.
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (842, 595)


def test_it_lists_the_top_countries_with_their_change_against_earlier_months(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
    ibp_config_dir: Path,
) -> None:
    """Requests (through the real rollups): March DE 1,000 and US 500; February DE 800 (US none);
    December DE 2,000; September nothing at all. DE: +25.0% vs 1 month (1000/800), -50.0% vs 3
    (1000/2000), n/a vs 6 (no usage that month). US: new vs 1 month, vs 3 months (-100%? no:
    0 then, so new). Shares of 1,500: DE 66.66% (floored), US 33.33%."""
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))
    rows = [
        (date(2025, 3, 5), "DE", "Germany", 1000), (date(2025, 3, 6), "US", "United States", 500),
        (date(2025, 2, 5), "DE", "Germany", 800), (date(2024, 12, 5), "DE", "Germany", 2000),
    ]  # fmt: skip
    for day, code, name, hits in rows:
        RequestStat.objects.create(
            date=day, node_id="n1", domain_name="polkadot.dotters.network", member_name="Stake Plus",
            country_code=code, country_name=name, hits=hits,
        )  # fmt: skip
    usage_rollups_refresh(dates=[r[0] for r in rows])
    statement_generate_month(month="2025-03", now=APRIL_1)

    text = pdf_text(MonthlyOverview.objects.get(month="2025-03-01").pdf_path)
    assert re.search(r"1\s+Germany \(DE\)\s+1,000\s+66\.66%\s+\+25\.0%\s+-50\.0%\s+n/a", text)
    assert re.search(r"2\s+United States \(US\)\s+500\s+33\.33%\s+new\s+new\s+n/a", text)
    assert re.search(r"1\s+Polkadot\s+1,500\s+100\.00%", text)
    assert "Stake Plus" in text and "1,500" in text


def test_it_adds_up_the_requests_column_with_a_row_for_answers_that_pointed_to_no_member(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
    ibp_config_dir: Path,
) -> None:
    """March: Stake Plus 1,200, Amforc 300, `(none)` 400 (the DNS answer pointed to no member)
    and `Nobody Known` 100 (not in the config) = 2,000. The member rows print 1,200 (60.00%)
    and 300 (15.00%), the "No member" row 400 + 100 = 500 (25.00%), and TOTALS 2,000, which
    is also the DNS requests card: the column adds up, and shares are of the month's total."""
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))
    for member, hits in (("Stake Plus", 1200), ("Amforc", 300), ("(none)", 400), ("Nobody Known", 100)):
        RequestStat.objects.create(
            date=date(2025, 3, 5), node_id="n1", domain_name="polkadot.dotters.network", member_name=member,
            country_code="DE", country_name="Germany", hits=hits,
        )  # fmt: skip
    usage_rollups_refresh(dates=[date(2025, 3, 5)])
    statement_generate_month(month="2025-03", now=APRIL_1)

    flat = " ".join(pdf_text(MonthlyOverview.objects.get(month="2025-03-01").pdf_path).split())
    assert re.search(r"Stake Plus IBP-202503-\d{4} \d+ 1,200 60\.00%", flat)
    assert re.search(r"Amforc IBP-202503-\d{4} \d+ 300 15\.00%", flat)
    assert "No member answers that pointed to no member 500 25.00%" in flat
    assert "TOTALS 2,000 " in flat
    assert "DNS requests 2,000 " in flat


def test_it_renders_the_daily_cost_summary_with_totals_of_its_rows(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
    ibp_config_dir: Path,
) -> None:
    """Real config: 5 active members × 22 services. Polkadot's rows: Amforc 3,512.21, Dwellir
    4,469.21, Gatotech 4,469.21, Stake Plus 3,457.21, Turboflakes 3,512.21 → 19,420.05. Each
    service total equals the sum of its rows; the grand total $75,412.10 = the member totals."""
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))
    result = cost_summary_generate(now=utc(2025, 4, 2, 0, 5))
    path = Path(result.pdf_path)
    assert path == pdf_settings / "tmp" / "service_cost_20250402.pdf"
    text = pdf_text(path)

    blocks = re.findall(r"Cost \(USD\)\n([\s\S]*?)Service total\s*\n?\s*(" + MONEY + ")", text)
    assert len(blocks) == 22
    for body, total in blocks:
        assert money_sum(_amount(v) for v in re.findall(MONEY, body)) == _amount(total)
    assert "$19,420.05" in text
    grand = re.search(r"Grand total\s*\n?\s*(" + MONEY + ")", text)
    assert grand is not None and _amount(grand.group(1)) == Decimal("75412.10")
    assert money_sum(_amount(t) for _, t in blocks) == Decimal("75412.10")
    assert "RadiumBlock" in text and "Inactive members" in text
    assert PdfReader(str(path)).metadata.title == "IBP Network – Cost by Service, 2025-04-02"
