"""Bearer tokens for the billing endpoints (DECISIONS 20), on a stand-in billing view."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from collator.models import ApiToken, api_token_hash
from tests.collator.api_fixtures import api, get_json  # noqa: F401

pytestmark = pytest.mark.urls("tests.collator.billing_dummy_urls")
BILLING = "/api/billing/stand-in"


@pytest.fixture
def token(db: None) -> str:
    row = ApiToken(name="operator")
    secret = row.set_new_token()
    row.save()
    return secret


@pytest.fixture
def tokens_required(settings: object) -> None:
    settings.API_BILLING_REQUIRES_TOKEN = True  # type: ignore[attr-defined]


class TestTokensOff:
    def test_it_answers_without_a_token_by_default(self, api: Client) -> None:  # noqa: F811
        assert get_json(api, BILLING) == {"members": []}

    def test_it_ignores_a_stale_token(self, api: Client) -> None:  # noqa: F811
        response = api.get(BILLING, HTTP_AUTHORIZATION="Bearer not-a-token")
        assert response.status_code == 200


@pytest.mark.usefixtures("tokens_required")
class TestTokensOn:
    def test_it_answers_401_without_a_token(self, api: Client) -> None:  # noqa: F811
        response = api.get(BILLING)
        assert response.status_code == 401
        assert response.json() == {"error": "Authentication credentials were not provided."}
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'

    def test_it_answers_401_for_an_unknown_token(self, api: Client, token: str) -> None:  # noqa: F811
        response = api.get(BILLING, HTTP_AUTHORIZATION=f"Bearer {token}x")
        assert response.status_code == 401
        assert response.json() == {"error": "Invalid token"}

    def test_it_answers_200_with_a_token(self, api: Client, token: str) -> None:  # noqa: F811
        response = api.get(BILLING, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200
        assert response.json() == {"members": []}
        assert ApiToken.objects.get().last_used_at is not None

    def test_it_refuses_a_revoked_token(self, api: Client, token: str) -> None:  # noqa: F811
        ApiToken.objects.update(is_active=False)
        assert api.get(BILLING, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401

    def test_it_keeps_the_other_endpoints_public(self, api: Client) -> None:  # noqa: F811
        response = api.get("/api/members", HTTP_AUTHORIZATION="Bearer stale")
        assert response.status_code == 200


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
