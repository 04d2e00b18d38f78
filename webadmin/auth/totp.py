"""The TOTP second factor of password sign-ins (django-otp): one authenticator
app per user, enrolled with a QR code and confirmed with a first code, plus ten
one-time recovery codes shown once. Between the password and the code the user
is "pending": only the user's id and backend are kept in the session."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import segno
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

LOCAL_BACKEND = "django.contrib.auth.backends.ModelBackend"
PENDING_KEY = "auth_pending"
PENDING_SECONDS = 600  # the code must follow the password within ten minutes
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread


@dataclass(frozen=True)
class Pending:
    user: User
    backend: str
    must_enrol: bool


def confirmed_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def must_enrol(user: User, backend: str) -> bool:
    """Administrators of local accounts without an authenticator, when required."""
    return (
        settings.TOTP_REQUIRED_FOR_STAFF
        and user.is_staff
        and backend == LOCAL_BACKEND
        and confirmed_device(user) is None
    )


def needs_second_step(user: User, backend: str) -> bool:
    return confirmed_device(user) is not None or must_enrol(user, backend)


def start_pending(request: HttpRequest, user: User, backend: str) -> Pending:
    request.session.cycle_key()
    request.session[PENDING_KEY] = {"user": user.pk, "backend": backend, "at": time.time()}
    return Pending(user, backend, must_enrol(user, backend))


def pending(request: HttpRequest) -> Pending | None:
    state = request.session.get(PENDING_KEY)
    if not isinstance(state, dict) or time.time() - float(state.get("at", 0)) > PENDING_SECONDS:
        return None
    user_id = state.get("user")
    user = User.objects.filter(pk=user_id, is_active=True).first() if isinstance(user_id, int) else None
    backend = str(state.get("backend", ""))
    if user is None or backend not in settings.AUTHENTICATION_BACKENDS:
        return None
    return Pending(user, backend, must_enrol(user, backend))


def clear_pending(request: HttpRequest) -> None:
    request.session.pop(PENDING_KEY, None)


def verify(user: User, code: str) -> bool:
    """A current code of the user's authenticator, or one unused recovery code (used up)."""
    code = "".join(code.split()).lower()[:16]
    device = confirmed_device(user)
    if device is None or not code:
        return False
    if code.isdigit() and device.verify_token(code):
        return True
    recovery = StaticDevice.objects.filter(user=user, name="recovery").first()
    return recovery is not None and bool(recovery.verify_token(recovery_digest(code)))


def recovery_digest(code: str) -> str:
    """What is stored of a recovery code: the start of its SHA-256 (the code itself is shown once)."""
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def enrolment_device(user: User) -> TOTPDevice:
    """The user's unconfirmed authenticator (a fresh secret on first call)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)


def qr_svg(device: TOTPDevice) -> str:
    """The otpauth:// link as an inline SVG QR code (drawn here: no outside service)."""
    svg: str = segno.make(device.config_url, error="m").svg_inline(scale=5, title=gettext("Authenticator QR code"))
    return svg


def secret_text(device: TOTPDevice) -> str:
    """The secret in base32, in groups of four, for typing into an app by hand."""
    from base64 import b32encode

    text = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


@transaction.atomic
def confirm(device: TOTPDevice, code: str) -> list[str] | None:
    """The first code makes the authenticator count; answers the new recovery codes."""
    code = "".join(code.split())
    if not code.isdigit() or not device.verify_token(code):
        return None
    TOTPDevice.objects.filter(user=device.user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return new_recovery_codes(device.user)


def new_recovery_codes(user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    recovery = StaticDevice.objects.create(user=user, name="recovery")
    codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10)) for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=recovery, token=recovery_digest(code)) for code in codes])
    return codes


def remove(user: User) -> None:
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
