"""The statements admin: filters, and re-generating a month with a diff against the previous revision."""

from __future__ import annotations

from pathlib import Path

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from billing.models import Statement
from billing.services import statement_generate_month
from tests.billing.conftest import SnapshotFactory, outage_create
from tests.billing.pdf_support import pdf_settings  # noqa: F401  (a fixture)
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


def _staff_with(client: Client, *codenames: str) -> Client:
    user = get_user_model().objects.create_user("viewer", "viewer@example.org", "pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="billing", codename__in=codenames))
    client.force_login(user)
    return client


def test_it_lets_only_users_with_the_regenerate_permission_issue_revisions(client: Client, march_issued: None) -> None:
    """A staff user who may only view statements neither sees nor can post the re-generate
    actions (a forced run used to issue a new revision for every member); given
    `regenerate_statement`, the same user can."""
    viewer = _staff_with(client, "view_statement")
    ids = [str(pk) for pk in Statement.objects.values_list("pk", flat=True)]

    form = viewer.get(CHANGELIST).context["action_form"]  # None: no action is offered at all
    actions = form.fields["action"].choices if form is not None else []
    assert [name for name, _ in actions if name.startswith("regenerate")] == []
    with time_machine.travel(utc(2025, 4, 5), tick=False):
        viewer.post(CHANGELIST, {"action": "regenerate_months_forced", "_selected_action": ids})
    assert sorted(Statement.objects.values_list("member_key", "revision")) == [("Alpha", 1), ("beta", 1)]

    user = get_user_model().objects.get(username="viewer")
    user.user_permissions.add(Permission.objects.get(codename="regenerate_statement"))
    user = get_user_model().objects.get(pk=user.pk)  # a fresh object: permissions are cached
    viewer.force_login(user)
    with time_machine.travel(utc(2025, 4, 5), tick=False):
        response = viewer.post(CHANGELIST, {"action": "regenerate_months_forced", "_selected_action": ids})
    assert response.status_code == 200
    assert sorted(Statement.objects.filter(status="issued").values_list("member_key", "revision")) == [
        ("Alpha", 2),
        ("beta", 2),
    ]


def test_it_serves_a_statement_pdf_only_to_users_who_may_view_statements(
    client: Client,
    pdf_settings: Path,  # noqa: F811  (the real renderer, so that the PDF exists)
    snapshot_applied: SnapshotFactory,
) -> None:
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    statement_generate_month(month="2025-03", now=utc(2025, 4, 1, 0, 5))
    statement = Statement.objects.get(member_key="Alpha")
    url = f"{CHANGELIST}{statement.pk}/pdf/"

    assert _staff_with(client).get(url).status_code == 403  # staff, no permission

    get_user_model().objects.get(username="viewer").user_permissions.add(
        Permission.objects.get(content_type__app_label="billing", codename="view_statement")
    )
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content).startswith(b"%PDF")
