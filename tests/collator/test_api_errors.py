"""Unexpected failures of an API view: a logged 500 whose body and header carry the request
id of its log line (collator/api_common.py `api_exception_handler`, api-contract §1.6).

The failure is real: for the request, the database settings point at a closed port, so the
view's query fails to connect, as it would with MariaDB down.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.http import HttpResponse
from django.test import Client

pytestmark = [pytest.mark.mysql_only, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def database_unreachable() -> Iterator[None]:
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = "1"
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def _error_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "collator.api" and "event=api_error" in r.getMessage()]


@pytest.mark.usefixtures("database_unreachable")
def test_it_answers_a_failed_query_with_a_logged_500_that_carries_the_callers_request_id(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="collator.api"):
        response: HttpResponse = client.get("/api/downtime/current", HTTP_X_REQUEST_ID="dash-42.a_b")

    body: dict[str, Any] = response.json()
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert body == {"error": "Database error", "request_id": "dash-42.a_b"}
    assert response["X-Request-ID"] == "dash-42.a_b"
    (line,) = _error_lines(caplog)
    assert line.getMessage() == (
        "event=api_error request_id=dash-42.a_b method=GET path=/api/downtime/current error=OperationalError"
    )
    assert line.levelno == logging.ERROR
    # The traceback is logged: a failed connect (MariaDB Connector/C says 2002, libmysql 2003).
    assert line.exc_info is not None and line.exc_info[1].args[0] in {2002, 2003}


@pytest.mark.usefixtures("database_unreachable")
def test_it_makes_up_a_request_id_when_the_callers_is_not_a_sane_token(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """`a b<script>` is not echoed: a new 16-hex-digit id is made, the same in body, header and log."""
    with caplog.at_level(logging.ERROR, logger="collator.api"):
        response = client.get(
            "/api/downtime/events", {"start": "2025-03-01", "end": "2025-03-02"}, HTTP_X_REQUEST_ID="a b<script>"
        )

    body = response.json()
    request_id = body["request_id"]
    assert response.status_code == 500
    assert re.fullmatch(r"[0-9a-f]{16}", request_id)
    assert body == {"error": "Database error", "request_id": request_id}
    assert response["X-Request-ID"] == request_id
    (line,) = _error_lines(caplog)
    assert f"request_id={request_id} method=GET path=/api/downtime/events " in line.getMessage()
