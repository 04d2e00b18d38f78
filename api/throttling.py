"""One request budget per token (``API_RATE_LIMIT``), per user for sessions, per
address for calls without credentials. Counted in the "api" cache, which all
web processes share (settings: Redis when the broker is Redis, else files)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import caches
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from api.models import ApiToken


class ApiRateThrottle(SimpleRateThrottle):
    scope = "api"

    def __init__(self) -> None:
        self.cache = caches["api"]
        super().__init__()

    def get_rate(self) -> str:
        return str(settings.API_RATE_LIMIT)

    def get_cache_key(self, request: Request, view: Any) -> str:
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return f"api-throttle:{ident}"
