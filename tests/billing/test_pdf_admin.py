"""The admin links each statement and overview to its PDF, served to staff only."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import MonthlyOverview, Statement
from billing.services import statement_generate_month
from tests.billing.conftest import SnapshotFactory, snapshot_applied  # noqa: F401
from tests.billing.pdf_support import pdf_settings, utc  # noqa: F401
from tests.billing.worked_example import example_files

pytestmark = pytest.mark.django_db


def test_it_links_statements_and_overviews_to_their_pdfs(
    client: Client,
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
) -> None:
    snapshot_applied(example_files(), applied_at=utc(2025, 2, 1))
    statement_generate_month(month="2025-03", now=utc(2025, 4, 1, 0, 5))
    alpha = Statement.objects.get(member_key="Alpha")
    overview = MonthlyOverview.objects.get()
    pdf_url = f"/admin/billing/statement/{alpha.pk}/pdf/"

    anonymous = client.get(pdf_url)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]

    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.org", "pw"))
    listing = client.get("/admin/billing/statement/").content.decode()
    assert pdf_url in listing and "2025_03-IBP-Service_Alpha.pdf" in listing
    detail = client.get(f"/admin/billing/statement/{alpha.pk}/change/").content.decode()
    assert pdf_url in detail
    response = client.get(pdf_url)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content) == Path(alpha.pdf_path).read_bytes()
    assert (
        f"/admin/billing/monthlyoverview/{overview.pk}/pdf/"
        in client.get("/admin/billing/monthlyoverview/").content.decode()
    )

    # A path outside the billing folder is never served.
    Statement.objects.filter(pk=alpha.pk).update(pdf_path="/etc/passwd")
    assert client.get(pdf_url).status_code == 404
