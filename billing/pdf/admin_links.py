"""Admin: a read-only link from each statement and overview to its PDF, served to staff only.

The PDF is served from the path stored on the record, and only from inside the billing
folder ({WorkDir}/tmp), so a record can never be used to read another file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from billing.rendering import billing_dir


def pdf_file(record: Any) -> Path | None:
    """The record's PDF if it exists inside the billing folder."""
    if not record.pdf_path:
        return None
    candidate = Path(record.pdf_path).resolve()
    if not candidate.is_relative_to(billing_dir().resolve()) or not candidate.is_file():
        return None
    return candidate


class PdfLinkAdminMixin:
    """Adds `pdf_link` (list and detail) and the `<pk>/pdf/` view to a ModelAdmin."""

    model: Any
    admin_site: admin.AdminSite

    @admin.display(description="PDF")
    def pdf_link(self, obj: Any) -> str:
        found = pdf_file(obj)
        if found is None:
            return "–"
        url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_pdf", args=[obj.pk])
        return format_html('<a href="{}" target="_blank">{}</a>', url, found.name)

    def pdf_view(self, request: HttpRequest, object_id: str) -> FileResponse:
        record = self.model.objects.filter(pk=object_id).first()
        # admin_view only checks that the user is staff; the PDF is the record's content.
        if not self.has_view_permission(request, record):  # type: ignore[attr-defined]
            raise PermissionDenied
        found = pdf_file(record) if record is not None else None
        if found is None:
            raise Http404("no PDF for this record")
        return FileResponse(found.open("rb"), content_type="application/pdf", filename=found.name)

    def get_urls(self) -> list[URLPattern]:
        meta = self.model._meta
        own = [
            path(
                "<path:object_id>/pdf/",
                self.admin_site.admin_view(self.pdf_view),
                name=f"{meta.app_label}_{meta.model_name}_pdf",
            )
        ]
        return own + super().get_urls()  # type: ignore[misc]
