"""`manage.py generate_invoices`: thin over statement_generate_month, a table with totals, clear errors."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command

from billing.models import DocumentStatus, MonthlyOverview, Statement
from billing.money import money_sum
from tests.billing.conftest import SnapshotFactory, outage_create, real_files
from tests.billing.worked_example import example_files, utc

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("generate_invoices", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def real_config(snapshot_applied: SnapshotFactory, work_dir: Path, ibp_config_dir: Path) -> None:
    snapshot_applied(real_files(ibp_config_dir), applied_at=utc(2025, 1, 1))


def test_it_prints_a_summary_table_with_totals_and_a_progress_bar(real_config: None) -> None:
    """Stake Plus down 1 h (site) in April (30 days = 2,592,000 s): all 22 lines miss the SLA and
    each is credited round(base / 720) (below_threshold): Paseo 660.56/720 = 0.917… → 0.92,
    Kusama 4628.82/720 = 6.4289… → 6.43, Polkadot 3457.21/720 = 4.8017… → 4.80, Hydration 0.99,
    … Σ of the 22 rounded credits = 18.92 (reports §10.4's 18.93 is the Go figure, rounded once
    from the unrounded total 13633.19/720 = 18.935), billed 13633.24 − 18.92 = 13614.32.
    Total base 75,412.10 over 5 members and 110 lines."""
    outage_create(member_name="Stake Plus", start_time=utc(2025, 4, 3, 10), end_time=utc(2025, 4, 3, 11))
    with time_machine.travel(utc(2025, 5, 1, 0, 5), tick=False):
        out, err = run("--month", "2025-04")
    lines = out.splitlines()
    assert lines[0] == f"2025-04 issued, config snapshot #{Statement.objects.first().config_snapshot_id}"
    stake = next(line for line in lines if line.startswith("Stake Plus"))
    assert stake.split()[-6:] == ["created", "22", "22", "13633.24", "18.92", "13614.32"]
    total = next(line for line in lines if line.startswith("TOTAL"))
    assert total.split() == ["TOTAL", "110", "22", "75412.10", "18.92", "75393.18"]
    assert "inactive (no statement, $0): RadiumBlock" in lines
    assert "overview: created (revision 1)" in lines
    assert "[##############################] 6/6 overview" in err

    with time_machine.travel(utc(2025, 5, 1, 1), tick=False):
        again, _ = run("--month", "2025-04")
    assert "unchanged" in again and "created" not in again
    assert Statement.objects.count() == 5


def test_it_runs_one_member_dry(real_config: None) -> None:
    with time_machine.travel(utc(2025, 5, 1, 0, 5), tick=False):
        out, _ = run("--month", "2025-04", "--member", "Stake Plus", "--dry-run")
    assert "2025-04 dry run" in out and "dry-run" in out and "13633.24" in out
    assert not Statement.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2025-4"], "month must be YYYY-MM"),
        (["--month", "2025-13"], "MM 01-12"),
        (["--month", "2025-04", "--member", "Nobody"], "no member 'Nobody'"),
        (["--month", "2025-05"], "2025-05 has not ended"),
        (["--month", "2025-06", "--draft"], "2025-06 has not started yet"),
    ],
)
def test_it_exits_non_zero_with_a_clear_message_on_bad_input(real_config: None, args: list[str], message: str) -> None:
    with time_machine.travel(utc(2025, 5, 10), tick=False), pytest.raises(CommandError, match=message):
        run(*args)


def test_it_requires_a_month(real_config: None) -> None:
    with pytest.raises(CommandError, match="--month"):
        run()


def test_it_writes_a_draft_for_the_current_month(snapshot_applied: SnapshotFactory, work_dir: Path) -> None:
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    with time_machine.travel(utc(2025, 3, 15), tick=False):
        out, _ = run("--month", "2025-03", "--draft")
    assert "2025-03 draft" in out and "DRAFT-202503-0001" in out
    assert set(Statement.objects.values_list("status", flat=True)) == {"draft"}


def test_it_reissues_the_overview_when_one_member_is_revised(snapshot_applied: SnapshotFactory, work_dir: Path) -> None:
    """The worked example's config, no outages: Alpha $640.00 and beta $944.00, overview
    $1,584.00. A late site outage for Beta Hosting (Mar 20 10:00–11:00, 3600 s, SLA missed)
    and `--member "Beta Hosting"`: beta revision 2 with credit 944 × 3600 / 2,678,400 =
    1.2688… → 1.27, billed 942.73; the overview is re-issued as revision 2, so its totals stay
    the sums of the issued statements: credit 1.27, billed 640.00 + 942.73 = 1,582.73."""
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    with time_machine.travel(utc(2025, 4, 1, 0, 5), tick=False):
        run("--month", "2025-03")
    outage_create(member_name="Beta Hosting", start_time=utc(2025, 3, 20, 10), end_time=utc(2025, 3, 20, 11))
    with time_machine.travel(utc(2025, 4, 3), tick=False):
        out, _ = run("--month", "2025-03", "--member", "Beta Hosting")

    beta = next(line for line in out.splitlines() if line.startswith("beta"))
    assert beta.split() == ["beta", "IBP-202503-0002", "2", "revised", "1", "1", "944.00", "1.27", "942.73"]
    assert "overview: revised (revision 2)" in out.splitlines() and "warning" not in out
    overview = MonthlyOverview.objects.get(month="2025-03-01", status=DocumentStatus.ISSUED)
    statements = Statement.objects.filter(month="2025-03-01", status=DocumentStatus.ISSUED)
    assert (overview.revision, overview.base_total, overview.credit_total, overview.billed_total) == (
        2,
        Decimal("1584.00"),
        Decimal("1.27"),
        Decimal("1582.73"),
    )
    assert overview.billed_total == money_sum(s.billed_total for s in statements)
    assert [(m["key"], m["credit"], m["billed"]) for m in overview.members] == [
        ("Alpha", "0.00", "640.00"),
        ("beta", "1.27", "942.73"),
    ]
    assert overview.supersedes.revision == 1 and Path(overview.json_path).exists()


def test_it_warns_when_it_cannot_reissue_the_overview(snapshot_applied: SnapshotFactory, work_dir: Path) -> None:
    """Late outages for both members, but only beta is re-issued: Alpha's statement is out of
    date too, so an overview re-issued now would not be the sum of the issued statements. It
    stays at revision 1, and the run says so and what to do."""
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    with time_machine.travel(utc(2025, 4, 1, 0, 5), tick=False):
        run("--month", "2025-03")
    outage_create(member_name="Beta Hosting", start_time=utc(2025, 3, 20, 10), end_time=utc(2025, 3, 20, 11))
    outage_create(member_name="Alpha Nodes", start_time=utc(2025, 3, 21, 10), end_time=utc(2025, 3, 21, 11))
    with time_machine.travel(utc(2025, 4, 3), tick=False):
        out, _ = run("--month", "2025-03", "--member", "beta")

    assert "overview: stale" in out.splitlines()
    assert (
        "warning: the overview was not re-issued, so its totals no longer match the statements: the statements "
        "of Alpha are out of date too; run generate_invoices --month 2025-03 without --member"
    ) in out.splitlines()
    assert list(MonthlyOverview.objects.values_list("revision", "status")) == [(1, "issued")]
    assert Statement.objects.get(member_key="beta", status=DocumentStatus.ISSUED).revision == 2
