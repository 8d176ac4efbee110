"""Bearer tokens for the API endpoints that may be closed to the public (DECISIONS 20).

Only a SHA-256 hash of each token is stored: a leaked database does not leak usable
tokens. Tokens are 256-bit random strings, so a plain hash (no salt, no stretching) is
enough; their first characters are kept to tell them apart in the admin.
"""

from __future__ import annotations

import hashlib
import secrets

from django.db import models

TOKEN_PREFIX_LENGTH = 8


def api_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def api_token_generate() -> str:
    return secrets.token_urlsafe(32)


class ApiToken(models.Model):
    name = models.CharField(max_length=128, help_text="Who or what uses this token.")
    prefix = models.CharField(max_length=TOKEN_PREFIX_LENGTH, editable=False, help_text="The token's first characters.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True, help_text="Untick to revoke the token.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "api_token"
        ordering = ["name", "id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def set_new_token(self) -> str:
        """Give the row a fresh token and return it: the only time it is ever visible."""
        token = api_token_generate()
        self.prefix = token[:TOKEN_PREFIX_LENGTH]
        self.token_hash = api_token_hash(token)
        return token
