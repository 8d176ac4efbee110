from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from collator.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "prefix"]
    fields = ["name", "is_active", "prefix", "created_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        token = None if change else obj.set_new_token()
        super().save_model(request, obj, form, change)
        if token is not None:
            # Only the hash is stored: this message is the one chance to copy the token.
            messages.warning(
                request,
                f"The new token for {obj.name} is: {token} — copy it now, it will not be shown again. "
                "Clients send it as 'Authorization: Bearer <token>'.",
            )
