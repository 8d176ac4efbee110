"""Optional bearer-token access to the billing endpoints (DECISIONS 20).

Every endpoint is public by default, because the dashboard cannot log in. With
`API_BILLING_REQUIRES_TOKEN` on, billing views (those using `BillingAccessMixin`) need
`Authorization: Bearer <token>` with a token made in the admin.

Other endpoints never look at the header: the dashboard sends whatever token its local
storage holds on *every* call, and a stale one must not break the public pages (it also
deletes its token on any 401).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from collator.models import ApiToken, api_token_hash

logger = logging.getLogger("collator.auth")

# last_used_at is informative; writing it on every request would put a write on a read path.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiTokenUser:
    """The caller behind a valid token; not a Django user (tokens grant API reads only)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True

    def __init__(self, token: ApiToken) -> None:
        self.token = token

    def __str__(self) -> str:
        return f"api-token:{self.token.prefix}"


class ApiTokenAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiTokenUser, ApiToken] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].decode("latin-1").lower() != self.keyword.lower():
            raise AuthenticationFailed("Authorization must be 'Bearer <token>'")
        if len(header) != 2:
            raise AuthenticationFailed("Authorization must be 'Bearer <token>'")
        try:
            presented = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token") from None
        token = ApiToken.objects.filter(token_hash=api_token_hash(presented), is_active=True).first()
        if token is None:
            logger.info("event=api_token_rejected path=%s", request.path)
            raise AuthenticationFailed("Invalid token")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return ApiTokenUser(token), token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with this challenge) rather than 403.
        return 'Bearer realm="api"'


def billing_requires_token() -> bool:
    return bool(getattr(settings, "API_BILLING_REQUIRES_TOKEN", False))


class BillingTokenRequired(BasePermission):
    message = "A bearer token is required for the billing endpoints"

    def has_permission(self, request: Request, view: Any) -> bool:
        return not billing_requires_token() or isinstance(request.auth, ApiToken)


class BillingAccessMixin:
    """Put first in a billing view's bases: token-protected when the setting is on, public otherwise.

    With the setting off no authenticator runs at all, so a stale dashboard token is ignored.
    """

    permission_classes = [BillingTokenRequired]

    def get_authenticators(self) -> list[BaseAuthentication]:
        return [ApiTokenAuthentication()] if billing_requires_token() else []
