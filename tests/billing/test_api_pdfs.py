"""GET /api/billing/pdfs and /api/billing/pdfs/download (api-contract §2.17/§2.18, DECISIONS 18),
over PDFs written by the real engine and renderer, parsed back with pypdf."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from django.test import Client
from pypdf import PdfReader

from billing.models import Statement
from billing.services import cost_summary_generate, statement_generate_month
from tests.billing.api_support import (  # noqa: F401
    APRIL_1,
    billing_files,
    body_of,
    issued_march,
    real_config,
)
from tests.billing.conftest import outage_create
from tests.billing.pdf_support import utc
from tests.collator.api_fixtures import api  # noqa: F401

PDFS = "/api/billing/pdfs"
DOWNLOAD = "/api/billing/pdfs/download"
ACTIVE = ["Amforc", "Dwellir", "Gatotech", "Stake Plus", "Turboflakes"]
ENTRY_KEYS = ["year", "month", "member_name", "is_overview", "file_name", "file_size", "modified_time"]


class TestListing:
    def test_it_lists_the_issued_month_overview_first(self, api: Client, issued_march: Path) -> None:  # noqa: F811
        """March 2025 issued: the overview and 5 statements (the active members) in
        tmp/2025-03/. Sizes and times are the files' own (mtime in UTC, whole seconds)."""
        body = body_of(api, PDFS)
        assert list(body) == ["data", "total"]
        assert body["total"] == 6
        (group,) = body["data"]
        assert (group["year"], group["month"]) == ("2025", "03")
        overview, *statements = group["pdfs"]
        assert list(overview) == [key for key in ENTRY_KEYS if key != "member_name"]
        assert overview["is_overview"] is True
        assert overview["file_name"] == "2025_03-Monthly_Overview.pdf"
        assert [s["member_name"] for s in statements] == ACTIVE
        assert [s["file_name"] for s in statements] == [
            f"2025_03-IBP-Service_{name.replace(' ', '_')}.pdf" for name in ACTIVE
        ]
        folder = issued_march / "tmp" / "2025-03"
        for entry in group["pdfs"]:
            assert list(entry) == (ENTRY_KEYS if not entry["is_overview"] else list(overview))
            stat = (folder / entry["file_name"]).stat()
            assert entry["file_size"] == stat.st_size > 1000
            assert isinstance(entry["file_size"], int)
            assert entry["modified_time"] == utc(*_utc_parts(stat.st_mtime)).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert (entry["year"], entry["month"]) == ("2025", "03")

    def test_it_lists_only_what_decisions_18_writes(self, api: Client, issued_march: Path) -> None:  # noqa: F811
        """Not listed: the daily cost PDF in tmp/, superseded and draft sub-folders, JSON/CSV
        companions, `.PDF`, other names, a folder that is not YYYY-MM (or month 13), and a
        symbolic link (even one named like a statement)."""
        root = issued_march / "tmp"
        cost_summary_generate(now=APRIL_1)
        assert (root / "service_cost_20250401.pdf").is_file()
        (root / "2025-03" / "superseded").mkdir(exist_ok=True)
        (root / "2025-03" / "superseded" / "2025_03-IBP-Service_Old-r1.pdf").write_bytes(b"%PDF-old")
        (root / "2025-03" / "2025_03-IBP-Service_Upper.PDF").write_bytes(b"%PDF")
        (root / "2025-03" / "notes.pdf").write_bytes(b"%PDF")
        (root / "2025-13").mkdir()
        (root / "2025-13" / "2025_13-Monthly_Overview.pdf").write_bytes(b"%PDF")
        (root / "misc").mkdir()
        (root / "misc" / "2025_03-Monthly_Overview.pdf").write_bytes(b"%PDF")
        outside = issued_march / "secret.pdf"
        outside.write_bytes(b"%PDF-secret")
        os.symlink(outside, root / "2025-03" / "2025_03-IBP-Service_Evil.pdf")
        os.symlink(root / "2025-03", root / "2024-12")
        body = body_of(api, PDFS)
        assert body["total"] == 6
        assert [g["month"] for g in body["data"]] == ["03"]
        assert "Evil" not in {p.get("member_name") for p in body["data"][0]["pdfs"]}

    def test_it_orders_months_newest_first_and_filters(self, api: Client, issued_march: Path) -> None:  # noqa: F811
        """February 2025 issued too (5 statements + overview): groups 2025-03, 2025-02. The
        member filter ignores case and leaves overviews out; year/month filter on their own
        (quirk Q20); `9` and `09` are one month."""
        statement_generate_month(month="2025-02", now=utc(2025, 3, 1, 0, 5))
        body = body_of(api, PDFS)
        assert [(g["year"], g["month"]) for g in body["data"]] == [("2025", "03"), ("2025", "02")]
        assert body["total"] == 12
        mine = body_of(api, PDFS, member="stake plus")
        assert mine["total"] == 2
        assert [[p["member_name"] for p in g["pdfs"]] for g in mine["data"]] == [["Stake Plus"], ["Stake Plus"]]
        assert body_of(api, PDFS, year="2025", month="2")["data"][0]["month"] == "02"
        assert body_of(api, PDFS, year="2025", month="02")["total"] == 6
        assert body_of(api, PDFS, month="3")["total"] == 6
        assert body_of(api, PDFS, year="2024") == {"data": [], "total": 0}
        assert body_of(api, PDFS, member="Nobody") == {"data": [], "total": 0}

    def test_it_names_a_statement_by_its_member_key(self, api: Client, issued_march: Path) -> None:  # noqa: F811
        """A statement file belongs to the member key its issued statement records (so a key
        with `_` would round-trip, Q20); an unclaimed file gets the reference's `_` → space."""
        Statement.objects.filter(member_key="Amforc").update(member_key="Am_forc")
        (issued_march / "tmp" / "2025-03" / "2025_03-IBP-Service_Hand_Made.pdf").write_bytes(b"%PDF-1.4")
        names = [p.get("member_name") for p in body_of(api, PDFS)["data"][0]["pdfs"]]
        assert names == [None, "Am_forc", "Dwellir", "Gatotech", "Hand Made", "Stake Plus", "Turboflakes"]

    def test_it_answers_an_empty_folder_with_an_empty_list(self, api: Client, billing_files: Path) -> None:  # noqa: F811
        assert body_of(api, PDFS) == {"data": [], "total": 0}

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"year": "25"}, "Invalid year format"),
            ({"year": "2025x"}, "Invalid year format"),
            ({"year": "\u0662\u0660\u0662\u0665"}, "Invalid year format"),
            ({"year": "../2025"}, "Invalid year format"),
            ({"month": "13"}, "Invalid month format"),
            ({"month": "003"}, "Invalid month format"),
            ({"month": "0"}, "Invalid month format"),
            ({"year": "x", "month": "13"}, "Invalid year format"),  # year is checked first
        ],
    )
    def test_it_answers_400_for_a_bad_year_or_month(
        self,
        api: Client,  # noqa: F811
        billing_files: Path,  # noqa: F811
        params: dict[str, str],
        message: str,
    ) -> None:
        assert body_of(api, PDFS, expect=400, **params) == {"error": message}


