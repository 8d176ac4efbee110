"""The longest member key and name the database holds, end to end: config sync, statements,
file names, logo cache, PDFs (members/config_files.py MEMBER_KEY_MAX_CHARS / MEMBER_NAME_MAX_CHARS).

A longer one is refused by the config sync with an error naming the file and the field: the
sync used to fail in the database instead, so such a member could never be billed (and a
Details.Name longer than member_events.member_name could never be matched to its outages).
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pdfplumber
import pytest

from billing.models import DocumentStatus, Statement
from billing.services import statement_generate_month
from members.config_files import MEMBER_KEY_MAX_CHARS, MEMBER_NAME_MAX_CHARS
from members.models import ConfigSnapshot, Member
from members.selectors import config_snapshot_in_force
from members.services import config_sync
from metrics.models import MemberEvent
from tests.billing.conftest import outage_create
from tests.billing.pdf_support import pdf_settings, utc  # noqa: F401
from tests.billing.test_pdf_logos import LogoServer
from tests.members.conftest import config_urls

pytestmark = pytest.mark.django_db

FS_NAME_BYTES = 255
LONGEST_KEY = "東" * MEMBER_KEY_MAX_CHARS  # 384 bytes of UTF-8


def _config_with(folder: Path, ibp_config_dir: Path, key: str, *, name: str | None = None, logo: str = "") -> dict:
    """The bundled real config plus a copy of Stake Plus under `key` (Details.Name `name`)."""
    shutil.copytree(ibp_config_dir, folder, ignore=shutil.ignore_patterns("2026-01-18"))
    members_file = folder / "members_professional.json"
    members = json.loads(members_file.read_text())
    members[key] = json.loads(json.dumps(members["Stake Plus"]))
    members[key]["Details"].update({"Name": key if name is None else name, "Logo": logo})
    members_file.write_text(json.dumps(members))
    return config_urls(folder)


def test_it_keeps_the_limits_equal_to_the_columns() -> None:
    assert Statement._meta.get_field("member_key").max_length == MEMBER_KEY_MAX_CHARS
    assert Member._meta.get_field("member_index").max_length == MEMBER_KEY_MAX_CHARS
    assert MemberEvent._meta.get_field("member_name").max_length == MEMBER_NAME_MAX_CHARS
    assert Statement._meta.get_field("member_name").max_length >= MEMBER_NAME_MAX_CHARS


@pytest.mark.parametrize(
    ("key", "name", "field", "message"),
    [
        ("k" * 300, "Short", "k" * 300, "the member key is 300 characters long; at most 128 are allowed"),
        (
            "Long Name",
            "n" * 129,
            "Long Name.Details.Name",
            "is 129 characters long; at most 128 are allowed (monitors report outages under this name in "
            "member_events.member_name)",
        ),
    ],
)
def test_it_refuses_a_member_key_or_name_longer_than_the_database_holds(
    key: str, name: str, field: str, message: str, tmp_path: Path, ibp_config_dir: Path
) -> None:
    """The sync fails with the file and the field named; the config in force stays the last good one."""
    good = config_sync(urls=config_urls(ibp_config_dir), now=utc(2025, 1, 1))
    urls = _config_with(tmp_path / "config", ibp_config_dir, key, name=name)
    result = config_sync(urls=urls, now=utc(2025, 1, 2))

    source = urls["MembersConfig"]
    assert (result.status, result.file_key, result.field_path) == ("failed", "MembersConfig", field)
    assert result.error == f"MembersConfig ({source}): field {field}: {message}"
    assert config_snapshot_in_force(at=utc(2025, 2, 1)).snapshot == good.snapshot
    assert not Member.objects.filter(member_index=key).exists() and Member.objects.count() == 7
    assert ConfigSnapshot.objects.filter(status="failed").count() == 1


def test_it_bills_and_renders_a_member_with_the_longest_allowed_key(
    tmp_path: Path,
    ibp_config_dir: Path,
    pdf_settings: Path,  # noqa: F811
    settings: Any,
) -> None:
    """A key (and Details.Name) of 128 CJK characters, 384 bytes: synced, billed like Stake
    Plus ($13,633.24 over 22 lines), rendered with its logo, then revised by a late outage.
    Every file it gets (PDF, JSON, CSV, the kept revision 1, the cached logo) has a name of at
    most 255 bytes, cut at whole characters; the PDF prints the key whole."""
    logo_server = LogoServer()
    try:
        settings.BILLING_LOGO_ALLOW_PRIVATE_HOSTS = [f"127.0.0.1:{logo_server.port}"]
        urls = _config_with(tmp_path / "config", ibp_config_dir, LONGEST_KEY, logo=logo_server.url("/logo.png"))
        assert config_sync(urls=urls, now=utc(2025, 1, 1)).status == "applied"
        first = statement_generate_month(month="2025-03", now=utc(2025, 4, 1, 0, 5))
        outage_create(member_name=LONGEST_KEY, start_time=utc(2025, 3, 3, 10), end_time=utc(2025, 3, 3, 11))
        second = statement_generate_month(month="2025-03", now=utc(2025, 4, 1, 0, 5) + timedelta(days=1))
    finally:
        logo_server.close()
    assert first.pdf_failures == second.pdf_failures == ()

    statement = Statement.objects.get(member_key=LONGEST_KEY, status=DocumentStatus.ISSUED)
    kept = Statement.objects.get(member_key=LONGEST_KEY, revision=1)
    assert (statement.revision, statement.base_total, statement.service_count) == (2, Decimal("13633.24"), 22)
    stem = "2025_03-IBP-Service_" + "東" * 50  # the key cut to 150 bytes, whole characters
    assert [Path(p).name for p in (statement.pdf_path, statement.json_path, statement.csv_path)] == [
        f"{stem}.pdf",
        f"{stem}.json",
        f"{stem}.csv",
    ]
    assert Path(kept.pdf_path).name == f"{stem}-r1.pdf"
    logos = list((pdf_settings / "tmp" / "member_logos").glob("東*.png"))
    assert len(logos) == 1
    names = [Path(p).name for p in (statement.pdf_path, statement.json_path, kept.pdf_path, kept.json_path)]
    names += [logos[0].name]
    assert all(len(name.encode()) <= FS_NAME_BYTES for name in names)
    assert all(Path(p).exists() for p in (statement.pdf_path, statement.csv_path, kept.pdf_path, kept.csv_path))

    with pdfplumber.open(statement.pdf_path) as pdf:
        first_page = pdf.pages[0]
        assert first_page.images  # the member logo
        text = "".join(first_page.extract_text().split("\n"))
    assert LONGEST_KEY in text and "$13,633.24" in text
