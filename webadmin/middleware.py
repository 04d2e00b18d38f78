"""Security headers: Content-Security-Policy on every response (Django 5.2 has
no built-in CSP), and the same headers on static files, which WhiteNoise
answers before the middlewares further down see the request."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:  # settings.py imports this module: keep it light
    from wsgiref.headers import Headers

    from django.http import HttpRequest, HttpResponse

DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self'; object-src 'self'; frame-src 'self'; frame-ancestors 'self'; "
    "form-action 'self'; base-uri 'none'"
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Views serving archived content set a stricter policy of their own.
        response.headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
        return response


def static_file_headers(headers: Headers, path: str, url: str) -> None:
    """WHITENOISE_ADD_HEADERS_FUNCTION: what pages get from the middlewares
    (CSP, X-Frame-Options, nosniff), for every static file."""
    headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
    headers.setdefault("X-Content-Type-Options", "nosniff")
