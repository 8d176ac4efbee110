"""Issuing statements on the real database (DECISIONS 10, 14–17)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
import time_machine
from django.db import connection

from billing.models import BillingRun, CostSummaryRun, DocumentStatus, MonthlyOverview, Statement, StatementLine
from billing.money import money_sum
from billing.services import (
    BillingError,
    BillingLocked,
    MonthNotEnded,
    UnknownMember,
    billing_run_lock,
    billing_run_unlock,
    cost_summary_generate,
    statement_catch_up,
    statement_generate_month,
)
from billing.tasks import cost_summary_daily_task
from members.config_files import PRICING
from tests.billing.conftest import SnapshotFactory, odd_credit_outages_create, outage_create, real_files
from tests.billing.worked_example import PRICING_JSON, example_files, utc

pytestmark = pytest.mark.django_db

APRIL_1 = utc(2025, 4, 1, 0, 5)


def issued(month: str = "2025-03") -> dict[str, Statement]:
    return {s.member_key: s for s in Statement.objects.filter(month=f"{month}-01", status=DocumentStatus.ISSUED)}


# --- the real config ---------------------------------------------------------------------------


def test_it_issues_the_real_config_for_five_active_members(
    snapshot_applied: SnapshotFactory, work_dir: Path, ibp_config_dir: Path
) -> None:
    """No outages, so every line is billed in full. Stake Plus: 22 North America lines, Σ rounded
    lines = $13,633.24. Rotko Networks and RadiumBlock have Service.Active 0: no statement, and the
    overview lists them as inactive with $0. Overview base = 2 × 13,819.99 (Amforc, Turboflakes)
    + 13,633.24 (Stake Plus) + 2 × 17,069.44 (Gatotech, Dwellir) = 75,412.10."""
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))
    result = statement_generate_month(month="2025-03", now=APRIL_1)

    statements = issued()
    assert sorted(statements) == ["Amforc", "Dwellir", "Gatotech", "Stake Plus", "Turboflakes"]
    stake = statements["Stake Plus"]
    assert stake.base_total == Decimal("13633.24")
    assert stake.billed_total == Decimal("13633.24") and stake.credit_total == Decimal("0.00")
    assert stake.lines.count() == 22
    assert stake.lines.get(service_key="Polkadot").base == Decimal("3457.21")
    assert stake.lines.get(service_key="Kusama").base == Decimal("4628.82")
    amforc = statements["Amforc"]
    assert amforc.lines.get(service_key="Polkadot").base == Decimal("3512.21")
    assert amforc.lines.get(service_key="Kusama").base == Decimal("4713.82")
    assert stake.month_seconds == 31 * 86400 and stake.uptime_percent == Decimal("100")

    overview = MonthlyOverview.objects.get(month="2025-03-01")
    assert overview.base_total == Decimal("75412.10") == result.base
    assert (overview.active_members, overview.inactive_members, overview.service_lines) == (5, 2, 110)
    inactive = [m for m in overview.members if m["status"] == "inactive"]
    assert [(m["key"], m["base"], m["billed"]) for m in inactive] == [
        ("RadiumBlock", "0.00", "0.00"),
        ("Rotko Networks", "0.00", "0.00"),
    ]
    assert result.inactive_members == ("RadiumBlock", "Rotko Networks")
    # Numbers are given in member-key order and carry the month.
    assert [statements[k].number for k in sorted(statements)] == [f"IBP-202503-{n:04d}" for n in range(1, 6)]


def test_it_makes_every_stored_total_the_sum_of_its_lines(
    snapshot_applied: SnapshotFactory, work_dir: Path, ibp_config_dir: Path
) -> None:
    """With outages that give odd credits (a 61-min site outage on Stake Plus, a 7-min endpoint
    outage on Amforc/Kusama and a domain outage on Dwellir), every statement total equals the sum
    of its stored lines, and the overview's totals equal the sum of the statements."""
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))
    odd_credit_outages_create()
    statement_generate_month(month="2025-03", now=APRIL_1)

    statements = issued()
    assert statements["Stake Plus"].services_missing_sla == 22
    for statement in statements.values():
        lines = list(statement.lines.all())
        assert statement.base_total == money_sum(line.base for line in lines)
        assert statement.credit_total == money_sum(line.credit for line in lines)
        assert statement.billed_total == money_sum(line.billed for line in lines)
        assert all(line.billed == line.base - line.credit for line in lines)
    overview = MonthlyOverview.objects.get(month="2025-03-01")
    assert overview.credit_total == money_sum(s.credit_total for s in statements.values())
    assert overview.billed_total == money_sum(s.billed_total for s in statements.values())
    assert overview.credit_total > 0