def _utc_parts(timestamp: float) -> tuple[int, ...]:
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


@pytest.fixture
def placed_march(billing_files: Path) -> Path:  # noqa: F811
    """A March folder with two small files named as DECISIONS 18 names them (no statements
    behind them): for the tests that only need something to find, or not to find."""
    folder = billing_files / "tmp" / "2025-03"
    folder.mkdir(parents=True)
    (folder / "2025_03-Monthly_Overview.pdf").write_bytes(b"%PDF-1.4 overview")
    (folder / "2025_03-IBP-Service_Stake_Plus.pdf").write_bytes(b"%PDF-1.4 stake plus")
    return billing_files


class TestDownload:
    def test_it_serves_a_statement_as_a_pdf(self, api: Client, issued_march: Path) -> None:  # noqa: F811
        """The bytes are the file's, typed application/pdf, with its stored name; the PDF reads
        back as Stake Plus's March statement."""
        response = api.get(
            DOWNLOAD, {"year": "2025", "month": "03", "member": "Stake Plus"}, HTTP_ORIGIN="https://dash.example"
        )
        assert response.status_code == 200
        assert response["Content-Type"] == "application/pdf"
        assert response["Content-Disposition"] == 'attachment; filename="2025_03-IBP-Service_Stake_Plus.pdf"'
        data = b"".join(response.streaming_content)
        stored = (issued_march / "tmp" / "2025-03" / "2025_03-IBP-Service_Stake_Plus.pdf").read_bytes()
        assert data == stored
        assert int(response["Content-Length"]) == len(stored)
        text = "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)
        assert "Stake Plus" in text
        assert "$13,633.24" in text
        assert response["Access-Control-Allow-Origin"] == "*"

    def test_it_serves_the_overview_and_matches_members_ignoring_case(
        self,
        api: Client,  # noqa: F811
        issued_march: Path,  # noqa: F811
    ) -> None:
        """type=overview ignores member; month `3` is `03`; `STAKE plus` finds Stake Plus and
        the header keeps the stored name."""
        response = api.get(DOWNLOAD, {"year": "2025", "month": "3", "type": "overview", "member": "../x"})
        assert response.status_code == 200
        assert response["Content-Disposition"] == 'attachment; filename="2025_03-Monthly_Overview.pdf"'
        data = b"".join(response.streaming_content)
        assert data == (issued_march / "tmp" / "2025-03" / "2025_03-Monthly_Overview.pdf").read_bytes()
        assert "75,412.10" in "\n".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(data)).pages)
        response = api.get(DOWNLOAD, {"year": "2025", "month": "3", "member": "STAKE plus"})
        assert response.status_code == 200
        assert response["Content-Disposition"] == 'attachment; filename="2025_03-IBP-Service_Stake_Plus.pdf"'

    def test_it_quotes_a_non_ascii_name_as_rfc_6266_asks(self, api: Client, billing_files: Path) -> None:  # noqa: F811
        """`Türk "Node".pdf`-like names: an ASCII fallback in `filename` (ü → u, `"` → _) and the
        exact UTF-8 name percent-encoded in `filename*`."""
        folder = billing_files / "tmp" / "2025-03"
        folder.mkdir(parents=True)
        (folder / "2025_03-IBP-Service_Türk_Nodes.pdf").write_bytes(b"%PDF-1.4 test")
        response = api.get(DOWNLOAD, {"year": "2025", "month": "3", "member": "türk nodes"})
        assert response.status_code == 200
        assert response["Content-Disposition"] == (
            'attachment; filename="2025_03-IBP-Service_Turk_Nodes.pdf"; '
            "filename*=UTF-8''2025_03-IBP-Service_T%C3%BCrk_Nodes.pdf"
        )
        assert b"".join(response.streaming_content) == b"%PDF-1.4 test"

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({}, "Year and month are required"),
            ({"year": "2025"}, "Year and month are required"),
            ({"month": "3", "member": "Stake Plus"}, "Year and month are required"),
            ({"year": "2025", "month": "3"}, "Member name is required for non-overview PDFs"),
            ({"year": "2025", "month": "3", "member": "  "}, "Member name is required for non-overview PDFs"),
            ({"year": "x", "month": "y"}, "Member name is required for non-overview PDFs"),  # before formats
            ({"year": "25", "month": "3", "type": "overview"}, "Invalid year format"),
            ({"year": "..", "month": "3", "type": "overview"}, "Invalid year format"),
            ({"year": "/etc", "month": "3", "member": "x"}, "Invalid year format"),
            ({"year": "2025", "month": "13", "type": "overview"}, "Invalid month format"),
            ({"year": "2025", "month": "../03", "type": "overview"}, "Invalid month format"),
            ({"year": "2025", "month": "%2e%2e", "type": "overview"}, "Invalid month format"),
        ],
    )
    def test_it_answers_400_in_the_contracts_order(
        self,
        api: Client,  # noqa: F811
        billing_files: Path,  # noqa: F811
        params: dict[str, str],
        message: str,
    ) -> None:
        assert body_of(api, DOWNLOAD, expect=400, **params) == {"error": message}

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"year": "2025", "month": "2", "type": "overview"}, "no PDFs found for 2025-02"),
            ({"year": "2025", "month": "3", "member": "Nobody"}, "member PDF not found for Nobody in 2025-03"),
        ],
    )
    def test_it_answers_404_with_the_contracts_messages(
        self,
        api: Client,  # noqa: F811
        placed_march: Path,
        params: dict[str, str],
        message: str,
    ) -> None:
        assert body_of(api, DOWNLOAD, expect=404, **params) == {"error": message}

    def test_it_answers_404_when_the_month_has_no_overview(self, api: Client, placed_march: Path) -> None:  # noqa: F811
        (placed_march / "tmp" / "2025-03" / "2025_03-Monthly_Overview.pdf").unlink()
        body = body_of(api, DOWNLOAD, expect=404, year="2025", month="3", type="overview")
        assert body == {"error": "overview PDF not found for 2025-03"}

    @pytest.mark.parametrize(
        "member",
        [
            "../secret",
            "../../secret",
            "..%2Fsecret",
            "%2e%2e%2fsecret",
            "..\\secret",
            "/etc/passwd",
            "SECRET_PATH",
            "Stake Plus/../../secret",
            "Stake Plus\x00../secret",
            "2025_03-IBP-Service_Stake_Plus.pdf",
        ],
    )
    def test_it_never_lets_a_member_name_reach_the_file_system(
        self,
        api: Client,  # noqa: F811
        placed_march: Path,
        member: str,
    ) -> None:
        """A secret PDF sits next to tmp/ and at the file-system root of the WorkDir; whatever
        the member text (traversal, encoded traversal, absolute path, backslashes, NULs, a file
        name), it is only compared with listed names: 404 with the JSON error, never a file."""
        secret = placed_march / "secret.pdf"
        secret.write_bytes(b"%PDF-secret")
        response = api.get(
            DOWNLOAD, {"year": "2025", "month": "3", "member": member.replace("SECRET_PATH", str(secret))}
        )
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"].startswith("member PDF not found for ")
        assert b"%PDF" not in response.content

    def test_it_never_serves_a_link_out_of_the_folder(self, api: Client, placed_march: Path) -> None:  # noqa: F811
        """A symbolic link named like a statement, pointing outside tmp/, is neither listed nor
        served."""
        secret = placed_march / "secret.pdf"
        secret.write_bytes(b"%PDF-secret")
        os.symlink(secret, placed_march / "tmp" / "2025-03" / "2025_03-IBP-Service_Evil.pdf")
        body = body_of(api, DOWNLOAD, expect=404, year="2025", month="3", member="Evil")
        assert body == {"error": "member PDF not found for Evil in 2025-03"}

    def test_it_answers_raw_traversal_in_the_query_string_safely(self, api: Client, placed_march: Path) -> None:  # noqa: F811
        """Encoded as the browser would send them (`%2F`, `%00`, doubly encoded `%252e`)."""
        for query in (
            "year=2025&month=3&member=..%2F..%2Fsecret",
            "year=2025&month=3&member=%2e%2e%2f%2e%2e%2fsecret",
            "year=2025&month=3&member=%252e%252e%252fsecret",
            "year=2025&month=3&member=..%5C..%5Csecret",
            "year=2025&month=3&member=%00..%2fsecret",
            "year=2025%2F..&month=3&type=overview",
        ):
            response = api.get(f"{DOWNLOAD}?{query}")
            assert response.status_code in (400, 404), query
            assert response["Content-Type"] == "application/json"
            assert "error" in response.json()

    def test_it_answers_404_for_a_file_deleted_after_listing(self, api: Client, placed_march: Path) -> None:  # noqa: F811
        """Read on demand: a deleted statement is simply not there any more (Q20: 404, not 500)."""
        (placed_march / "tmp" / "2025-03" / "2025_03-IBP-Service_Stake_Plus.pdf").unlink()
        body = body_of(api, DOWNLOAD, expect=404, year="2025", month="3", member="Stake Plus")
        assert body == {"error": "member PDF not found for Stake Plus in 2025-03"}


@pytest.mark.usefixtures("real_config")
def test_it_lists_a_revised_statement_once(api: Client, billing_files: Path) -> None:  # noqa: F811
    """A late outage revises Stake Plus's March statement: the old PDF moves to superseded/
    (not listed), the new one takes the plain name, still one entry per member."""
    statement_generate_month(month="2025-03", now=APRIL_1)
    outage_create(member_name="Stake Plus", start_time=utc(2025, 3, 5), end_time=utc(2025, 3, 5, 1))
    statement_generate_month(month="2025-03", now=utc(2025, 4, 2))
    body = body_of(api, PDFS, member="Stake Plus")
    assert body["total"] == 1
    assert body["data"][0]["pdfs"][0]["file_name"] == "2025_03-IBP-Service_Stake_Plus.pdf"
    assert any((billing_files / "tmp" / "2025-03" / "superseded").iterdir())
