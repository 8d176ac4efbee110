"""Bearer tokens on the real billing endpoints (DECISIONS 20): off by default; with
API_BILLING_REQUIRES_TOKEN on, all four need `Authorization: Bearer <token>`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from collator.models import ApiToken
from tests.billing.api_support import billing_files, body_of  # noqa: F401
from tests.collator.api_fixtures import api  # noqa: F401

# Each endpoint with parameters that give a 200 on an empty database and folder.
ENDPOINTS = [
    ("/api/billing/breakdown", {"year": "2025", "month": "3"}),
    ("/api/billing/summary", {}),
    ("/api/billing/pdfs", {}),
]
DOWNLOAD = "/api/billing/pdfs/download"


@pytest.fixture
def token(db: None) -> str:
    row = ApiToken(name="operator")
    secret = row.set_new_token()
    row.save()
    return secret


@pytest.fixture
def tokens_required(settings: Any) -> None:
    settings.API_BILLING_REQUIRES_TOKEN = True


@pytest.fixture
def one_pdf(billing_files: Path) -> Path:  # noqa: F811
    folder = billing_files / "tmp" / "2025-03"
    folder.mkdir(parents=True)
    (folder / "2025_03-Monthly_Overview.pdf").write_bytes(b"%PDF-1.4 overview")
    return billing_files


DOWNLOAD_PARAMS = {"year": "2025", "month": "3", "type": "overview"}


@pytest.mark.usefixtures("billing_files")
class TestTokensOff:
    @pytest.mark.parametrize(("path", "params"), ENDPOINTS)
    def test_it_answers_without_a_token_by_default(self, api: Client, path: str, params: dict[str, str]) -> None:  # noqa: F811
        body_of(api, path, **params)

    @pytest.mark.parametrize(("path", "params"), ENDPOINTS)
    def test_it_ignores_a_stale_token(self, api: Client, path: str, params: dict[str, str]) -> None:  # noqa: F811
        """The dashboard sends whatever its local storage holds; with tokens off it must not matter."""
        assert api.get(path, params, HTTP_AUTHORIZATION="Bearer not-a-token").status_code == 200

    def test_it_downloads_without_a_token(self, api: Client, one_pdf: Path) -> None:  # noqa: F811
        response = api.get(DOWNLOAD, DOWNLOAD_PARAMS)
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == b"%PDF-1.4 overview"


@pytest.mark.usefixtures("tokens_required", "billing_files")
class TestTokensOn:
    @pytest.mark.parametrize(("path", "params"), [*ENDPOINTS, (DOWNLOAD, DOWNLOAD_PARAMS)])
    def test_it_answers_401_without_a_token(self, api: Client, path: str, params: dict[str, str]) -> None:  # noqa: F811
        response = api.get(path, params)
        assert response.status_code == 401
        assert response.json() == {"error": "Authentication credentials were not provided."}
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'

    @pytest.mark.parametrize(("path", "params"), [*ENDPOINTS, (DOWNLOAD, DOWNLOAD_PARAMS)])
    def test_it_answers_401_for_an_unknown_token(
        self,
        api: Client,  # noqa: F811
        token: str,
        path: str,
        params: dict[str, str],
    ) -> None:
        response = api.get(path, params, HTTP_AUTHORIZATION=f"Bearer {token}x")
        assert response.status_code == 401
        assert response.json() == {"error": "Invalid token"}

    @pytest.mark.parametrize(("path", "params"), ENDPOINTS)
    def test_it_answers_200_with_a_token(self, api: Client, token: str, path: str, params: dict[str, str]) -> None:  # noqa: F811
        response = api.get(path, params, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert ApiToken.objects.get().last_used_at is not None

    def test_it_downloads_with_a_token(self, api: Client, token: str, one_pdf: Path) -> None:  # noqa: F811
        response = api.get(DOWNLOAD, DOWNLOAD_PARAMS, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/pdf"
        assert b"".join(response.streaming_content) == b"%PDF-1.4 overview"

    def test_it_checks_the_token_before_the_parameters(self, api: Client) -> None:  # noqa: F811
        """Without a token, bad input is not even looked at: 401, not 400."""
        assert api.get("/api/billing/breakdown", {"month": "13"}).status_code == 401

    def test_it_refuses_a_revoked_token(self, api: Client, token: str) -> None:  # noqa: F811
        ApiToken.objects.update(is_active=False)
        assert api.get("/api/billing/summary", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401

    def test_it_keeps_the_other_endpoints_public(self, api: Client) -> None:  # noqa: F811
        assert api.get("/api/members", HTTP_AUTHORIZATION="Bearer stale").status_code == 200
        assert api.get("/api/requests/summary").status_code == 200
