"""API tokens in the admin (DECISIONS 20). The billing endpoints' token checks are tested on the
real endpoints in tests/billing/test_api_auth.py."""

from __future__ import annotations

import re

from django.contrib.messages import get_messages
from django.test import Client

from collator.models import ApiToken, api_token_hash


def test_it_shows_a_new_token_once_and_stores_only_its_hash(admin_client: Client) -> None:
    response = admin_client.post("/admin/collator/apitoken/add/", {"name": "dashboard", "is_active": "on"})
    assert response.status_code == 302
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    match = re.search(r"The new token for dashboard is: (\S+) ", " ".join(shown))
    assert match is not None, shown
    secret = match.group(1)
    row = ApiToken.objects.get()
    assert row.token_hash == api_token_hash(secret)
    assert row.prefix == secret[:8]
    assert secret not in {row.name, row.prefix, row.token_hash}
    # Editing the row later never shows (or changes) the token again.
    response = admin_client.post(f"/admin/collator/apitoken/{row.pk}/change/", {"name": "dash", "is_active": "on"})
    assert response.status_code == 302
    assert ApiToken.objects.get().token_hash == api_token_hash(secret)
