"""The REST API: thin views over archive's and mailsources' selectors and
services. Every document, file and link goes through archive's one access
check (``archive/selectors.py``); what a user cannot see is a 404 with the
same body as a document that does not exist."""

from __future__ import annotations

import logging
import re
from typing import Any

from django.db import transaction
from django.http import Http404, HttpResponseBase
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import serializers as s
from api.models import ApiToken
from api.permissions import AdminScope, ReadScope, UploadScope
from archive import search, selectors, services, storage, uploads
from archive.errors import BROKER_ERRORS
from archive.forms import UploadForm
from archive.integrity import audit
from archive.integrity.audit import AuditAction, Outcome
from archive.integrity.ledger import actor_name
from archive.links import access_link, clipboard_payload
from archive.models import ArchiveSettings, Document, DocumentFile
from archive.paging import CappedPaginator
from archive.serving import serve_file
from mailsources import services as source_services
from mailsources import tasks as source_tasks
from mailsources.models import MailSource

log = logging.getLogger("webadmin.api")

PAGE_SIZE = 50
MAX_LINKS = 1000  # as the copy-link endpoint of WebDMS
_NUMBER = re.compile(r"[0-9]{1,100}")

NUMBER = OpenApiParameter("number", int, OpenApiParameter.PATH, description="Document number")
FILE_ID = OpenApiParameter("file_id", int, OpenApiParameter.PATH, description="File id (from the document's files)")
SOURCE_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="Mail source id")