# --- the worked example ----------------------------------------------------------------------------


@pytest.fixture
def example_month(snapshot_applied: SnapshotFactory, work_dir: Path) -> None:
    """§8: the example config in force since February, and the six outage rows of §8.3."""
    from tests.billing.worked_example import EXAMPLE_ROWS

    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    for row in EXAMPLE_ROWS:
        outage_create(
            id=row.id,
            check_type=row.check_type,
            check_name=row.check_name,
            endpoint=row.endpoint,
            domain_name=row.domain_name,
            member_name=row.member_name,
            status=row.status,
            is_ipv6=int(row.is_ipv6),
            start_time=row.start_time,
            end_time=row.end_time,
        )


def test_it_stores_the_worked_example_with_its_outages(example_month: None, work_dir: Path, settings: Any) -> None:
    """§8.5 under `always`: Alpha/Polkadot D = 12600 s, credit 224/93 → 2.41, billed 509.59;
    Alpha/Kusama D = 25200 s, credit 112/93 → 1.20, billed 126.80; Alpha 640 / 3.61 / 636.39.
    beta/Polkadot D = 180 s, credit 59/930 → 0.06, billed 943.94. Overview 1584.00 / 3.67 / 1580.33."""
    settings.SLA_CREDIT_POLICY = "always"
    statement_generate_month(month="2025-03", now=APRIL_1)

    alpha, beta = issued()["Alpha"], issued()["beta"]
    assert (alpha.base_total, alpha.credit_total, alpha.billed_total) == (
        Decimal("640.00"),
        Decimal("3.61"),
        Decimal("636.39"),
    )
    assert (beta.base_total, beta.credit_total, beta.billed_total) == (
        Decimal("944.00"),
        Decimal("0.06"),
        Decimal("943.94"),
    )
    kusama = alpha.lines.get(service_key="Kusama")
    assert (kusama.downtime_seconds, kusama.credit, kusama.meets_sla) == (25200, Decimal("1.20"), False)
    assert kusama.uptime_percent == Decimal("99.059139")  # 2,653,200 / 2,678,400 = 0.990591397… floored
    assert [o["id"] for o in kusama.counted_outages()] == [1, 2, 4]
    ongoing = alpha.outages_by_id()[4]
    assert ongoing["status"] == "ongoing" and ongoing["counted_seconds"] == 14400
    assert ongoing["counted_end"] == "2025-04-01T00:00:00Z" and ongoing["end_time"] is None
    polkadot = alpha.lines.get(service_key="Polkadot")
    assert (polkadot.service_outage_ids, polkadot.outage_ids) == ([3], [1, 3])
    overview = MonthlyOverview.objects.get(month="2025-03-01")
    assert (overview.base_total, overview.credit_total, overview.billed_total) == (
        Decimal("1584.00"),
        Decimal("3.67"),
        Decimal("1580.33"),
    )
    assert alpha.credit_policy == "always"


def test_it_applies_the_default_below_threshold_policy(example_month: None) -> None:
    """beta/Polkadot meets the SLA (180 s × 10000 ≤ 2,678,400 s): no credit under the default
    policy, billed 944.00; Alpha's lines miss it and are credited as under `always`."""
    statement_generate_month(month="2025-03", now=APRIL_1)
    assert issued()["beta"].credit_total == Decimal("0.00")
    assert issued()["Alpha"].credit_total == Decimal("3.61")
    assert issued()["Alpha"].credit_policy == "below_threshold"


def test_it_writes_json_and_csv_companions_in_the_month_folder(example_month: None, work_dir: Path) -> None:
    statement_generate_month(month="2025-03", now=APRIL_1)
    alpha = issued()["Alpha"]
    folder = work_dir / "tmp" / "2025-03"
    assert alpha.json_path == str(folder / "2025_03-IBP-Service_Alpha.json")
    assert alpha.pdf_path == ""  # the default renderer writes no PDF
    document = json.loads(Path(alpha.json_path).read_text())
    assert document["number"] == alpha.number and document["totals"]["billed"] == "636.39"
    assert [line["service_key"] for line in document["lines"]] == ["Polkadot", "Kusama"]
    csv_rows = Path(alpha.csv_path).read_text().splitlines()
    assert csv_rows[0].startswith("number,revision,month,member,service")
    assert csv_rows[-1].split(",")[4] == "TOTAL" and csv_rows[-1].endswith(",3.61,636.39")
    assert (folder / "2025_03-Monthly_Overview.json").exists()
    assert (folder / "2025_03-Monthly_Overview.csv").exists()


