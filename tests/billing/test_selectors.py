"""Reads for the billing API and the PDFs: issued figures for closed months, live figures to date."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from billing.models import Statement
from billing.selectors import (
    billing_breakdown,
    billing_month_has_statements,
    billing_summary,
    outage_rows_for_month,
    statement_csv,
    statement_document,
)
from billing.services import statement_generate_month
from billing.sla import month_window
from tests.billing.conftest import SnapshotFactory, outage_create
from tests.billing.worked_example import PRICING_JSON, example_files, utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def config_in_force(snapshot_applied: SnapshotFactory, work_dir: Path) -> None:
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))


def test_it_selects_outage_rows_that_overlap_the_month_up_to_now(config_in_force: None) -> None:
    """Kept: open (status 0), closed by the collator (status 1 + end), legacy closed (status 0 + end),
    one spanning from February. Left out: status 1 without end, one ended before March, one
    starting after now."""
    keep = [
        outage_create(member_name="Alpha Nodes", start_time=utc(2025, 3, 5), end_time=None),
        outage_create(member_name="Alpha Nodes", start_time=utc(2025, 3, 6), end_time=utc(2025, 3, 6, 1), status=1),
        outage_create(member_name="Alpha Nodes", start_time=utc(2025, 3, 7), end_time=utc(2025, 3, 7, 1), status=0),
        outage_create(member_name="Alpha Nodes", start_time=utc(2025, 2, 27), end_time=utc(2025, 3, 1, 2)),
    ]
    outage_create(member_name="Alpha Nodes", check_name="x", start_time=utc(2025, 3, 8), end_time=None, status=1)
    outage_create(member_name="Alpha Nodes", start_time=utc(2025, 2, 2), end_time=utc(2025, 2, 3))
    outage_create(member_name="Alpha Nodes", check_name="late", start_time=utc(2025, 3, 25), end_time=None)
    rows = outage_rows_for_month(window=month_window(year=2025, month=3), now=utc(2025, 3, 20))
    assert sorted(row.id for row in rows) == sorted(e.id for e in keep)


def test_it_breaks_a_closed_month_down_from_its_issued_statements(
    snapshot_applied: SnapshotFactory, config_in_force: None
) -> None:
    """March issued with Alpha down 1 h (site): each Alpha line misses the SLA. Alpha/Polkadot:
    512 × 3600 / 2,678,400 = 0.6881… → 0.69, billed 511.31; Kusama 128 × … = 0.1720… → 0.17,
    billed 127.83. Uptime 2,674,800 / 2,678,400 = 99.865591…% (6 places, floored).
    A later config change does not change the answer (it is read from the statements)."""
    outage_create(member_name="Alpha Nodes", start_time=utc(2025, 3, 2), end_time=utc(2025, 3, 2, 1))
    statement_generate_month(month="2025-03", now=utc(2025, 4, 1, 0, 5))
    dearer = {**PRICING_JSON, "Europe": {**PRICING_JSON["Europe"], "cores": 20}}
    snapshot_applied(example_files(pricing=dearer), applied_at=utc(2025, 4, 10))

    breakdown = billing_breakdown(year=2025, month=3, member="Alpha", include_downtime=True, now=utc(2025, 6, 1))
    assert breakdown.source == "statements"
    body = breakdown.as_api()
    assert list(body) == ["members", "month", "total_base_cost", "total_billed", "total_credits"]
    assert body["month"] == "2025-03" and body["total_credits"] == 0.86
    (alpha,) = body["members"]
    assert list(alpha) == [
        "name",
        "level",
        "services",
        "total_base_cost",
        "total_billed",
        "total_credits",
        "meets_sla",
    ]
    assert (alpha["name"], alpha["level"], alpha["meets_sla"]) == ("Alpha", 6, False)
    assert [s["name"] for s in alpha["services"]] == ["Kusama", "Polkadot"]
    polkadot = alpha["services"][1]
    assert polkadot == {
        "name": "Polkadot",
        "base_cost": 512.0,
        "uptime_percentage": 99.865591,
        "billed_cost": 511.31,
        "credits": 0.69,
        "meets_sla": False,
        "downtime_events": [polkadot["downtime_events"][0]],
    }
    event = polkadot["downtime_events"][0]
    assert (event["check_type"], event["counted_seconds"], event["status"]) == ("site", 3600, "resolved")
    assert breakdown.members[0].statement_number == "IBP-202503-0001"

    everyone = billing_breakdown(year=2025, month=3, now=utc(2025, 6, 1)).as_api()
    assert [m["name"] for m in everyone["members"]] == ["Alpha", "beta"]
    assert "downtime_events" not in everyone["members"][0]["services"][0]
    assert everyone["total_base_cost"] == 1584.0


def test_it_computes_the_current_month_to_date_live(config_in_force: None) -> None:
    """Mar 10 12:00, nothing issued; beta has been down since Mar 10 11:00 (open): 3600 s so far,
    not to the month's end. beta/Polkadot misses the SLA: 944 × 3600 / 2,678,400 = 1.2688… → 1.27."""
    outage_create(member_name="Beta Hosting", start_time=utc(2025, 3, 10, 11), end_time=None)
    breakdown = billing_breakdown(year=2025, month=3, member="beta", now=utc(2025, 3, 10, 12))
    assert breakdown.source == "live"
    (beta,) = breakdown.members
    (polkadot,) = beta.services
    assert (polkadot.downtime_seconds, polkadot.credits, polkadot.billed_cost) == (
        3600,
        Decimal("1.27"),
        Decimal("942.73"),
    )
    assert polkadot.uptime_percentage == Decimal("99.865591")

    summary = billing_summary(now=utc(2025, 3, 10, 12)).as_api()
    assert summary["total_members"] == 2 and summary["total_services"] == 3 and summary["unique_services"] == 2
    assert summary["total_base_cost_monthly"] == 1584.0
    assert summary["current_month_credits"] == 1.27 and summary["current_month_sla_violations"] == 1
    assert summary["service_distribution"] == {"Kusama": 1, "Polkadot": 2}
    assert summary["last_refresh"] == "2025-02-01T00:00:00Z"


