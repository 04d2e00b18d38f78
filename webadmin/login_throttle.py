"""Login throttling with django-axes: the few hooks its settings name.

Axes counts failed logins per account and per client address (each on its own)
and locks either out at ``AXES_FAILURE_LIMIT``. Here: the cool-off grows with
each lockout of the last day, usernames are counted case-insensitively (MariaDB
compares them so), and the lockout answer is the login page with one message —
the same for every username, known or not, and whatever password was given.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.models import AccessFailureLog
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Q
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

log = logging.getLogger("webadmin.security")

LOCKOUT_MESSAGE = _(
    "Too many failed logins. Logging in is blocked for a while; try again later "
    "or ask an administrator to lift the lock."
)
LOCKOUT_HISTORY = timedelta(days=1)


class ThrottlingBackend(AxesStandaloneBackend):  # type: ignore[misc]  # axes ships no type hints
    """Axes' check, first in AUTHENTICATION_BACKENDS: a locked-out account or
    address is refused before any password is looked at.

    ``authenticate()`` without a request (the test client's ``login()``, shell
    scripts) is no login over HTTP and has nothing to throttle by: it passes
    on to the next backend instead of failing."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        super().authenticate(request, username=username, password=password, **kwargs)
        return None


def normalized_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    source: Any = credentials if credentials else request.POST
    username = source.get(getattr(settings, "AXES_USERNAME_FORM_FIELD", "username"))
    return username.strip().casefold() if isinstance(username, str) else None


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """``AXES_COOLOFF_MINUTES``, doubled for each earlier lockout of the same
    account or address within a day, at most ``AXES_COOLOFF_MAX_MINUTES``."""
    base = timedelta(minutes=settings.AXES_COOLOFF_MINUTES)
    ceiling = timedelta(minutes=settings.AXES_COOLOFF_MAX_MINUTES)
    if request is None:
        return base
    now: datetime = getattr(request, "axes_attempt_time", None) or timezone.now()
    who = Q()
    username = normalized_username(request, getattr(request, "axes_credentials", None))
    if username:
        who |= Q(username=username)
    ip_address = getattr(request, "axes_ip_address", None)
    if ip_address:
        who |= Q(ip_address=ip_address)
    if not who:
        return base
    lockouts = AccessFailureLog.objects.filter(who, locked_out=True, attempt_time__gte=now - LOCKOUT_HISTORY).count()
    # The lockout being served is among them: the first one lasts the base time.
    doubled: timedelta = base * (1 << min(max(lockouts - 1, 0), 20))
    return min(doubled, ceiling)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: object = None
) -> HttpResponse:
    form = AuthenticationForm(request)
    return render(
        request,
        "registration/login.html",
        {"form": form, "lockout_message": LOCKOUT_MESSAGE, "next": request.POST.get("next", "")},
        status=429,
    )


def client_ip_behind_proxy(request: HttpRequest) -> str | None:
    """Behind the reverse proxy every request comes from the proxy: the client
    is the address the proxy appended last to X-Forwarded-For."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    last = forwarded.split(",")[-1].strip() if forwarded else ""
    return last or request.META.get("REMOTE_ADDR")


@receiver(user_locked_out)
def log_lockout(
    sender: object, request: HttpRequest, username: str | None, ip_address: str | None, **kwargs: Any
) -> None:
    log.warning(
        "login lockout: account %r, address %s (an administrator lifts it under /webadmin/manage/axes/accessattempt/)",
        username,
        ip_address,
    )