# --- config in force ---------------------------------------------------------------------------


def test_it_bills_a_month_with_the_config_in_force_at_its_end(
    snapshot_applied: SnapshotFactory, work_dir: Path
) -> None:
    """Snapshot A (Europe cores $10) applied Feb 1; snapshot B (Europe cores $20) applied Apr 10.
    March is billed after B with A: Alpha/Kusama 2×10 + 8 + 50 + 50 = 128. April uses B:
    2×20 + 8 + 50 + 50 = 148, and Polkadot 2 × (4×20 + 16 + 100 + 100) = 592."""
    first = snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    dearer = {**PRICING_JSON, "Europe": {**PRICING_JSON["Europe"], "cores": 20}}
    second = snapshot_applied(example_files(pricing=dearer), applied_at=utc(2025, 4, 10))

    statement_generate_month(month="2025-03", now=utc(2025, 5, 2))
    statement_generate_month(month="2025-04", now=utc(2025, 5, 2))

    march, april = issued("2025-03")["Alpha"], issued("2025-04")["Alpha"]
    assert march.config_snapshot_id == first.pk and not march.config_postdates_month
    assert march.lines.get(service_key="Kusama").base == Decimal("128.00")
    assert april.config_snapshot_id == second.pk
    assert april.lines.get(service_key="Kusama").base == Decimal("148.00")
    assert april.lines.get(service_key="Polkadot").base == Decimal("592.00")


def test_it_flags_a_statement_whose_config_postdates_the_month(
    snapshot_applied: SnapshotFactory, work_dir: Path
) -> None:
    """Only a snapshot from Apr 10 exists (a fresh install): March uses it and says so."""
    snapshot = snapshot_applied(example_files(), applied_at=utc(2025, 4, 10))
    result = statement_generate_month(month="2025-03", now=utc(2025, 4, 11))
    assert result.config_postdates_month
    assert issued()["Alpha"].config_snapshot_id == snapshot.pk
    assert issued()["Alpha"].config_postdates_month
    assert MonthlyOverview.objects.get(month="2025-03-01").config_postdates_month


def test_it_bills_the_config_in_force_when_synced_with_config_sync(
    work_dir: Path, ibp_config_dir: Path, tmp_path: Path
) -> None:
    """The same rule with snapshots written by members.services.config_sync: the real config synced
    on Mar 5, then the 2026-01-18 config (12 members, new prices) synced on Apr 3. March is billed
    with the first: 5 statements, $75,412.10; a later month with the second (Stake Plus 32 lines,
    $25,703.18)."""
    from members.config_files import MEMBERS, SERVICES
    from members.services import config_sync

    def urls(directory: Path) -> dict[str, str]:
        return {
            MEMBERS: str(directory / "members_professional.json"),
            SERVICES: str(directory / "services_rpc.json"),
            PRICING: str(directory / "services_rpc_iaaspricing.json"),
        }

    assert config_sync(urls=urls(ibp_config_dir), now=utc(2025, 3, 5)).status == "applied"
    assert config_sync(urls=urls(ibp_config_dir / "2026-01-18"), now=utc(2025, 4, 3)).status == "applied"
    march = statement_generate_month(month="2025-03", now=utc(2025, 5, 1, 0, 5))
    april = statement_generate_month(month="2025-04", now=utc(2025, 5, 1, 0, 5))
    assert len(march.statements) == 5 and march.base == Decimal("75412.10")
    assert issued("2025-04")["Stake Plus"].base_total == Decimal("25703.18")
    assert issued("2025-04")["Stake Plus"].service_count == 32
    assert len(april.statements) == 12


# --- the SLA edge and month boundaries, from real outage rows --------------------------------------


