"""Turning a sign-in path on for one test: its environment variables read by
webadmin/auth/config.py (as at start-up), the settings that gives, and its
backend added after the local accounts' — as webadmin/settings.py does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LOCAL_BACKENDS = ["webadmin.login_throttle.ThrottlingBackend", "django.contrib.auth.backends.ModelBackend"]


def configure(
    settings: Any, monkeypatch: Any, env: dict[str, str], read: Callable[[], dict[str, Any]], backend: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name, value in read().items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [*LOCAL_BACKENDS, backend]
