from __future__ import annotations

import json
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command
from pypdf import PdfReader

from members.services import config_sync

pytestmark = pytest.mark.django_db


def _bundled_urls(config_dir: Path) -> dict[str, str]:
    return {
        "MembersConfig": str(config_dir / "members_professional.json"),
        "ServicesConfig": str(config_dir / "services_rpc.json"),
        "IaasPricingConfig": str(config_dir / "services_rpc_iaaspricing.json"),
    }


def test_it_refuses_without_any_config() -> None:
    with pytest.raises(CommandError, match="sync_config"):
        call_command("generate_cost_summary", stdout=StringIO())


@time_machine.travel(datetime(2026, 7, 2, 0, 5, tzinfo=UTC), tick=False)
def test_it_writes_the_day_total_of_the_real_config(ibp_config_dir: Path, settings, tmp_path: Path) -> None:
    """The daily summary costs the active members at today's config, from lines rounded to
    the cent (DECISIONS 14): Stake Plus 13,633.24 + Amforc 13,819.94 + Turboflakes 13,819.94
    + Gatotech 17,069.39 + Dwellir 17,069.39 = 75,412.10. Rotko Networks and RadiumBlock
    are inactive (DECISIONS 10): listed, not costed (they would add 2 × 17,069.39)."""
    settings.WORK_DIR = tmp_path
    config_sync(urls=_bundled_urls(ibp_config_dir))
    out = StringIO()
    call_command("generate_cost_summary", stdout=out)
    text = out.getvalue()
    assert "cost summary 2026-07-02: 22 services" in text
    json_path = Path(text.split("json ")[1].split()[0])
    document = json.loads(json_path.read_text())
    assert document["day"] == "2026-07-02"
    assert document["total"] == "75412.10"
    assert sorted(document["inactive_members"]) == ["RadiumBlock", "Rotko Networks"]
    pdf_path = Path(text.split("pdf  ")[1].split()[0])
    assert pdf_path == tmp_path / "tmp" / "service_cost_20260702.pdf"
    pdf_text = "\n".join(page.extract_text() or "" for page in PdfReader(str(pdf_path)).pages)
    assert "Stake Plus" in pdf_text
    assert "$75,412.10" in pdf_text
