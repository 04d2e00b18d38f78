"""WebDMS views: thin; every document goes through ``document_get_for_user``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from archive import selectors, services, storage
from archive.forms import DocumentFieldsForm, NotesForm, UploadForm
from archive.links import access_link, clipboard_payload
from archive.models import ArchiveSettings, Document, FileRole, PublicAccess
from archive.serving import is_inline_type, serve_file
from archive.table import table_columns

PAGE_SIZE = 50


def _request_base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@login_required
@require_GET
def table(request: HttpRequest) -> HttpResponse:
    settings = ArchiveSettings.load()
    definitions = selectors.field_definitions()
    reduced = request.GET.get("reduced", "1" if settings.start_reduced_table else "0") == "1"
    columns = table_columns(settings, definitions, reduced=reduced)
    by_name = {f.name: f for f in definitions}
    sort = request.GET.get("sort", "date" if "date" in by_name else "number")
    descending = request.GET.get("dir", "desc") == "desc"
    sort_field = by_name.get(sort) or by_name.get("number")
    qs = selectors.documents_visible_to(request.user).select_related("owner_group")
    if sort_field is not None:
        qs = qs.order_by(selectors.order_expression(sort_field, descending), "-pk" if descending else "pk")
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        (doc, [(c, selectors.field_value(doc, c)) for c in columns]) for doc in page.object_list
    ]
    return render(request, "archive/table.html", {
        "columns": columns, "rows": rows, "page": page, "sort": sort,
        "descending": descending, "reduced": reduced,
    })


def _log_public_access(request: HttpRequest, document: Document) -> None:
    PublicAccess.objects.create(
        document=document,
        ip=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.headers.get("User-Agent", "")[:300],
        path=request.get_full_path()[:300],
    )


def _document_for_request(request: HttpRequest, number: int) -> tuple[Document, bool]:
    """(document, public): the user's own, or a published one for anyone.
    Raises Http404; the caller turns it into a login redirect for visitors."""
    if request.user.is_authenticated:
        try:
            return selectors.document_get_for_user(request.user, number), False
        except Http404:
            pass
    return selectors.document_get_public(number), True


@require_GET
def document_detail(request: HttpRequest, number: int) -> HttpResponse:
    try:
        document, public = _document_for_request(request, number)
    except Http404:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise
    settings = ArchiveSettings.load()
    if public:
        _log_public_access(request, document)
    definitions = selectors.field_definitions()
    original = document.original()
    files = list(document.files.all())
    context = {
        "document": document, "public": public, "original": original, "files": files,
        "viewer": _viewer_kind(document, original),
        "values": services.document_values_for_display(document, definitions),
        "show_notes": settings.show_notes and not public,
    }
    if not public:
        context["fields_form"] = DocumentFieldsForm(
            definitions=definitions, initial_values=document.values
        )
        context["notes_form"] = NotesForm(initial={"notes": document.notes})
        context["versions"] = [f for f in files if f.role == FileRole.ORIGINAL]
    return render(request, "archive/document.html", context)


def _viewer_kind(document: Document, original) -> str:  # type: ignore[no-untyped-def]
    if original is None:
        return "none"
    if document.kind == "mail":
        return "mail"
    ct = original.content_type
    if ct == "application/pdf":
        return "pdf"
    if ct.startswith("image/") and is_inline_type(ct):
        return "image"
    if ct.startswith("video/"):
        return "video"
    if ct.startswith("audio/"):
        return "audio"
    if ct == "text/plain":
        return "text"
    return "download"


@xframe_options_sameorigin  # shown inside the View tab's frame
@require_GET
def document_file(request: HttpRequest, number: int, file_id: int) -> HttpResponse:
    try:
        document, public = _document_for_request(request, number)
    except Http404:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise
    file = selectors.file_get_for_document(document, file_id)
    return serve_file(request, file, download=request.GET.get("download") == "1")


@login_required
@require_POST
def document_fields(request: HttpRequest, number: int) -> HttpResponse:
    document = selectors.document_get_for_user(request.user, number)
    form = DocumentFieldsForm(
        request.POST, definitions=selectors.field_definitions(), initial_values=document.values
    )
    if form.is_valid():
        values = {d.name: form.cleaned_data[d.name] for d in form.definitions}
        try:
            services.document_update_values(document, values)
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        else:
            messages.success(request, "Fields saved.")
    else:
        messages.error(request, "Not saved: " + "; ".join(
            f"{form.fields[k].label}: {' '.join(v)}" if k in form.fields else " ".join(v)
            for k, v in form.errors.items()
        ))
    return redirect(reverse("archive:document", args=[document.pk]) + "#fields")


@login_required
@require_POST
def document_notes(request: HttpRequest, number: int) -> HttpResponse:
    document = selectors.document_get_for_user(request.user, number)
    form = NotesForm(request.POST)
    if form.is_valid():
        services.document_set_notes(document, form.cleaned_data["notes"])
        messages.success(request, "Notes saved.")
    return redirect(reverse("archive:document", args=[document.pk]) + "#notes")


@login_required
@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    groups = selectors.groups_for_user(request.user)
    form = UploadForm(request.POST or None, request.FILES or None, groups=groups)
    if request.method == "POST" and form.is_valid():
        created = []
        with transaction.atomic():
            for uploaded in form.cleaned_data["files"]:
                blob = storage.put_chunks(uploaded.chunks())
                document, _ = services.document_create_from_upload(
                    name=uploaded.name, blob=blob,
                    content_type=services.guess_content_type(uploaded.name),
                    owner_group=form.cleaned_data["owner_group"],
                )
                created.append(document)
        messages.success(request, f"{len(created)} file(s) archived.")
        if len(created) == 1:
            return redirect("archive:document", created[0].pk)
        return redirect("archive:table")
    return render(request, "archive/upload.html", {"form": form})


@require_GET
def copy_links(request: HttpRequest) -> HttpResponse:
    """The one copy-link endpoint: ``?ids=1,2,3`` → JSON with title, URL and
    the ready clipboard texts (plain and HTML)."""
    try:
        numbers = [int(n) for n in request.GET.get("ids", "").split(",") if n.strip()]
    except ValueError:
        return JsonResponse({"error": "ids must be document numbers"}, status=400)
    if not numbers:
        return JsonResponse({"error": "no documents given"}, status=400)
    if request.user.is_authenticated:
        documents = selectors.documents_get_for_user(request.user, numbers)
    elif len(numbers) == 1:
        documents = [selectors.document_get_public(numbers[0])]
    else:
        return JsonResponse({"error": "login required"}, status=401)
    settings = ArchiveSettings.load()
    base = _request_base(request)
    payload = clipboard_payload([access_link(d, settings, base) for d in documents])
    payload["configured"] = bool(settings.dns_name)
    return JsonResponse(payload)


@require_GET
def legacy_link(request: HttpRequest) -> HttpResponse:
    """``/perl/avclient/index.pl?target=new&go=N`` of the original box → the document.
    Redirects without looking the document up, so it tells nothing about it."""
    go = request.GET.get("go", "")
    if not go.isdigit():
        return redirect("archive:table")
    return redirect("archive:document", int(go))
