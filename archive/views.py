"""WebDMS views: thin; every document goes through ``document_get_for_user``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from archive import mailview, search, selectors, services, storage, thumbnails, uploads
from archive.forms import DocumentFieldsForm, NotesForm, UploadForm
from archive.links import access_link, clipboard_payload
from archive.models import ArchiveSettings, Document, DocumentFile, FileRole, PrimaryUsage, PublicAccess
from archive.paging import CappedPaginator
from archive.serving import is_inline_type, serve_file
from archive.table import shows_posters, table_columns, table_rows

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
    # prefetch, not select_related: a join to the groups makes MariaDB sort all
    # visible rows for a page instead of walking the date index.
    qs = selectors.documents_visible_to(request.user).prefetch_related("owner_group")
    if sort_field is not None:
        qs = qs.order_by(selectors.order_expression(sort_field, descending), "-pk" if descending else "pk")
    q = request.GET.get("q", "").strip()
    results, search_error = None, ""
    if q:  # full text: relevance first, unless a column was chosen
        by_relevance = request.GET.get("sort", "relevance") == "relevance"
        try:
            results = search.search_documents(
                request.user,
                q,
                definitions=definitions,
                sort_field=None if by_relevance else sort_field,
                descending=descending,
                allow_scan=request.GET.get("sort") != "relevance",  # unless relevance was asked for
            )
        except search.SearchQueryError as exc:
            search_error = str(exc)
        sort = "relevance" if results and results.by_relevance else sort
    paginator = (
        results.paginator(PAGE_SIZE, page=request.GET.get("page", 1))
        if results
        else CappedPaginator(qs if not q else qs.none(), PAGE_SIZE, page=request.GET.get("page", 1))
    )
    page = paginator.get_page(request.GET.get("page"))
    documents = list(page.object_list)
    if results is not None:
        snippets = results.snippets(documents)
        for document in documents:
            document.search_snippet = snippets.get(document.pk)  # type: ignore[attr-defined]
    posters = thumbnails.posters_for(documents) if shows_posters(settings) else None
    rows = table_rows(documents, columns, posters)
    return render(
        request,
        "archive/table.html",
        {
            "columns": columns,
            "rows": rows,
            "page": page,
            "sort": sort,
            "descending": descending,
            "reduced": reduced,
            "posters": posters is not None,
            "q": q,
            "search_error": search_error,
        },
    )


def _log_public_access(request: HttpRequest, document: Document) -> None:
    PublicAccess.objects.create(
        document=document,
        ip=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.headers.get("User-Agent", "")[:300],
        path=request.get_full_path()[:300],
    )


def _document_for_request(
    request: HttpRequest, number: int, user: selectors.User | None = None
) -> tuple[Document, bool]:
    """(document, public): the user's own, or a published one for anyone.
    Raises Http404; the caller turns it into a login redirect for visitors.
    ``user`` stands in for a request without session (a mail's signed image URLs)."""
    user = user or request.user
    if user.is_authenticated:
        try:
            return selectors.document_get_for_user(user, number), False
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
    if public:
        # A visitor gets what the View tab shows, nothing of the rest.
        files = [
            f
            for f in files
            if original is not None
            and f.version == original.version
            and (f.pk == original.pk or f.role == FileRole.ATTACHMENT)
        ]
    context = {
        "document": document,
        "public": public,
        "original": original,
        "files": files,
        "viewer": _viewer_kind(document, original, settings.primary_usage),
        "values": services.document_values_for_display(document, definitions),
        "show_notes": settings.show_notes and not public,
    }
    if context["viewer"] == "mail":
        context["mail"] = mailview.mail_summary(document, original)
    if not public:
        context["fields_form"] = DocumentFieldsForm(definitions=definitions, initial_values=document.values)
        context["notes_form"] = NotesForm(initial={"notes": document.notes})
        context["versions"] = [f for f in files if f.role == FileRole.ORIGINAL]
        context["suggestions"] = selectors.field_suggestions(request.user, definitions, settings.combobox_elements)
        context["version_key"] = _version_key_of(document, settings)
    response = render(request, "archive/document.html", context)
    if public:
        # Unpublishing must take effect at once: no copy may be kept anywhere.
        response["Cache-Control"] = "no-store"
        response["X-Robots-Tag"] = "noindex"
    return response


def _version_key_of(document: Document, settings: ArchiveSettings) -> str:
    """The document's version key, when an upload can name it (not when the key
    is the file name, which the uploaded file itself brings)."""
    key_field = settings.version_key_field
    if not settings.versioning or key_field is None or key_field == settings.filename_field:
        return ""
    value = selectors.field_value(document, key_field)
    return "" if value in (None, "") else str(value)


def _viewer_kind(document: Document, original, usage: str = PrimaryUsage.DOCUMENTS) -> str:  # type: ignore[no-untyped-def]
    if original is None:
        return "none"
    if document.kind == "mail":
        return "mail"
    ct = original.content_type
    # The primary usage picks the viewer for what it is about: in a mail
    # archive an uploaded .eml opens in the mail view, elsewhere it downloads.
    if ct == "message/rfc822" and usage == PrimaryUsage.MAILS:
        return "mail"
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
def document_file(request: HttpRequest, number: int, file_id: int) -> HttpResponseBase:
    try:
        document, public = _document_for_request(request, number)
    except Http404:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise
    if not public:
        file = selectors.file_get_for_document(document, file_id)
        return serve_file(request, file, download=request.GET.get("download") == "1")
    file = selectors.file_get_public(document, file_id)
    # Every request is logged, range requests of a player included: skipping
    # any kind of request would be a way to read without a trace.
    _log_public_access(request, document)
    response = serve_file(request, file, download=request.GET.get("download") == "1")
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"
    return response


@login_required
@require_POST
def document_fields(request: HttpRequest, number: int) -> HttpResponse:
    document = selectors.document_get_for_user(request.user, number)
    form = DocumentFieldsForm(request.POST, definitions=selectors.field_definitions(), initial_values=document.values)
    if form.is_valid():
        values = {d.name: form.cleaned_data[d.name] for d in form.definitions}
        try:
            services.document_update_values(document, values)
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        else:
            messages.success(request, "Fields saved.")
    else:
        messages.error(
            request,
            "Not saved: "
            + "; ".join(
                f"{form.fields[k].label}: {' '.join(v)}" if k in form.fields else " ".join(v)
                for k, v in form.errors.items()
            ),
        )
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
    settings = ArchiveSettings.load()
    key_field = settings.version_key_field if settings.versioning else None
    if key_field is not None and key_field == settings.filename_field:
        key_field = None  # the uploaded file's own name is the key
    # "New version" on a document links here with its key and its group.
    initial = {k: request.GET[k] for k in ("version_key", "owner_group") if request.GET.get(k)}
    if refusal := uploads.upload_refusal(request):  # over the size limits: nothing is stored
        form = UploadForm(groups=groups, version_key_field=key_field, initial=initial)
        return render(request, "archive/upload.html", {"form": form, "upload_error": refusal}, status=413)
    form = UploadForm(
        request.POST or None,
        request.FILES or None,
        groups=groups,
        version_key_field=key_field,
        initial=initial,
    )
    if request.method == "POST" and form.is_valid():
        created = []
        new_versions = 0
        with transaction.atomic():
            for uploaded in form.cleaned_data["files"]:
                blob = storage.put_chunks(uploaded.chunks())
                document, is_version = services.document_create_from_upload(
                    name=uploaded.name,
                    blob=blob,
                    content_type=services.guess_content_type(uploaded.name),
                    owner_group=form.cleaned_data["owner_group"],
                    values=form.upload_values(),
                )
                created.append(document)
                new_versions += is_version
        if new_versions:
            messages.success(request, f"{len(created)} file(s) archived, {new_versions} as a new version.")
        else:
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


def _mail_for_request(
    request: HttpRequest, number: int, user: selectors.User | None = None
) -> tuple[Document, DocumentFile, bool]:
    """(document, its .eml, public) through the same access check as the
    document page; a document that is not shown as a mail is a 404 too."""
    document, public = _document_for_request(request, number, user)
    original = document.original()
    if original is None or _viewer_kind(document, original, ArchiveSettings.load().primary_usage) != "mail":
        raise Http404("No such document")
    return document, original, public


def _harden_public(request: HttpRequest, document: Document, response: HttpResponseBase) -> None:
    # As for files: every request of a visitor is logged, nothing is kept in caches.
    _log_public_access(request, document)
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"


@xframe_options_sameorigin  # the View tab shows it in a sandboxed frame
@require_GET
def mail_body(request: HttpRequest, number: int) -> HttpResponse:
    """The body of a mail as a document of its own, for the View tab's
    ``<iframe sandbox>``; remote images only with ``?remote=1``."""
    try:
        document, original, public = _mail_for_request(request, number)
    except Http404:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise
    allow_remote = request.GET.get("remote") == "1"
    body = mailview.mail_body(
        mailview.mail_load(document, original),
        part_url=mailview.part_url_builder(document.pk, None if public else request.user),
        allow_remote=allow_remote,
        prefer_text=request.GET.get("format") == "text",
    )
    response = render(request, "archive/mail_body.html", {"body": body, "style": mailview.BODY_STYLE})
    response["Content-Security-Policy"] = mailview.body_csp(allow_remote=allow_remote)
    # Remote images and opened links learn nothing about the archive's URLs.
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-cache"
    if public:
        _harden_public(request, document, response)
    return response


@require_GET
def mail_part(request: HttpRequest, number: int, part: str) -> HttpResponseBase:
    """One MIME part of a mail (attachment or inline image), from the stored
    file when the mail was processed, else from the .eml itself."""
    token_user = None
    if not request.user.is_authenticated and request.GET.get("t"):
        # The body frame is sandboxed (an opaque origin): its image requests
        # carry no session cookie (SameSite). mail_body signed whom it showed
        # the images to; the access check runs again here for that user.
        token_user = mailview.part_token_user(request.GET["t"], number)
    try:
        document, original, public = _mail_for_request(request, number, token_user)
    except Http404:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise
    content = mailview.mail_part_get(document, original, part)
    if content is None:
        raise Http404("No such file")
    # Only images are ever shown inline (the body's cid: images); the rest downloads.
    download = request.GET.get("download") == "1" or not mailview.is_inline_image(content.content_type)
    if token_user is not None and download:
        # A signed URL shows the body's images, nothing else.
        return redirect_to_login(request.get_full_path())
    if content.file is not None:
        response: HttpResponseBase = serve_file(request, content.file, download=download)
    else:
        response = mailview.serve_part_bytes(content, download=download)
    if public:
        _harden_public(request, document, response)
    return response
