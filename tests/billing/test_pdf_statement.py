"""Member statement PDFs, rendered through the real renderer and parsed back with pypdf."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from billing.models import DocumentStatus, Statement
from billing.money import money_sum
from billing.rendering import statement_stems
from billing.services import statement_generate_month
from metrics.models import RequestStat
from metrics.rollups import usage_rollups_refresh
from tests.billing.conftest import SnapshotFactory, outage_create, real_files, snapshot_applied  # noqa: F401
from tests.billing.pdf_support import money_values, pdf_pages, pdf_settings, pdf_text, utc  # noqa: F401
from tests.billing.worked_example import MEMBERS_JSON, example_files

pytestmark = pytest.mark.django_db

APRIL_1 = utc(2025, 4, 1, 0, 5)


def issued(member_key: str, month: str = "2025-03") -> Statement:
    return Statement.objects.get(member_key=member_key, month=f"{month}-01", status=DocumentStatus.ISSUED)


def _members_with(*keys: str, template: str = "Alpha") -> dict[str, Any]:
    """The worked example's members, plus members copied from `template` under new keys
    (Details.Name = the key)."""
    members = json.loads(json.dumps(MEMBERS_JSON))
    for key in keys:
        copy = json.loads(json.dumps(MEMBERS_JSON[template]))
        copy["Details"]["Name"] = key
        members[key] = copy
    return members


def test_it_renders_the_stake_plus_statement_of_the_real_config(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
    ibp_config_dir: Path,
) -> None:
    """Real config, March 2025, no outages. Stake Plus (North America) has 22 lines whose rounded
    bases add up to $13,633.24 (DECISIONS 14): Level 3 = 4,628.82 + 660.56 + 3,457.21 = 8,746.59;
    Level 5 (18 lines) = 4,171.63; Level 6 = Hydration 715.02; 8,746.59 + 4,171.63 + 715.02 =
    13,633.24. No outage, so every credit is $0.00 and billed = base."""
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))
    statement_generate_month(month="2025-03", now=APRIL_1)
    stake = issued("Stake Plus")

    path = Path(stake.pdf_path)
    assert path == pdf_settings / "tmp" / "2025-03" / "2025_03-IBP-Service_Stake_Plus.pdf"
    text = pdf_text(path)
    assert "Stake Plus" in text and stake.number in text and stake.number.startswith("IBP-202503-")
    assert "$13,633.24" in text and "$13,633.19" not in text
    # 22 service cards, each with one "Resources: n × (…)" line and one [OK] line.
    assert len(re.findall(r"Resources: \d+ ×", text)) == 22
    assert text.count("[OK] meets the SLA") == 22 and "[FAIL]" not in text
    for name, base in (("Polkadot", "$3,457.21"), ("Kusama", "$4,628.82"), ("Hydration", "$715.02")):
        assert name in text and base in text
    assert "Level 3 total (3 services)" in text and "$8,746.59" in text
    assert "Level 5 total (18 services)" in text and "$4,171.63" in text
    # No credits: every credit printed is $0.00, and no negative amount appears at all.
    assert all(value >= 0 for value in money_values(text))
    assert text.count("Credit $0.00") == 22 + 3 and "-$" not in text
    assert "100.0000%" in text  # 4 decimals, floored
    # Member information from the config snapshot the statement points to.
    assert "North America" in text and "https://stake.plus" in text
    metadata = PdfReader(path).metadata
    assert (metadata.title, metadata.author, metadata.subject) == (
        f"IBP Service Statement {stake.number} – Stake Plus",
        "IBP Collator",
        f"Statement {stake.number} revision 1 for March 2025",
    )


def test_it_prints_totals_that_equal_the_sums_of_the_printed_lines(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
    ibp_config_dir: Path,
) -> None:
    """A 61-minute site outage on Stake Plus (every line misses the SLA, 3660 s of 2,678,400)
    gives each of the 22 lines a credit. The per-line `Billed $x` figures printed must add up to
    the printed total due, and the per-line `Credit -$x` to the printed credits."""
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))
    outage_create(member_name="Stake Plus", start_time=utc(2025, 3, 3, 10), end_time=utc(2025, 3, 3, 11, 1))
    statement_generate_month(month="2025-03", now=APRIL_1)
    stake = issued("Stake Plus")
    text = pdf_text(stake.pdf_path)

    billed = [Decimal(v.replace(",", "")) for v in re.findall(r"Billed \$([0-9,]+\.\d\d)", text)]
    credits = [Decimal(v.replace(",", "")) for v in re.findall(r"Credit -\$([0-9,]+\.\d\d)", text)]
    # In print order: Level 3 (3 lines, total), Level 5 (18 lines, total), Level 6 (1 line, total).
    assert len(billed) == len(credits) == 22 + 3
    level_totals = []
    for figures in (billed, credits):
        groups = (figures[0:3], figures[3]), (figures[4:22], figures[22]), (figures[23:24], figures[24])
        for lines, total in groups:
            assert money_sum(lines) == total
        level_totals.append(money_sum(total for _, total in groups))
    assert level_totals == [stake.billed_total, stake.credit_total]
    assert stake.credit_total > 0
    assert f"${stake.billed_total:,.2f}" in text and f"-${stake.credit_total:,.2f}" in text
    assert text.count("[FAIL] below the SLA") == 22
    # Uptime (2,678,400 − 3,660) / 2,678,400 = 99.863351…% → floored to 4 places: 99.8633%.
    assert "99.8633%" in text


def test_it_paginates_150_outages_with_the_header_on_every_page(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
) -> None:
    """150 ten-minute domain outages on polkadot.dotters.network (Alpha's Polkadot line only),
    one every 4 hours from 1 March. The table runs over several pages; each page that carries
    rows repeats the header, and rows 1…150 are all there, once each."""
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    for n in range(150):
        start = utc(2025, 3, 1, 1) + timedelta(hours=4 * n)
        outage_create(
            member_name="Alpha Nodes", check_type="2", check_name="ssl", domain_name="polkadot.dotters.network",
            endpoint="polkadot.dotters.network", start_time=start, end_time=start + timedelta(minutes=10),
        )  # fmt: skip
    statement_generate_month(month="2025-03", now=APRIL_1)
    alpha = issued("Alpha")
    assert len(alpha.lines.get(service_key="Polkadot").outage_ids) == 150

    pages = pdf_pages(alpha.pdf_path)
    row = re.compile(r"^\s*(\d+)\s*\ndomain\s*\npolkadot\.dotters\.network", re.MULTILINE)
    numbers: list[int] = []
    pages_with_rows = 0
    for page in pages:
        found = [int(n) for n in row.findall(page)]
        if found:
            pages_with_rows += 1
            assert "Start (counted)" in page and "End (counted)" in page and "Duration" in page
        numbers.extend(found)
    assert numbers == list(range(1, 151))
    assert pages_with_rows >= 3
    # Each row: 10 minutes; the line's downtime 150 × 600 s = 90,000 s = 1d 1h 0m.
    assert "".join(pages).count(" 10m") == 150 and "downtime 1d 1h 0m in 150 outages" in "".join(pages)
    # Every page has the page header (title, period, number) and its footer.
    for number, page in enumerate(pages, start=1):
        lines = page.splitlines()
        assert "IBP Service Statement" in lines and "1 March 2025 – 31 March 2025 (UTC)" in lines
        assert f"{alpha.number} rev. 1" in lines and f"Page {number} of {len(pages)}" in page


def test_it_renders_a_unicode_member_name_as_text_with_a_safe_file_name(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
) -> None:
    """`Zürich Nodes 東京 Łódź`: spaces become `_` (reports §2), the letters stay; the PDF's text
    layer has the name exactly (DejaVu for Latin/Polish, the CJK fallback font for 東京)."""
    name = "Zürich Nodes 東京 Łódź"
    snapshot_applied(example_files(members=_members_with(name, "Москва")), applied_at=utc(2025, 2, 1))
    statement_generate_month(month="2025-03", now=APRIL_1)

    statement = issued(name)
    path = Path(statement.pdf_path)
    assert path.name == "2025_03-IBP-Service_Zürich_Nodes_東京_Łódź.pdf"
    text = pdf_text(path)
    assert name in text
    assert "Москва" in pdf_text(issued("Москва").pdf_path)


def test_it_keeps_file_names_within_limits_and_apart(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
) -> None:
    """`A B` and `A_B` sanitise alike: the key that sorts first (`A B`, space < `_`) keeps the
    plain name, the other gets `-2`; each file holds its own member. A 120-character CJK key is
    360 bytes of UTF-8, over the 255-byte limit: its name is cut to whole characters."""
    long_key = "東" * 120
    snapshot_applied(example_files(members=_members_with("A B", "A_B", long_key)), applied_at=utc(2025, 2, 1))
    result = statement_generate_month(month="2025-03", now=APRIL_1)
    assert result.pdf_failures == ()

    first, second = Path(issued("A B").pdf_path), Path(issued("A_B").pdf_path)
    assert (first.name, second.name) == ("2025_03-IBP-Service_A_B.pdf", "2025_03-IBP-Service_A_B-2.pdf")
    assert issued("A B").number in pdf_text(first) and issued("A_B").number in pdf_text(second)
    assert issued("A B").number != issued("A_B").number

    long_path = Path(issued(long_key).pdf_path)
    assert long_path.exists() and len(long_path.name.encode()) <= 255
    assert long_path.name.startswith("2025_03-IBP-Service_東東") and long_path.name.endswith(".pdf")
    long_path.name.encode().decode("utf-8")  # never cut inside a character


def test_it_names_a_300_character_member_within_the_file_system_limit() -> None:
    """A 300-character key (more than the Statement column holds, so checked on the naming
    function): 300 × 'ł' is 600 bytes; the stem is cut to whole characters, ≤ 255 bytes with
    `.json`/`.pdf`, and two such keys that differ only past the cut still get two names."""
    month = utc(2025, 3, 1).date()
    a, b = "ł" * 299 + "a", "ł" * 299 + "b"
    stems = statement_stems(month=month, member_keys=[a, b])
    for stem in stems.values():
        assert len((stem + ".json").encode()) <= 255
        stem.encode().decode("utf-8")
    assert stems[a] != stems[b] and stems[b] == stems[a] + "-2"


def test_it_marks_a_superseded_revision_on_every_page_and_keeps_it(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
) -> None:
    """A late outage on Alpha makes revision 2. Revision 1's PDF is kept, not rendered again:
    the kept file (superseded/…-r1.pdf) starts with the issued bytes, unchanged (their sha256
    is the one stored when it was issued), followed by an update that stamps each page. Page
    by page, its text is the original text plus the stamp. Revision 2 has no stamp."""
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    statement_generate_month(month="2025-03", now=APRIL_1)
    first = issued("Alpha")
    issued_bytes = Path(first.pdf_path).read_bytes()
    issued_pages = pdf_pages(first.pdf_path)
    assert first.pdf_sha256 == hashlib.sha256(issued_bytes).hexdigest()
    outage_create(member_name="Alpha Nodes", start_time=utc(2025, 3, 5, 10), end_time=utc(2025, 3, 5, 12))
    statement_generate_month(month="2025-03", now=APRIL_1 + timedelta(days=2))

    current = issued("Alpha")
    old = Statement.objects.get(member_key="Alpha", revision=1)
    assert current.revision == 2 and old.status == DocumentStatus.SUPERSEDED
    assert Path(old.pdf_path) == pdf_settings / "tmp" / "2025-03" / "superseded" / "2025_03-IBP-Service_Alpha-r1.pdf"
    kept = Path(old.pdf_path).read_bytes()
    assert len(kept) > len(issued_bytes) and kept[: len(issued_bytes)] == issued_bytes
    assert hashlib.sha256(kept[: len(issued_bytes)]).hexdigest() == old.pdf_sha256 == first.pdf_sha256
    stamp = f"SUPERSEDED by revision 2 of {current.created_at:%Y-%m-%d}: this revision is no longer valid"
    assert pdf_pages(old.pdf_path) == [page + stamp for page in issued_pages]
    assert PdfReader(old.pdf_path).metadata["/IBPSuperseded"] == stamp
    new_text = pdf_text(current.pdf_path)
    assert "SUPERSEDED" not in new_text and "(replaces\nrevision 1)" in new_text
    assert current.pdf_sha256 == hashlib.sha256(Path(current.pdf_path).read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["deleted", "altered"])
def test_it_writes_again_a_current_pdf_deleted_or_altered_on_disk(
    damage: str,
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
) -> None:
    """An unchanged re-run used to leave a deleted PDF missing (the API then answered 404 and
    only --force, a new revision, brought it back). Now the run sees the file is gone, or no
    longer the bytes it issued, and renders it again from the record: same number, same
    revision, the same text, its new sha256 stored."""
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    statement_generate_month(month="2025-03", now=APRIL_1)
    first = issued("Alpha")
    issued_text = pdf_text(first.pdf_path)
    pdf = Path(first.pdf_path)
    if damage == "deleted":
        pdf.unlink()
    else:
        pdf.write_bytes(pdf.read_bytes()[:-100])

    result = statement_generate_month(month="2025-03", now=APRIL_1 + timedelta(days=1))

    again = issued("Alpha")
    assert [o.action for o in result.statements] == ["unchanged", "unchanged"]
    assert (again.pk, again.number, again.revision, again.pdf_path) == (first.pk, first.number, 1, first.pdf_path)
    assert str(pdf) in result.files_written
    assert pdf_text(again.pdf_path) == issued_text
    assert again.pdf_sha256 == hashlib.sha256(pdf.read_bytes()).hexdigest()
    # The next unchanged run finds everything in place and writes nothing.
    assert statement_generate_month(month="2025-03", now=APRIL_1 + timedelta(days=2)).files_written == ()


@pytest.mark.parametrize("crash_in", ["_superseded_settle", "_move_to_superseded"])
def test_it_keeps_the_old_revision_files_when_a_run_dies_after_its_commit(
    crash_in: str,
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run that issues Alpha's revision 2 dies after its commit: before it moved or stamped
    anything, or after it stamped revision 1's PDF but before it moved the files. The next run
    finds revision 2 current with no files; before writing them under the plain names it moves
    revision 1's files aside, so they are never overwritten: the kept JSON still says revision
    1, and the kept PDF is the issued bytes plus one stamp."""
    from billing import services

    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    statement_generate_month(month="2025-03", now=APRIL_1)
    first = issued("Alpha")
    issued_pdf, issued_json = Path(first.pdf_path).read_bytes(), Path(first.json_path).read_text()
    outage_create(member_name="Alpha Nodes", start_time=utc(2025, 3, 5, 10), end_time=utc(2025, 3, 5, 12))

    def die(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed")

    with monkeypatch.context() as patched:
        patched.setattr(services, crash_in, die)
        with pytest.raises(RuntimeError, match="killed"):
            statement_generate_month(month="2025-03", now=APRIL_1 + timedelta(days=2))
    assert issued("Alpha").revision == 2 and issued("Alpha").json_path == ""

    result = statement_generate_month(month="2025-03", now=APRIL_1 + timedelta(days=3))
    assert {o.member_key: o.action for o in result.statements} == {"Alpha": "unchanged", "beta": "unchanged"}
    old, current = Statement.objects.get(member_key="Alpha", revision=1), issued("Alpha")
    folder = pdf_settings / "tmp" / "2025-03"
    assert (Path(old.json_path), Path(old.pdf_path)) == (
        folder / "superseded" / "2025_03-IBP-Service_Alpha-r1.json",
        folder / "superseded" / "2025_03-IBP-Service_Alpha-r1.pdf",
    )
    assert Path(old.json_path).read_text() == issued_json and json.loads(issued_json)["revision"] == 1
    kept = Path(old.pdf_path).read_bytes()
    assert kept[: len(issued_pdf)] == issued_pdf and kept.count(b"/IBPSuperseded") == 1
    assert json.loads(Path(current.json_path).read_text())["revision"] == 2
    assert Path(current.pdf_path) == folder / "2025_03-IBP-Service_Alpha.pdf"
    assert "SUPERSEDED" not in pdf_text(current.pdf_path)


def test_it_shows_member_requests_and_share_from_the_usage_rollups(
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
) -> None:
    """March: Alpha Nodes 3,000 hits, Beta Hosting 1,000, and 500 with no member. Alpha's share
    of the network's 4,500 requests = 3000 / 4500 = 66.666…%, floored to 66.66% (as in the
    overview, whose requests column adds up to the month's total). The figures are frozen in
    2025_03-Usage.json, so a later re-render prints the same even if the rows change."""
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    day = utc(2025, 3, 10).date()
    for member, hits in (("Alpha Nodes", 3000), ("Beta Hosting", 1000), ("", 500)):
        RequestStat.objects.create(date=day, node_id="n1", domain_name="polkadot.dotters.network",
                                   member_name=member, country_code="DE", country_name="Germany", hits=hits)  # fmt: skip
    usage_rollups_refresh(dates=[day])
    statement_generate_month(month="2025-03", now=APRIL_1)

    text = pdf_text(issued("Alpha").pdf_path)
    assert "3,000 (66.66% of the network)" in text
    frozen = json.loads((pdf_settings / "tmp" / "2025-03" / "2025_03-Usage.json").read_text())
    assert frozen["members"]["Alpha"] == 3000 and frozen["total_requests"] == 4500