ERRORS = {
    400: OpenApiResponse(s.DetailSerializer, description="Bad request"),
    401: OpenApiResponse(s.DetailSerializer, description="No or invalid credentials"),
    403: OpenApiResponse(s.DetailSerializer, description="Scope or CSRF missing"),
    404: OpenApiResponse(s.DetailSerializer, description="Not found (or not yours)"),
    429: OpenApiResponse(s.DetailSerializer, description="Rate limit reached"),
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {c: ERRORS[c] for c in (401, 403, 429, *codes)}


class ApiView(APIView):
    """Logs every call: which token (prefix), which user, what, and the answer."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # ``response`` may be a plain Django response too (a file download).
        response = super().finalize_response(request, response, *args, **kwargs)
        auth = request.auth if hasattr(request, "_authenticator") else None
        user = getattr(request, "_user", None)
        log.info(
            "api token=%s user=%s %s %s %s",
            auth.prefix if isinstance(auth, ApiToken) else ("session" if user and user.is_authenticated else "-"),
            user.get_username() if user is not None and user.is_authenticated else "-",
            request.method,
            request.get_full_path(),
            response.status_code,
        )
        return response


def _number(value: str) -> int:
    if not _NUMBER.fullmatch(value) or int(value) > selectors.MAX_DOCUMENT_NUMBER:
        raise Http404("No such document")
    return int(value)


def _via(request: Request) -> dict[str, str]:
    """Where an API call came from, for its audit entry: the token (prefix) or the session."""
    auth = request.auth
    return {"via": "api", "token": auth.prefix} if isinstance(auth, ApiToken) else {"via": "api"}


def _audit(request: Request, action: str, document: int | None, outcome: str = Outcome.OK, **details: Any) -> None:
    details = {**_via(request), **details}
    audit.log(action, request._request, user=request.user, document=document, outcome=outcome, details=details)


def _audited_document(request: Request, number: str, action: str) -> Document:
    """The one access check, logged: a number not seen is a denied access."""
    n = _number(number)
    try:
        return selectors.document_get_for_user(request.user, n)
    except Http404:
        _audit(request, action, n, Outcome.DENIED)
        raise


def _audit_file(request: Request, document: Document, file: DocumentFile) -> None:
    action = audit.file_action(file)
    _audit(request, action, document.pk, file=file.pk, name=file.name, sha256=file.sha256, download=True)


class DocumentListView(ApiView):
    parser_classes = [MultiPartParser, FormParser]

    def get_permissions(self) -> list[BasePermission]:
        return [UploadScope()] if self.request.method == "POST" else [ReadScope()]

    @extend_schema(
        operation_id="documents_list",
        parameters=[
            OpenApiParameter("q", str, description="The search language of the WebDMS table"),
            OpenApiParameter("page", int),
        ],
        responses={200: s.DocumentPageSerializer, **errors(400)},
    )
    def get(self, request: Request) -> Response:
        q = str(request.query_params.get("q", "")).strip()
        page_param = request.query_params.get("page", 1)
        by_relevance = False
        if q:
            try:
                with search.time_budget():
                    results = search.search_documents(request.user, q)
                    page = results.paginator(PAGE_SIZE, page=page_param).get_page(page_param)
                    documents = list(page.object_list)
            except search.SearchQueryError as exc:
                empty = CappedPaginator(Document.objects.none(), PAGE_SIZE).get_page(1)
                audit.log_search(request._request, q, empty, str(exc), user=request.user, **_via(request))
                return Response({"detail": str(exc)}, status=400)
            by_relevance = results.by_relevance
            audit.log_search(request._request, q, page, user=request.user, **_via(request))
        else:
            qs = selectors.documents_visible_to(request.user).select_related("owner_group").order_by("-pk")
            page = CappedPaginator(qs, PAGE_SIZE, page=page_param).get_page(page_param)
            documents = list(page.object_list)
        paginator = page.paginator
        return Response(
            {
                "count": paginator.count,
                "more": getattr(paginator, "more", False),
                "page": page.number,
                "pages": paginator.num_pages,
                "by_relevance": by_relevance,
                "results": s.DocumentSummarySerializer(documents, many=True).data,
            }
        )

    @extend_schema(
        operation_id="documents_upload",
        request={"multipart/form-data": s.UploadSerializer},
        responses={201: s.UploadResultSerializer, 413: ERRORS[400], **errors(400)},
    )
    def post(self, request: Request) -> Response:
        request.data  # noqa: B018 - parses the body through the upload limits
        if refusal := uploads.upload_refusal(request._request):
            return Response({"detail": refusal}, status=413)
        settings = ArchiveSettings.load()
        key_field = settings.version_key_field if settings.versioning else None
        if key_field is not None and key_field == settings.filename_field:
            key_field = None
        form = UploadForm(
            request.POST, request.FILES, groups=selectors.groups_for_user(request.user), version_key_field=key_field
        )
        if not form.is_valid():
            return Response(
                {"detail": "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in form.errors.items())}, status=400
            )
        created, new_versions = [], 0
        with transaction.atomic():
            for uploaded in form.cleaned_data["files"]:
                document, is_version = services.document_create_from_upload(
                    name=uploaded.name,
                    blob=storage.put_chunks(uploaded.chunks()),
                    content_type=services.guess_content_type(uploaded.name),
                    owner_group=form.cleaned_data["owner_group"],
                    values=form.upload_values(),
                    actor=actor_name(request.user),
                )
                created.append(document)
                new_versions += is_version
        data = {"documents": s.DocumentSummarySerializer(created, many=True).data, "new_versions": new_versions}
        return Response(data, status=status.HTTP_201_CREATED)


class DocumentDetailView(ApiView):
    permission_classes = [ReadScope]

    @extend_schema(
        operation_id="documents_detail", parameters=[NUMBER], responses={200: s.DocumentDetailSerializer, **errors(404)}
    )
    def get(self, request: Request, number: str) -> Response:
        document = _audited_document(request, number, AuditAction.DOCUMENT_VIEW)
        context = {"definitions": selectors.field_definitions(), "files": list(document.files.all())}
        data = s.DocumentDetailSerializer(document, context=context).data
        _audit(request, AuditAction.DOCUMENT_VIEW, document.pk)
        return Response(data)


class FileDownloadView(ApiView):
    permission_classes = [ReadScope]

    @extend_schema(
        operation_id="documents_file",
        description="The file's bytes, always as a download; HTTP Range requests answer 206.",
        parameters=[
            NUMBER,
            FILE_ID,
            OpenApiParameter("Range", str, OpenApiParameter.HEADER, description="bytes=first-last"),
        ],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            (206, "application/octet-stream"): OpenApiTypes.BINARY,
            416: OpenApiResponse(description="Range not satisfiable"),
            **errors(404),
        },
    )
    def get(self, request: Request, number: str, file_id: str) -> HttpResponseBase:
        document = _audited_document(request, number, AuditAction.FILE_DOWNLOAD)
        try:
            file = selectors.file_get_for_document(document, _number(file_id))
        except Http404:
            _audit(request, AuditAction.FILE_DOWNLOAD, document.pk, Outcome.FAILED, file=audit.clip(file_id))
            raise
        response = serve_file(request._request, file, download=True)
        if response.status_code < 400:
            _audit_file(request, document, file)
        return response


class AccessLinksView(ApiView):
    permission_classes = [ReadScope]

    @extend_schema(
        operation_id="links",
        parameters=[OpenApiParameter("ids", str, required=True, description="Document numbers, comma-separated")],
        responses={200: s.AccessLinksSerializer, **errors(400, 404)},
    )
    def get(self, request: Request) -> Response:
        given = [n.strip() for n in str(request.query_params.get("ids", "")).split(",") if n.strip()]
        if not given or not all(_NUMBER.fullmatch(n) for n in given):
            return Response({"detail": "ids must be document numbers"}, status=400)
        if len(given) > MAX_LINKS:
            return Response({"detail": f"at most {MAX_LINKS} documents at once"}, status=400)
        documents = selectors.documents_get_for_user(request.user, [int(n) for n in given])
        settings = ArchiveSettings.load()
        base = request.build_absolute_uri("/").rstrip("/")
        payload = clipboard_payload([access_link(d, settings, base) for d in documents])
        payload["configured"] = bool(settings.dns_name)
        return Response(payload)


def _source(pk: str) -> MailSource:
    if not _NUMBER.fullmatch(pk) or int(pk) > selectors.MAX_DOCUMENT_NUMBER:
        raise Http404("No such mail source")
    return get_object_or_404(MailSource.objects.select_related("owner_group"), pk=int(pk))


class MailSourceListView(ApiView):
    permission_classes = [AdminScope]

    @extend_schema(operation_id="sources_list", responses={200: s.MailSourceSerializer(many=True), **errors()})
    def get(self, request: Request) -> Response:
        sources = MailSource.objects.select_related("owner_group").order_by("name")
        return Response(s.MailSourceSerializer(sources, many=True).data)


class MailSourceDetailView(ApiView):
    permission_classes = [AdminScope]

    @extend_schema(
        operation_id="sources_status", parameters=[SOURCE_ID], responses={200: s.MailSourceSerializer, **errors(404)}
    )
    def get(self, request: Request, pk: str) -> Response:
        return Response(s.MailSourceSerializer(_source(pk)).data)


class MailSourceRunsView(ApiView):
    permission_classes = [AdminScope]

    @extend_schema(
        operation_id="sources_runs",
        parameters=[SOURCE_ID],
        responses={200: s.SyncRunSerializer(many=True), **errors(404)},
    )
    def get(self, request: Request, pk: str) -> Response:
        return Response(s.SyncRunSerializer(_source(pk).runs.all()[:100], many=True).data)


class MailSourceSyncView(ApiView):
    permission_classes = [AdminScope]

    @extend_schema(
        operation_id="sources_sync",
        parameters=[SOURCE_ID],
        request=None,
        responses={202: s.MailSourceSerializer, 503: ERRORS[400], **errors(404)},
    )
    def post(self, request: Request, pk: str) -> Response:
        source = _source(pk)
        with transaction.atomic():  # the request and its audit entry, or neither
            source_services.source_request_sync(source)
            _audit(request, AuditAction.SOURCE_CHANGED, None, source=source.pk, change="sync requested")
        try:
            source_tasks.sync_enqueue(source.pk)
        except BROKER_ERRORS as exc:
            return Response({"detail": f"The task queue is unavailable, the sync was not queued: {exc}"}, status=503)
        source.refresh_from_db()
        return Response(s.MailSourceSerializer(source).data, status=202)


class SchemaView(ApiView, SpectacularAPIView):
    permission_classes = [IsAuthenticated]


# Swagger UI from drf-spectacular-sidecar's static files; its start script is a
# file of its own (the "split" view), so the page runs under a script-src 'self'.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


class DocsView(ApiView, SpectacularSwaggerSplitView):
    permission_classes = [IsAuthenticated]
    url_name = "api:schema"
    schema = None  # not an operation of the API

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response: Response = super().get(request, *args, **kwargs)  # type: ignore[no-untyped-call]  # untyped in drf-spectacular
        response["Content-Security-Policy"] = DOCS_CSP
        return response