@pytest.mark.parametrize(
    ("policy", "alpha", "beta"),
    [
        # Alpha: 259 s meets the SLA. beta: 260 s misses it.
        ("below_threshold", ("0.00", "640.00"), ("0.09", "943.91")),
        ("always", ("0.06", "639.94"), ("0.09", "943.91")),  # Alpha 512 → 0.05, 128 → 0.01
        ("tiered", ("0.00", "640.00"), ("94.40", "849.60")),  # beta: 99.989969 % → the 99.9 tier, 10 %
    ],
)
def test_it_bills_the_sla_edge_of_a_30_day_month_from_outage_rows(
    policy: str,
    alpha: tuple[str, str],
    beta: tuple[str, str],
    snapshot_applied: SnapshotFactory,
    work_dir: Path,
    settings: Any,
) -> None:
    """April 2025 has 30 days = 2,592,000 s; the SLA is met when downtime × 10,000 ≤ that.
    A 259 s site outage of Alpha Nodes: 2,590,000 ≤ 2,592,000, met, uptime 99.990007 %.
    A 260 s site outage of Beta Hosting: 2,600,000 > 2,592,000, missed, uptime 99.989969 %,
    credit 944 × 260 / 2,592,000 = 0.0947 → 0.09 (below_threshold, always) or 10 % = 94.40
    (tiered: 99.9 ≤ 99.989969 < 99.99). Under `always` Alpha's 259 s are credited too:
    512 × 259 / 2,592,000 = 0.0512 → 0.05 and 128 × 259 / 2,592,000 = 0.0128 → 0.01."""
    settings.SLA_CREDIT_POLICY = policy
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    outage_create(member_name="Alpha Nodes", start_time=utc(2025, 4, 9, 8), end_time=utc(2025, 4, 9, 8, 4, 19))
    outage_create(member_name="Beta Hosting", start_time=utc(2025, 4, 9, 8), end_time=utc(2025, 4, 9, 8, 4, 20))
    statement_generate_month(month="2025-04", now=utc(2025, 5, 1, 0, 5))

    statements = issued("2025-04")
    lines = {(s.member_key, line.service_key): line for s in statements.values() for line in s.lines.all()}
    assert {key: (line.downtime_seconds, line.meets_sla, str(line.uptime_percent)) for key, line in lines.items()} == {
        ("Alpha", "Kusama"): (259, True, "99.990007"),
        ("Alpha", "Polkadot"): (259, True, "99.990007"),
        ("beta", "Polkadot"): (260, False, "99.989969"),
    }
    assert all(line.month_seconds == 2_592_000 for line in lines.values())
    for key, (credit, billed) in (("Alpha", alpha), ("beta", beta)):
        assert (str(statements[key].credit_total), str(statements[key].billed_total)) == (credit, billed)
    assert (statements["Alpha"].meets_sla, statements["beta"].meets_sla) == (True, False)


def test_it_splits_an_outage_across_the_month_boundary_from_one_row(
    snapshot_applied: SnapshotFactory, work_dir: Path
) -> None:
    """One site outage row of Beta Hosting, Jan 31 22:00 → Feb 1 03:00 UTC. January counts
    2 h = 7,200 s of it (of 2,678,400): credit 944 × 7,200 / 2,678,400 = 2.5376… → 2.54; February
    3 h = 10,800 s (of 2,419,200): 944 × 10,800 / 2,419,200 = 4.2142… → 4.21. Each statement
    lists the row once, with the part it counts."""
    snapshot_applied(example_files(), applied_at=utc(2024, 12, 1))
    row = outage_create(member_name="Beta Hosting", start_time=utc(2025, 1, 31, 22), end_time=utc(2025, 2, 1, 3))
    statement_generate_month(month="2025-01", now=utc(2025, 3, 1))
    statement_generate_month(month="2025-02", now=utc(2025, 3, 1))

    january, february = issued("2025-01")["beta"], issued("2025-02")["beta"]
    assert [
        (s.downtime_seconds, s.month_seconds, str(s.credit_total), str(s.billed_total)) for s in (january, february)
    ] == [
        (7200, 2_678_400, "2.54", "941.46"),
        (10800, 2_419_200, "4.21", "939.79"),
    ]
    assert [(o["id"], o["counted_start"], o["counted_end"], o["counted_seconds"]) for o in january.outages] == [
        (row.id, "2025-01-31T22:00:00Z", "2025-02-01T00:00:00Z", 7200)
    ]
    assert [(o["id"], o["counted_start"], o["counted_end"], o["counted_seconds"]) for o in february.outages] == [
        (row.id, "2025-02-01T00:00:00Z", "2025-02-01T03:00:00Z", 10800)
    ]


# --- idempotency and revisions ---------------------------------------------------------------------


