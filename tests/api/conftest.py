"""Tokens for the personas, and an API client that sends them."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from api import tokens


@pytest.fixture
def token_for():
    def make(user, scopes=("read", "upload"), name="script") -> str:
        return tokens.token_create(user, name, list(scopes))[1]

    return make


@pytest.fixture
def api_as(token_for):
    """An API client that authenticates with a fresh token of ``user``."""

    def make(user, scopes=("read", "upload")) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user, scopes)}")
        return client

    return make


@pytest.fixture(autouse=True)
def fresh_rate_limit_counts(settings, tmp_path):
    """Each test counts its requests in a cache of its own (files, as without Redis)."""
    settings.CACHES = {
        **settings.CACHES,
        "api": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path / "c")},
    }
