"""The one access entry point of the views (issue 9): every route that takes a
document number goes through ``@document_access``, which asks
``selectors.document_access_get`` and handles what follows in one place —

- not found (or not yours) for a visitor without session → the login page,
  for a signed-in user → 404, the same as a document that does not exist;
- a published document opened by someone it does not belong to → every
  request logged, nothing kept in caches, no indexing.

``tests/archive/test_access.py`` resolves every URL pattern of the project and
fails for a route with a document number whose view lacks the decorator.

``staff_required`` guards the administration pages: the login page for a
visitor, a 403 for a signed-in user without the right (never a redirect to the
login page, which would send them straight back)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseBase

from archive import selectors
from archive.models import Document, DocumentFile, PublicAccess
from archive.selectors import DocumentAccess

P = ParamSpec("P")
DocumentView = Callable[Concatenate[HttpRequest, DocumentAccess, P], HttpResponseBase]
# Django passes the URL's kwargs by name (number=…, file_id=…).
RouteView = Callable[..., HttpResponseBase]


def document_access(
    *,
    public_ok: bool = False,
    require: Callable[[Document], DocumentFile] | None = None,
    signed_user: Callable[[HttpRequest, int], selectors.User | None] | None = None,
) -> Callable[[DocumentView[P]], RouteView]:
    """The view gets a ``DocumentAccess`` in place of the ``number``.

    ``public_ok``: a published document opens for anyone (read-only).
    ``require``: a further condition on the document (raises Http404), so that
    its "not found" is answered like any other; the file it returns is
    ``access.original`` (looked up once per request).
    ``signed_user``: for a request without session, the user a signed URL was
    issued to (a mail's inline images, whose frame sends no cookie)."""

    def decorator(view: DocumentView[P]) -> RouteView:
        def wrapper(request: HttpRequest, number: int, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
            user: selectors.User = request.user
            if signed_user is not None and not user.is_authenticated:
                user = signed_user(request, number) or user
            try:
                access = selectors.document_access_get(user, number, public_ok=public_ok)
                if require is not None:
                    access = dataclasses.replace(access, original=require(access.document))
            except Http404:
                if not request.user.is_authenticated:
                    return redirect_to_login(request.get_full_path())
                raise
            response = view(request, access, *args, **kwargs)
            if access.public:
                harden_public(request, access.document, response)
            return response

        functools.update_wrapper(wrapper, view)
        wrapper.document_access = True  # type: ignore[attr-defined]  # a mark the access tests look for
        return wrapper

    return decorator


def harden_public(request: HttpRequest, document: Document, response: HttpResponseBase) -> None:
    """A visitor's request of a published document: every one is logged (range
    requests of a player included — skipping any kind would be a way to read
    without a trace), and unpublishing takes effect at once: no copy is kept."""
    PublicAccess.objects.create(
        document=document,
        ip=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.headers.get("User-Agent", "")[:300],
        path=request.get_full_path()[:300],
    )
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"


def staff_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Administrators only: visitors log in; signed-in users without the right get 403."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_staff):
            raise PermissionDenied("Administrators only")
        return view(request, *args, **kwargs)

    return wrapper