def test_it_answers_zeros_and_empty_lists_without_config_or_members(work_dir: Path) -> None:
    assert billing_breakdown(year=2025, month=3, now=utc(2025, 4, 2)).as_api() == {
        "members": [],
        "month": "2025-03",
        "total_base_cost": 0.0,
        "total_billed": 0.0,
        "total_credits": 0.0,
    }
    assert billing_summary(now=utc(2025, 4, 2)).as_api()["total_members"] == 0


def test_it_gives_an_unknown_member_no_rows(config_in_force: None) -> None:
    assert billing_breakdown(year=2025, month=3, member="Nobody", now=utc(2025, 3, 5)).members == []


def test_it_serves_a_closed_month_without_statements_with_its_config_in_force(
    snapshot_applied: SnapshotFactory, config_in_force: None
) -> None:
    """February was never issued; a config with dearer Europe cores arrived on Mar 3. February is
    computed live with the config in force on Mar 1: Alpha/Kusama 128.00, not 148.00."""
    dearer = {**PRICING_JSON, "Europe": {**PRICING_JSON["Europe"], "cores": 20}}
    snapshot_applied(example_files(pricing=dearer), applied_at=utc(2025, 3, 3))
    breakdown = billing_breakdown(year=2025, month=2, member="Alpha", now=utc(2025, 3, 10))
    assert breakdown.source == "live"
    assert {s.name: s.base_cost for s in breakdown.members[0].services} == {
        "Kusama": Decimal("128.00"),
        "Polkadot": Decimal("512.00"),
    }


def test_it_documents_a_statement_for_the_pdf_and_the_csv(config_in_force: None) -> None:
    statement_generate_month(month="2025-03", now=utc(2025, 4, 1, 0, 5))
    alpha = Statement.objects.get(member_key="Alpha")
    document = statement_document(statement=alpha)
    assert document["member"] == {"key": "Alpha", "name": "Alpha Nodes", "level": 6, "region": "Europe"}
    kusama = document["lines"][1]
    assert kusama["resources"] == {"nodes": 1, "cores": "2", "memory": "8", "disk": "500", "bandwidth": "1000"}
    assert kusama["unit_prices"] == {"cores": "10", "memory": "1", "disk": "0.1", "bandwidth": "0.05"}
    assert (kusama["base"], kusama["uptime_percent"]) == ("128.00", "100.0000")
    lines = statement_csv(statement=alpha).splitlines()
    assert len(lines) == 4  # header, Polkadot, Kusama, TOTAL
    assert billing_month_has_statements(month=utc(2025, 3, 1).date())
    assert not billing_month_has_statements(month=utc(2025, 4, 1).date())
