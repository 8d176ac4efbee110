"""The project routes plus a stand-in billing view, until billing/api.py exists.

The stand-in uses exactly what the billing views will use (collator.auth.BillingAccessMixin).
"""

from __future__ import annotations

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response

from collator.api_common import PublicApiView
from collator.auth import BillingAccessMixin
from collator.urls import urlpatterns as project_urlpatterns


class BillingStandInView(BillingAccessMixin, PublicApiView):
    def get(self, request: Request) -> Response:
        return Response({"members": []})


urlpatterns = [*project_urlpatterns, path("api/billing/stand-in", BillingStandInView.as_view())]
