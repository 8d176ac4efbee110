"""Unknown paths answer as the Go service did (api-contract §1.3).

- A path that is no route gets a plain-text `404 page not found`, not Django's HTML page,
  except under the admin, whose pages are for people.
- CORS headers go only on the API's routes, never on an unknown path. django-cors-headers
  decides by a URL regex or by its `check_request_enabled` signal; the regex is set to match
  nothing, and the signal asks the URL resolver, so a new route is covered without a regex
  to keep in step.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.urls import Resolver404, resolve
from django.views import defaults

NOT_FOUND_BODY = "404 page not found\n"
HTML_PREFIXES = ("/admin/", "/static/")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's `handler404`: Go's `http.NotFound` body outside the admin."""
    if request.path.startswith(HTML_PREFIXES):
        return defaults.page_not_found(request, exception)
    return HttpResponseNotFound(NOT_FOUND_BODY, content_type="text/plain; charset=utf-8")


def cors_enabled_for_api_route(sender: Any, request: HttpRequest, **kwargs: Any) -> bool:
    """The `check_request_enabled` receiver: CORS for every named `api-…` route."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return False
    return bool(match.url_name and match.url_name.startswith("api-"))
