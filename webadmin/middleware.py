"""Content-Security-Policy on every response (Django 5.2 has no built-in CSP)."""

from collections.abc import Callable

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