def test_it_writes_nothing_when_run_twice_and_a_revision_after_a_late_outage(
    example_month: None, work_dir: Path
) -> None:
    """Run 1 issues revision 1. Run 2 (same inputs) writes nothing. A late site outage for
    Beta Hosting (Mar 20 10:00–11:00, 3600 s > 267 s: SLA missed) then gives beta revision 2 with
    the same number, superseding revision 1: credit 944 × (180 s ∪ 3600 s = 3780 s) / 2,678,400 =
    1.3322… → 1.33, billed 942.67. Alpha is unchanged. Revision 1's files are kept."""
    first = statement_generate_month(month="2025-03", now=APRIL_1)
    assert [o.action for o in first.statements] == ["created", "created"]
    beta_1 = issued()["beta"]
    files_before = sorted(p.name for p in (work_dir / "tmp" / "2025-03").iterdir())

    second = statement_generate_month(month="2025-03", now=APRIL_1 + timedelta(hours=1))
    assert [o.action for o in second.statements] == ["unchanged", "unchanged"]
    assert second.overview_action == "unchanged" and second.files_written == ()
    assert Statement.objects.count() == 2 and MonthlyOverview.objects.count() == 1
    assert sorted(p.name for p in (work_dir / "tmp" / "2025-03").iterdir()) == files_before

    outage_create(member_name="Beta Hosting", start_time=utc(2025, 3, 20, 10), end_time=utc(2025, 3, 20, 11))
    third = statement_generate_month(month="2025-03", now=utc(2025, 4, 9))
    assert {o.member_key: o.action for o in third.statements} == {"Alpha": "unchanged", "beta": "revised"}
    beta_2 = issued()["beta"]
    assert (beta_2.number, beta_2.revision, beta_2.supersedes_id) == (beta_1.number, 2, beta_1.pk)
    assert (beta_2.credit_total, beta_2.billed_total) == (Decimal("1.33"), Decimal("942.67"))
    beta_1.refresh_from_db()
    assert beta_1.status == DocumentStatus.SUPERSEDED and beta_1.credit_total == Decimal("0.00")
    # The old files are kept, moved aside; the current revision has the plain name.
    assert Path(beta_1.json_path).exists() and "superseded" in beta_1.json_path
    assert beta_1.json_path.endswith("2025_03-IBP-Service_beta-r1.json")
    assert json.loads(Path(beta_2.json_path).read_text())["revision"] == 2
    overviews = MonthlyOverview.objects.filter(month="2025-03-01").order_by("revision")
    assert [(o.revision, o.status) for o in overviews] == [(1, "superseded"), (2, "issued")]
    assert overviews[1].credit_total == Decimal("3.61") + Decimal("1.33")


def test_it_forces_a_new_revision_on_request(example_month: None) -> None:
    statement_generate_month(month="2025-03", now=APRIL_1)
    result = statement_generate_month(month="2025-03", now=APRIL_1, force=True)
    assert [o.action for o in result.statements] == ["revised", "revised"]
    assert sorted(Statement.objects.values_list("revision", "status")) == [
        (1, "superseded"),
        (1, "superseded"),
        (2, "issued"),
        (2, "issued"),
    ]


def test_it_rewrites_missing_files_on_a_rerun(example_month: None) -> None:
    """A crash after the commit but before the files: the next run writes them, no new revision."""
    statement_generate_month(month="2025-03", now=APRIL_1)
    alpha = issued()["Alpha"]
    Path(alpha.json_path).unlink()
    result = statement_generate_month(month="2025-03", now=APRIL_1)
    assert [o.action for o in result.statements] == ["unchanged", "unchanged"]
    assert Path(alpha.json_path).exists() and result.files_written == (alpha.json_path, alpha.csv_path)


# --- drafts, dry runs, members, bad input --------------------------------------------------------


def test_it_refuses_a_month_that_has_not_ended_unless_draft(example_month: None) -> None:
    with pytest.raises(MonthNotEnded, match="2025-03 has not ended"):
        statement_generate_month(month="2025-03", now=utc(2025, 3, 31, 23, 59))
    result = statement_generate_month(month="2025-03", now=utc(2025, 3, 31, 21), draft=True)
    assert [o.action for o in result.statements] == ["draft", "draft"]
    assert set(Statement.objects.values_list("status", "revision")) == {("draft", 0)}
    assert "/draft/" in issued_or_draft("Alpha").json_path
    # A second draft replaces the first; issuing the ended month removes the drafts.
    statement_generate_month(month="2025-03", now=utc(2025, 3, 31, 22), draft=True)
    assert Statement.objects.filter(status="draft").count() == 2
    statement_generate_month(month="2025-03", now=APRIL_1)
    assert sorted(Statement.objects.values_list("status", "revision")) == [("issued", 1), ("issued", 1)]
    assert not MonthlyOverview.objects.filter(status="draft").exists()


