"""Security headers: Content-Security-Policy on every response (Django 5.2 has
no built-in CSP), and the same headers on static files, which WhiteNoise
answers before the middlewares further down see the request. Outages (the
database or the broker unreachable, the disk full) answer 503 with Retry-After,
not 500: in a view (``OutageMiddleware``) and anywhere else, e.g. the session
saved by its middleware after the view (``server_error``, the handler500)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:  # settings.py imports this module: keep it light
    from wsgiref.headers import Headers

    from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

OUTAGE_RETRY_AFTER_SECONDS = 60

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


def outage_response(exc: BaseException) -> HttpResponse | None:
    """The 503 page when ``exc`` is an outage of the database, the broker or the
    disk (``mailsources.tasks.infrastructure_error``), else None. Rendered without
    the request, like 500.html: no context processor may need the database."""
    from django.http import HttpResponse
    from django.template import loader

    from mailsources.tasks import infrastructure_error

    if infrastructure_error(exc) is None:
        return None
    response = HttpResponse(loader.get_template("503.html").render(), status=503)
    response["Retry-After"] = str(OUTAGE_RETRY_AFTER_SECONDS)
    return response


class OutageMiddleware:
    """A view that fails on an outage answers 503 "try again later". The
    view's transaction was rolled back (ATOMIC views or its own atomic block);
    Django deletes the request's upload temp files when the response closes,
    and a file the disk filled up while spooling is closed (deleted) here."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return _answer_outage(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500. Django turns an exception raised outside a view (in a middleware:
    the session loaded or saved, the user loaded) into a response where it happens,
    so ``OutageMiddleware`` never sees it; Django calls this while it handles the
    exception, which ``sys.exc_info()`` still holds: an outage answers 503 here too."""
    from django.views import defaults

    exception = sys.exc_info()[1]
    response = _answer_outage(request, exception) if exception is not None else None
    return response if response is not None else defaults.server_error(request)


def _answer_outage(request: HttpRequest, exception: BaseException) -> HttpResponse | None:
    response = outage_response(exception)
    if response is not None:
        logger.warning("%s %s: answered 503, %s", request.method, request.path, exception)
        _close_spooled_uploads(request)
    return response


def _close_spooled_uploads(request: HttpRequest) -> None:
    """A disk that filled while the request body was spooled leaves the file
    being written with its upload handler, not in ``request.FILES`` (which
    Django closes with the response): closing it deletes the temporary file
    now, not whenever the garbage collector gets to it."""
    for handler in getattr(request, "_upload_handlers", None) or []:
        spooled = getattr(handler, "file", None)
        if spooled is not None and hasattr(spooled, "close"):
            try:
                spooled.close()
            except OSError:  # already gone: nothing to clean
                pass
