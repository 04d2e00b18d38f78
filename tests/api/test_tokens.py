"""API tokens: hashed, shown once, revocable, scoped, rate-limited, logged."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid

import pytest
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from api import throttling, tokens
from api.models import ApiToken


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_only_the_sha256_of_the_secret_and_a_prefix_are_stored(alice):
    token, secret = tokens.token_create(alice, "backup script", ["read"])
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(stored.prefix) and len(stored.prefix) < 16
    assert len(secret) >= 40  # 32 random bytes, base64
    assert secret not in str(ApiToken.objects.filter(pk=token.pk).values().get())


def test_the_token_page_shows_a_new_secret_once(client, alice):
    client.force_login(alice)
    response = client.post(reverse("tokens"), {"name": "sync", "scopes": ["read", "upload"]})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = re.search(r'<code id="token-secret">([^<]+)</code>', response.content.decode()).group(1)
    token = ApiToken.objects.get(user=alice)
    assert token.digest == tokens.token_digest(secret) and token.scope_list == ["read", "upload"]
    again = client.get(reverse("tokens")).content.decode()
    assert secret not in again and token.prefix in again
    assert bearer(secret).get(reverse("api:documents")).status_code == 200


def test_the_token_page_refuses_the_admin_scope_for_a_normal_user(client, alice):
    client.force_login(alice)
    response = client.post(reverse("tokens"), {"name": "x", "scopes": ["admin"]})
    assert response.status_code == 200 and not ApiToken.objects.exists()
    with pytest.raises(ValidationError):
        tokens.token_create(alice, "x", ["admin"])


def test_a_revoked_token_stops_working_at_once(client, alice, bob):
    token, secret = tokens.token_create(alice, "x", ["read"])
    api = bearer(secret)
    assert api.get(reverse("api:documents")).status_code == 200
    client.force_login(bob)  # someone else's token: not found, and still working
    assert client.post(reverse("token_revoke", args=[token.pk])).status_code == 404
    assert api.get(reverse("api:documents")).status_code == 200
    client.force_login(alice)
    assert client.post(reverse("token_revoke", args=[token.pk])).status_code == 302
    assert api.get(reverse("api:documents")).status_code == 401


def test_unknown_and_malformed_tokens_are_401(db):
    for header in ("Bearer wa_nope", "Bearer", "Bearer a b", "Token wa_" + "x" * 200, "Bearer \xff"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        assert client.get(reverse("api:documents")).status_code == 401, header


def test_scopes_decide_what_a_token_may_do(alice, admin_user, api_as):
    from django.core.files.uploadedfile import SimpleUploadedFile

    read_only = api_as(alice, ["read"])

    def upload():
        return {"files": [SimpleUploadedFile("a.txt", b"a")], "owner_group": alice.groups.get().pk}

    assert read_only.post(reverse("api:documents"), upload(), format="multipart").status_code == 403
    upload_only = api_as(alice, ["upload"])
    assert upload_only.get(reverse("api:documents")).status_code == 403
    assert upload_only.post(reverse("api:documents"), upload(), format="multipart").status_code == 201
    # Mail sources: staff with the admin scope only.
    assert api_as(admin_user, ["read"]).get(reverse("api:sources")).status_code == 403
    assert api_as(admin_user, ["admin"]).get(reverse("api:sources")).status_code == 200


def test_an_admin_token_lapses_when_its_user_stops_being_staff(admin_user, api_as):
    client = api_as(admin_user, ["read", "admin"])
    admin_user.is_staff = False
    admin_user.save()
    assert client.get(reverse("api:sources")).status_code == 403
    assert client.get(reverse("api:documents")).status_code == 200


def test_the_session_of_the_products_pages_needs_csrf_for_writes(alice):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get(reverse("api:documents")).status_code == 200
    upload = {"files": [SimpleUploadedFile("a.txt", b"a")], "owner_group": alice.groups.get().pk}
    response = client.post(reverse("api:documents"), upload, format="multipart")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.mark.parametrize("backend", ["files", "redis"])
def test_429_after_the_limit_and_again_once_the_window_passed(settings, alice, bob, token_for, monkeypatch, backend):
    """Both cache backends the settings choose: files (no Redis) and Redis (production)."""
    if backend == "redis":
        settings.CACHES = {
            **settings.CACHES,
            "api": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": f"test-api-{uuid.uuid4().hex}",  # this test's own counts on the shared Redis
            },
        }
    settings.API_RATE_LIMIT = "3/min"
    now = [1_000_000.0]
    monkeypatch.setattr(throttling.ApiRateThrottle, "timer", lambda self: now[0])
    alices, bobs = bearer(token_for(alice)), bearer(token_for(bob))
    answers = [alices.get(reverse("api:documents")).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    assert type(caches["api"]).__name__ == {"files": "FileBasedCache", "redis": "RedisCache"}[backend]
    assert len(caches["api"].get(f"api-throttle:token-{ApiToken.objects.get(user=alice).pk}")) == 3
    assert bobs.get(reverse("api:documents")).status_code == 200  # a budget per token
    limited = alices.get(reverse("api:documents"))
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    now[0] += 61
    assert alices.get(reverse("api:documents")).status_code == 200


def test_every_call_is_logged_with_token_prefix_user_method_path_and_status(alice, token_for, caplog):
    secret = token_for(alice)
    with caplog.at_level(logging.INFO, logger="webadmin.api"):
        bearer(secret).get(reverse("api:document", args=[999]))
    (record,) = [r for r in caplog.records if r.name == "webadmin.api"]
    line = record.getMessage()
    assert f"token={secret[: tokens.PREFIX_CHARS]}" in line
    assert "user=alice" in line and "GET /api/v1/documents/999/ 404" in line
    assert secret not in line


def test_an_administrator_sees_and_revokes_tokens_in_the_admin_but_never_their_secret(client, alice, admin_user):
    token, secret = tokens.token_create(alice, "nightly export", ["read"])
    client.force_login(admin_user)
    listing = client.get(reverse("admin:api_apitoken_changelist")).content.decode()
    assert token.prefix in listing and "nightly export" in listing
    change = client.get(reverse("admin:api_apitoken_change", args=[token.pk])).content.decode()
    assert secret not in change and token.digest not in change
    assert client.get(reverse("admin:api_apitoken_add")).status_code == 403
    client.post(reverse("admin:api_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]})
    assert bearer(secret).get(reverse("api:documents")).status_code == 401
