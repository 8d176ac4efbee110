"""The statements admin: filters, and re-generating a month with a diff against the previous revision."""

from __future__ import annotations

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import Statement
from billing.services import statement_generate_month
from tests.billing.conftest import SnapshotFactory, outage_create
from tests.billing.worked_example import example_files, utc

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/billing/statement/"


@pytest.fixture
def staff_client(client: Client) -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.org", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def march_issued(snapshot_applied: SnapshotFactory, work_dir: object) -> None:
    """Example config; Alpha down 1 h (site) → misses the SLA; beta clean."""
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    outage_create(member_name="Alpha Nodes", start_time=utc(2025, 3, 2), end_time=utc(2025, 3, 2, 1))
    statement_generate_month(month="2025-03", now=utc(2025, 4, 1, 0, 5))


def test_it_filters_statements_by_month_member_status_and_sla(staff_client: Client, march_issued: None) -> None:
    response = staff_client.get(CHANGELIST, {"month": "2025-03-01", "status__exact": "issued", "meets_sla__exact": "0"})
    assert response.status_code == 200
    shown = [s.member_key for s in response.context["cl"].result_list]
    assert shown == ["Alpha"]
    response = staff_client.get(CHANGELIST, {"member": "beta"})
    assert [s.member_key for s in response.context["cl"].result_list] == ["beta"]


def test_it_regenerates_a_month_as_a_new_revision_and_shows_the_diff(staff_client: Client, march_issued: None) -> None:
    """A late 1-h site outage for Beta Hosting: beta/Polkadot 944 × 3600 / 2,678,400 = 1.2688… → 1.27
    credit, billed 942.73; the action issues revision 2 and lists the changed figures."""
    outage_create(member_name="Beta Hosting", start_time=utc(2025, 3, 20), end_time=utc(2025, 3, 20, 1))
    ids = [str(pk) for pk in Statement.objects.values_list("pk", flat=True)]
    with time_machine.travel(utc(2025, 4, 5), tick=False):
        response = staff_client.post(CHANGELIST, {"action": "regenerate_months", "_selected_action": ids})
    assert response.status_code == 200
    page = response.content.decode()
    assert "revised" in page and "unchanged" in page
    assert "total credit_total: 0.00 → 1.27" in page
    assert "Polkadot billed: 944.00 → 942.73" in page
    beta = Statement.objects.get(member_key="beta", status="issued")
    assert (beta.revision, beta.supersedes.revision) == (2, 1)


def test_it_reports_a_refused_regeneration(
    staff_client: Client, snapshot_applied: SnapshotFactory, work_dir: object
) -> None:
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    with time_machine.travel(utc(2025, 3, 20), tick=False):
        statement_generate_month(month="2025-03", draft=True)
        ids = [str(pk) for pk in Statement.objects.values_list("pk", flat=True)]
        response = staff_client.post(CHANGELIST, {"action": "regenerate_months", "_selected_action": ids}, follow=True)
    assert "2025-03 has not ended" in response.content.decode()
