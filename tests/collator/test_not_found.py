"""Unknown paths and CORS, as the Go service answered them (collator/not_found.py,
api-contract §1.3–1.4)."""

from __future__ import annotations

import pytest
from django.test import Client

from collator.api_urls import urlpatterns as api_routes

pytestmark = pytest.mark.django_db

ORIGIN = "https://dashboard.example"


@pytest.mark.parametrize("path", ["/api/nope", "/api/requests/countries", "/api", "/", "/api/members/stats/extra"])
def test_it_answers_an_unknown_path_with_a_plain_text_404_and_no_cors(client: Client, path: str) -> None:
    response = client.get(path, HTTP_ORIGIN=ORIGIN)

    assert response.status_code == 404
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content == b"404 page not found\n"
    assert "Access-Control-Allow-Origin" not in response


def test_it_answers_a_preflight_to_an_unknown_path_without_cors(client: Client) -> None:
    response = client.options("/api/nope", HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")

    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.parametrize("pattern", api_routes, ids=lambda p: p.name)
def test_it_sends_cors_headers_on_every_api_route(client: Client, pattern: object) -> None:
    """Each route's preflight is answered by the CORS layer (200, empty, with the headers),
    whatever the view would say to a GET."""
    path = "/" + pattern.pattern.regex.pattern.strip("^$").removesuffix("/?")  # type: ignore[attr-defined]

    response = client.options(path, HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Access-Control-Max-Age"] == "3600"


def test_it_keeps_the_admin_404_a_page_for_people(admin_client: Client) -> None:
    response = admin_client.get("/admin/no-such-app/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"404 page not found" not in response.content
