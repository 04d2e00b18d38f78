"""The one access entry point of the views (issue 9): every route that takes a
document number goes through ``@document_access``, which asks
``selectors.document_access_get`` and handles what follows in one place —

- not found (or not yours) for a visitor without session → the login page,
  for a signed-in user → 404, the same as a document that does not exist;
- a published document opened by someone it does not belong to → every
  request logged, nothing kept in caches, no indexing.

``tests/archive/test_access.py`` resolves every URL pattern of the project and
fails for a route with a document number whose view lacks the decorator.

Every request of a document route is logged in the audit log
(``archive.integrity.audit``): what (``audit=``, refined by the view through
``audit_note``), who, which document, the outcome — also a denied one (not
found or not yours: ``denied``) and one whose view failed (``failed``). An
access that cannot be logged is refused (the outage page, 503).

Auditors (``selectors.is_auditor``) read every document and never write: a
route marked ``writes=True``, ``writer_required`` and every unsafe method of
``staff_required`` answer them 403.

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
from archive.integrity import audit
from archive.integrity.audit import AuditAction, Outcome
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
    audit_as: str = AuditAction.DOCUMENT_VIEW,
    writes: bool = False,
) -> Callable[[DocumentView[P]], RouteView]:
    """The view gets a ``DocumentAccess`` in place of the ``number``.

    ``public_ok``: a published document opens for anyone (read-only).
    ``require``: a further condition on the document (raises Http404), so that
    its "not found" is answered like any other; the file it returns is
    ``access.original`` (looked up once per request).
    ``signed_user``: for a request without session, the user a signed URL was
    issued to (a mail's inline images, whose frame sends no cookie).
    ``audit_as``: the act logged for the route (a published document's page
    opened by a visitor is a ``link_open``).
    ``writes``: the route changes the document; auditors get 403."""

    def decorator(view: DocumentView[P]) -> RouteView:
        def wrapper(request: HttpRequest, number: int, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
            user: selectors.User = request.user
            if signed_user is not None and not user.is_authenticated:
                user = signed_user(request, number) or user
            action = (
                AuditAction.LINK_OPEN
                if audit_as == AuditAction.DOCUMENT_VIEW and not user.is_authenticated
                else audit_as
            )
            try:
                access = selectors.document_access_get(user, number, public_ok=public_ok)
                if require is not None:
                    access = dataclasses.replace(access, original=require(access.document))
            except Http404:
                audit.log(action, request, user=user, document=number, outcome=Outcome.DENIED)
                if not request.user.is_authenticated:
                    return redirect_to_login(request.get_full_path())
                raise
            if writes:
                _refuse_auditor(request, user, action, number)
            try:
                response = view(request, access, *args, **kwargs)
            except Http404:  # allowed, but the file or part asked for is not there
                _log_access(request, access, action, Outcome.FAILED)
                raise
            _log_access(request, access, action, Outcome.OK if response.status_code < 400 else Outcome.FAILED)
            if access.public:
                harden_public(request, access.document, response)
            return response

        functools.update_wrapper(wrapper, view)
        wrapper.document_access = True  # type: ignore[attr-defined]  # a mark the access tests look for
        return wrapper

    return decorator


def _refuse_auditor(request: HttpRequest, user: selectors.User, action: str, number: int) -> None:
    if selectors.is_auditor(user):
        details = {"read_only": True}
        audit.log(action, request, user=user, document=number, outcome=Outcome.DENIED, details=details)
        raise PermissionDenied("Auditors have read-only access")


def audit_note(request: HttpRequest, action: str | None = None, **details: Any) -> None:
    """What a document view found out about its request, for its audit entry:
    a more precise act (a raw .eml download) and details (the file)."""
    note = getattr(request, "_audit_note", None) or {"action": None, "details": {}}
    if action is not None:
        note["action"] = action
    note["details"].update(details)
    request._audit_note = note  # type: ignore[attr-defined]


def _log_access(request: HttpRequest, access: DocumentAccess, action: str, outcome: str) -> None:
    note = getattr(request, "_audit_note", None) or {"action": None, "details": {}}
    details = dict(note["details"])
    if access.public:
        details["public"] = True
    if access.user is not request.user:
        details["signed_url"] = True  # the body frame's images, for the user the URL was signed for
    audit.log(
        note["action"] or action,
        request,
        user=access.user,
        document=access.document.pk,
        outcome=outcome,
        details=details,
    )


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


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _refuse_read_only(request: HttpRequest) -> None:
    if request.method not in SAFE_METHODS and selectors.is_auditor(request.user):
        raise PermissionDenied("Auditors have read-only access")


def staff_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Administrators only: visitors log in; signed-in users without the right
    get 403 (an auditor too, for any change, should they also be staff)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_staff):
            raise PermissionDenied("Administrators only")
        _refuse_read_only(request)
        return view(request, *args, **kwargs)

    return wrapper


def writer_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """A page that changes the archive (upload): visitors log in, auditors get 403 (also on GET)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if selectors.is_auditor(request.user):
            raise PermissionDenied("Auditors have read-only access")
        return view(request, *args, **kwargs)

    return wrapper


def _audit_reader(view: Callable[..., HttpResponseBase], *, copies: bool) -> Callable[..., HttpResponseBase]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and (user.is_staff or selectors.is_auditor(user))):
            raise PermissionDenied("Administrators and auditors only")
        if not copies:
            _refuse_read_only(request)
        return view(request, *args, **kwargs)

    return wrapper


def audit_reader_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """The audit log and integrity reports: administrators and auditors;
    visitors log in, other users get 403; an auditor only reads."""
    return _audit_reader(view, copies=False)


def audit_copy_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Exports and the procedure documentation: administrators and auditors, who
    may also start one — a copy of what they may read changes nothing in the
    archive (the auditor's export, issue 13)."""
    return _audit_reader(view, copies=True)