def issued_or_draft(member_key: str) -> Statement:
    return Statement.objects.get(member_key=member_key, month="2025-03-01")


def test_it_counts_an_ongoing_outage_up_to_the_frozen_now(snapshot_applied: SnapshotFactory, work_dir: Path) -> None:
    """Clock frozen at Mar 31 21:30; Alpha's Kusama endpoint has been down since 20:00 and is still
    open: a draft counts 1.5 h = 5400 s, never the 4 h to the month's end."""
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    outage_create(
        member_name="Alpha Nodes", check_type="3", endpoint="wss://kusama.dotters.network",
        domain_name="kusama.dotters.network", start_time=utc(2025, 3, 31, 20), end_time=None,
    )  # fmt: skip
    with time_machine.travel(utc(2025, 3, 31, 21, 30), tick=False):
        statement_generate_month(month="2025-03", draft=True)
    line = StatementLine.objects.get(statement__member_key="Alpha", service_key="Kusama")
    assert line.downtime_seconds == 5400
    assert line.statement.computed_at == utc(2025, 3, 31, 21, 30)


def test_it_writes_nothing_on_a_dry_run(example_month: None) -> None:
    result = statement_generate_month(month="2025-03", now=APRIL_1, dry_run=True)
    assert [(o.member_key, o.action, o.billed) for o in result.statements] == [
        ("Alpha", "dry-run", Decimal("636.39")),
        ("beta", "dry-run", Decimal("944.00")),
    ]
    assert not Statement.objects.exists() and not BillingRun.objects.exists()


def test_it_issues_one_member_by_key_or_name(example_month: None) -> None:
    """Only beta's statement. Alpha has none yet, so no overview: it would not be the sum of the
    issued statements (tests/billing/test_generate_invoices.py has the re-issue)."""
    result = statement_generate_month(month="2025-03", now=APRIL_1, member="Beta Hosting")
    assert [o.member_key for o in result.statements] == ["beta"]
    assert (result.overview_action, result.overview_stale_members) == ("stale", ("Alpha",))
    assert not MonthlyOverview.objects.exists()
    with pytest.raises(UnknownMember, match="no member 'Gamma'"):
        statement_generate_month(month="2025-03", now=APRIL_1, member="Gamma")


@pytest.mark.parametrize("month", ["2025-13", "March", "2025-3", ""])
def test_it_rejects_a_bad_month(example_month: None, month: str) -> None:
    with pytest.raises(BillingError, match="month"):
        statement_generate_month(month=month, now=APRIL_1)


def test_it_reports_a_missing_config_clearly(work_dir: Path) -> None:
    with pytest.raises(BillingError, match="sync_config"):
        statement_generate_month(month="2025-03", now=APRIL_1)


def test_it_reports_an_unpriced_member_as_a_problem(snapshot_applied: SnapshotFactory, work_dir: Path) -> None:
    from tests.billing.worked_example import MEMBERS_JSON

    members = {
        **MEMBERS_JSON,
        "Gamma": {**MEMBERS_JSON["beta"], "Details": {"Name": "G"}, "Location": {"Region": "Mars"}},
    }
    snapshot_applied(example_files(members=members), applied_at=utc(2025, 2, 1))
    result = statement_generate_month(month="2025-03", now=APRIL_1)
    assert result.problems == ("member 'Gamma': region 'Mars' has no price, so it cannot be billed",)
    overview = MonthlyOverview.objects.get()
    assert [m["status"] for m in overview.members if m["key"] == "Gamma"] == ["unpriced"]
    assert overview.problems == list(result.problems)


# --- the lock ----------------------------------------------------------------------------------


def test_it_lets_one_holder_take_a_month_lock_and_takes_over_a_stale_one(settings: Any) -> None:
    month = utc(2025, 3, 1).date()
    token = billing_run_lock(month=month)
    with pytest.raises(BillingLocked, match="another run of 2025-03 is in progress"):
        billing_run_lock(month=month)
    billing_run_unlock(month=month, token=token, outcome="changed", summary={}, generated=True)
    again = billing_run_lock(month=month)
    # A holder that died an hour ago no longer blocks the month.
    BillingRun.objects.filter(month=month).update(locked_at=utc(2020, 1, 1))
    assert billing_run_lock(month=month) not in ("", again)
    run = BillingRun.objects.get(month=month)
    assert run.generated_at is not None and run.runs == 1


