"""Creating, revoking and checking API tokens (the services of the api app).

A token is 32 random bytes, URL-safe base64 with a short marker in front; the
database keeps its SHA-256 (a lookup by digest: a random 256-bit secret needs
no slow hash) and the first characters as a prefix to recognise it by."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.models import AbstractBaseUser, AbstractUser, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from api.models import ApiToken, Scope

MARKER = "wa_"
PREFIX_CHARS = len(MARKER) + 8


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def allowed_scopes(user: AbstractBaseUser) -> set[str]:
    """What the user may put into a token: admin only for staff."""
    scopes = {Scope.READ.value, Scope.UPLOAD.value}
    if isinstance(user, AbstractUser) and user.is_staff:
        scopes.add(Scope.ADMIN.value)
    return scopes


@transaction.atomic
def token_create(user: User, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
    """A new token and its secret; the secret is not stored and cannot be shown again."""
    wanted = set(scopes)
    if not wanted:
        raise ValidationError(_("Choose at least one scope."))
    if not wanted <= {s.value for s in Scope}:
        raise ValidationError(_("Unknown scope."))
    if not wanted <= allowed_scopes(user):
        raise ValidationError(_("The admin scope needs a staff user."))
    secret = MARKER + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name.strip()[:100] or "API token",
        prefix=secret[:PREFIX_CHARS],
        digest=token_digest(secret),
        scopes=",".join(s.value for s in Scope if s.value in wanted),
    )
    return token, secret


def token_revoke(token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked__isnull=True).update(revoked=timezone.now())


def token_authenticate(secret: str) -> ApiToken | None:
    """The active token with this secret, of an active user, or None."""
    if not secret.startswith(MARKER) or len(secret) > 100:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=token_digest(secret), revoked__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    # At most one write a minute per token, not one per request.
    if token.last_used is None or (now - token.last_used).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now
    return token


def effective_scopes(token: ApiToken) -> set[str]:
    """The token's scopes that still hold: admin lapses when the user stops being staff."""
    return set(token.scope_list) & allowed_scopes(token.user)


def tokens_of_user(user: AbstractBaseUser) -> list[ApiToken]:
    return list(ApiToken.objects.filter(user_id=user.pk))


def token_get_for_user(user: AbstractBaseUser, token_id: int) -> ApiToken | None:
    return ApiToken.objects.filter(user_id=user.pk, pk=token_id).first()