def test_it_holds_the_lock_while_it_reads_the_inputs(example_month: None) -> None:
    """The stale-read race, made deterministic with the progress callback, which a run calls
    once its inputs are read and before it computes (run A). At that moment a late outage for
    Beta Hosting (Mar 20 10:00–11:00) is committed and run B starts. B must be refused: had it
    run, it would issue beta revision 2 with the outage, and A, finishing with the rows it had
    read, would write revision 3 without it, superseding the correct one. So A writes nothing,
    and the next run issues revision 2: credit 944 × 3780 s / 2,678,400 = 1.3322… → 1.33."""
    statement_generate_month(month="2025-03", now=APRIL_1)
    beta_1 = issued()["beta"]
    during_a: list[str] = []

    def progress(done: int, total: int, label: str) -> None:
        if label != "computing" or during_a:
            return
        outage_create(member_name="Beta Hosting", start_time=utc(2025, 3, 20, 10), end_time=utc(2025, 3, 20, 11))
        try:
            result = statement_generate_month(month="2025-03", now=APRIL_1 + timedelta(hours=1))
            during_a.append(",".join(o.action for o in result.statements))
        except BillingLocked:
            during_a.append("locked")

    run_a = statement_generate_month(month="2025-03", now=APRIL_1 + timedelta(hours=1), progress=progress)
    assert during_a == ["locked"]
    assert [o.action for o in run_a.statements] == ["unchanged", "unchanged"]
    assert list(Statement.objects.filter(member_key="beta").values_list("revision", "status")) == [(1, "issued")]

    statement_generate_month(month="2025-03", now=APRIL_1 + timedelta(hours=2))
    beta_2 = issued()["beta"]
    assert (beta_2.revision, beta_2.supersedes_id, beta_2.credit_total) == (2, beta_1.pk, Decimal("1.33"))


@pytest.mark.mysql_only
@pytest.mark.django_db(transaction=True)
def test_it_leaves_one_revision_after_two_concurrent_runs(snapshot_applied: SnapshotFactory, work_dir: Path) -> None:
    """Two threads, each with its own MariaDB connection, start the same month at the same moment.
    One issues revision 1; the other is refused by the lock or finds nothing changed."""
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    outage_create(member_name="Alpha Nodes", start_time=utc(2025, 3, 2), end_time=utc(2025, 3, 2, 1))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run() -> None:
        try:
            barrier.wait()
            result = statement_generate_month(month="2025-03", now=APRIL_1)
            outcomes.append(",".join(o.action for o in result.statements))
        except BillingLocked:
            outcomes.append("locked")
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) in (["created,created", "locked"], ["created,created", "unchanged,unchanged"])
    assert sorted(Statement.objects.values_list("member_key", "revision", "status")) == [
        ("Alpha", 1, "issued"),
        ("beta", 1, "issued"),
    ]
    assert MonthlyOverview.objects.count() == 1
    assert BillingRun.objects.get().lock_token == ""


# --- start-up catch-up and the daily cost summary ----------------------------------------------------


def test_it_catches_up_the_previous_month_once(example_month: None) -> None:
    """At start-up on May 3, April has no statements: it is issued. A second start does nothing."""
    result = statement_catch_up(now=utc(2025, 5, 3))
    assert result is not None and result.month == "2025-04"
    assert Statement.objects.filter(month="2025-04-01").count() == 2
    assert statement_catch_up(now=utc(2025, 5, 3, 1)) is None
    assert BillingRun.objects.get(month="2025-04-01").generated_at is not None
    assert not Statement.objects.filter(month="2025-03-01").exists()  # older months only by hand


def test_it_writes_the_daily_cost_summary(
    snapshot_applied: SnapshotFactory, work_dir: Path, ibp_config_dir: Path
) -> None:
    """Costs per service per member from the config in force: active members only, $75,412.10;
    Polkadot: Stake Plus 3457.21, Amforc and Turboflakes 3512.21, Gatotech and Dwellir 4469.21."""
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))
    result = cost_summary_generate(now=utc(2025, 6, 7, 0, 5))
    assert result.json_path == str(work_dir / "tmp" / "service_cost_20250607.json")
    assert result.pdf_path == ""
    document = json.loads(Path(result.json_path).read_text())
    assert document["total"] == "75412.10"
    assert document["inactive_members"] == ["RadiumBlock", "Rotko Networks"]
    polkadot = next(s for s in document["services"] if s["key"] == "Polkadot")
    assert polkadot["members"] == {
        "Amforc": "3512.21",
        "Dwellir": "4469.21",
        "Gatotech": "4469.21",
        "Stake Plus": "3457.21",
        "Turboflakes": "3512.21",
    }
    assert polkadot["total"] == "19420.05"


def test_it_runs_one_cost_summary_of_a_day_at_a_time(
    snapshot_applied: SnapshotFactory, work_dir: Path, settings: Any
) -> None:
    """While the day's summary is being written (here: while its PDF renders), a second run of
    the same day, the scheduled task or `generate_cost_summary`, is refused by the day's lock
    before it reads anything; the task reports "locked". The first run completes, releases
    the lock and counts one run; a later run of the day goes ahead."""
    snapshot_applied(example_files(), applied_at=utc(2025, 1, 1))
    settings.BILLING_PDF_RENDERER = "tests.billing.test_services.SecondRunRenderer"
    SecondRunRenderer.during.clear()
    with time_machine.travel(utc(2025, 6, 7, 0, 5), tick=False):
        result = cost_summary_generate()
    assert SecondRunRenderer.during == [
        "refused: another run of the cost summary of 2025-06-07 is in progress",
        "locked",
    ]
    assert Path(result.pdf_path).read_text() == "costs 1584.00"
    run = CostSummaryRun.objects.get(day="2025-06-07")
    assert (run.lock_token, run.runs, run.last_outcome) == ("", 1, "written")
    settings.BILLING_PDF_RENDERER = "tests.billing.test_services.FileRenderer"
    cost_summary_generate(now=utc(2025, 6, 7, 9))
    assert CostSummaryRun.objects.get(day="2025-06-07").runs == 2


# --- the renderer interface -----------------------------------------------------------------------


class FileRenderer:
    """A real renderer for the test: writes a one-line file where the PDF goes."""

    def render_statement(self, *, statement: Statement, path: Path) -> bool:
        path.write_text(f"statement {statement.number} r{statement.revision}")
        return True

    def render_overview(self, *, overview: MonthlyOverview, statements: Any, path: Path) -> bool:
        path.write_text(f"overview {overview.month_label} {len(statements)}")
        return True

    def render_cost_summary(self, *, summary: Any, path: Path) -> bool:
        path.write_text(f"costs {summary.total}")
        return True

    def mark_superseded(self, *, record: Any, path: Path) -> bool:
        return False


class SecondRunRenderer(FileRenderer):
    """Starts a second run of the day's cost summary from inside the first one's render."""

    during: ClassVar[list[str]] = []

    def render_cost_summary(self, *, summary: Any, path: Path) -> bool:
        if not self.during:
            try:
                cost_summary_generate(now=utc(2025, 6, 7, 0, 6))
                self.during.append("ran")
            except BillingLocked as exc:
                self.during.append(f"refused: {str(exc).split(' (')[0]}")
            self.during.append(cost_summary_daily_task())
        return super().render_cost_summary(summary=summary, path=path)


class BrokenRenderer(FileRenderer):
    def render_statement(self, *, statement: Statement, path: Path) -> bool:
        raise RuntimeError("font missing")


def test_it_renders_pdfs_through_the_configured_renderer(example_month: None, settings: Any, work_dir: Path) -> None:
    settings.BILLING_PDF_RENDERER = "tests.billing.test_services.FileRenderer"
    statement_generate_month(month="2025-03", now=APRIL_1)
    alpha = issued()["Alpha"]
    assert alpha.pdf_path == str(work_dir / "tmp" / "2025-03" / "2025_03-IBP-Service_Alpha.pdf")
    assert Path(alpha.pdf_path).read_text() == f"statement {alpha.number} r1"
    overview = MonthlyOverview.objects.get()
    assert Path(overview.pdf_path).name == "2025_03-Monthly_Overview.pdf"
    assert Path(overview.pdf_path).read_text() == "overview 2025-03 2"


def test_it_keeps_the_figures_when_the_renderer_fails(example_month: None, settings: Any) -> None:
    settings.BILLING_PDF_RENDERER = "tests.billing.test_services.BrokenRenderer"
    result = statement_generate_month(month="2025-03", now=APRIL_1)
    assert sorted(result.pdf_failures) == ["IBP-202503-0001: font missing", "IBP-202503-0002: font missing"]
    assert issued()["Alpha"].pdf_path == "" and issued()["Alpha"].billed_total == Decimal("636.39")
