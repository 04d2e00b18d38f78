"""WebDMS views: thin; every document route goes through ``@document_access``
(``archive/access.py``), the one access entry point."""

from __future__ import annotations

import dataclasses
import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from archive import (
    conversations,
    dashboard,
    mailhtml,
    mailview,
    search,
    selectors,
    services,
    storage,
    thumbnails,
    uploads,
)
from archive.access import audit_note, document_access, writer_required
from archive.folders import folder_tree, in_folder
from archive.forms import DocumentFieldsForm, NotesForm, UploadForm
from archive.integrity import audit
from archive.integrity.audit import AuditAction
from archive.integrity.ledger import actor_name, document_history
from archive.links import access_link, clipboard_payload
from archive.models import ArchiveSettings, Document, DocumentFile, FileRole, PrimaryUsage
from archive.paging import PAGE_SIZES, CappedPaginator, page_links, page_size
from archive.selectors import DocumentAccess
from archive.serving import is_inline_type, serve_file
from archive.table import shows_posters, table_columns, table_rows, with_mail_columns

MAX_LINKS = 1000  # documents per copy-link request
# ASCII digits only: str.isdigit() also takes "²" and "①", which int() refuses.
# Longer numbers are valid syntax for a number no document has (a 404).
_DOCUMENT_NUMBER = re.compile(r"[0-9]{1,100}")


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
    visible = selectors.documents_visible_to(request.user)
    qs = visible.prefetch_related("owner_group")
    mailbox, folder = request.GET.get("mailbox"), request.GET.get("folder")
    if mailbox is not None:  # the folder tree's filter (mail archived from there)
        qs = in_folder(qs, mailbox, folder)
    per_page = page_size(request.GET.get("size"))
    if sort_field is not None:
        qs = qs.order_by(selectors.order_expression(sort_field, descending), "-pk" if descending else "pk")
    q = request.GET.get("q", "").strip()
    page_param = request.GET.get("page", 1)
    search_error = ""
    if q:  # full text: relevance first, unless a column was chosen
        by_relevance = request.GET.get("sort", "relevance") == "relevance"
        try:
            with search.time_budget():  # "too complex" rather than a worker held for long
                results = search.search_documents(
                    request.user,
                    q,
                    definitions=definitions,
                    sort_field=None if by_relevance else sort_field,
                    descending=descending,
                    allow_scan=request.GET.get("sort") != "relevance",  # unless relevance was asked for
                    within=None if mailbox is None else lambda visible: in_folder(visible, mailbox, folder),
                )
                page = results.paginator(per_page, page=page_param).get_page(request.GET.get("page"))
                documents = list(page.object_list)
                snippets = results.snippets(documents)
        except search.SearchQueryError as exc:
            search_error = str(exc)
            page = CappedPaginator(qs.none(), per_page).get_page(1)
            documents = []
        else:
            sort = "relevance" if results.by_relevance else sort
            for document in documents:
                document.search_snippet = snippets.get(document.pk)
        audit.log_search(request, q, page, search_error)
    else:
        page = CappedPaginator(qs, per_page, page=page_param).get_page(request.GET.get("page"))
        documents = list(page.object_list)
    posters = thumbnails.posters_for(documents) if shows_posters(settings) else None
    shown = with_mail_columns(settings, columns, documents)
    rows = table_rows(documents, shown, posters, icons=posters is None)
    return render(
        request,
        "archive/table.html",
        {
            "columns": shown,
            "page_links": page_links(page),
            "page_sizes": PAGE_SIZES,
            "page_size": per_page,
            "folders": folder_tree(request.user),
            "mailbox": mailbox,
            "folder": folder,
            "rows": rows,
            "page": page,
            "sort": sort,
            "descending": descending,
            "reduced": reduced,
            "posters": posters is not None,
            "q": q,
            "search_error": search_error,
            "max_query_chars": search.MAX_QUERY_CHARS,
        },
    )


@document_access(public_ok=True)
@require_GET
def document_detail(request: HttpRequest, access: DocumentAccess) -> HttpResponse:
    document, public = access.document, access.public
    settings = ArchiveSettings.load()
    definitions = selectors.field_definitions()
    all_parts = request.GET.get("parts") == "all"
    listing = _document_files(document, public=public, all_parts=all_parts)
    original = listing.original
    context = {
        "document": document,
        "public": public,
        "original": original,
        "files": listing.files,
        "files_total": listing.total,
        # One reverse() for all rows: a mail may have hundreds of parts.
        "file_url_prefix": reverse("archive:file", args=[document.pk, 1]).removesuffix("1/"),
        "viewer": _viewer_kind(document, original, settings.primary_usage),
        "values": services.document_values_for_display(document, definitions),
        "show_notes": settings.show_notes and not public,
        # An auditor sees the fields and notes, without the controls to change them.
        "read_only": public or selectors.is_auditor(request.user),
    }
    if context["viewer"] == "mail" and original is not None:
        context["mail"] = mailview.mail_summary(document, original, all_parts=all_parts)
        if not public:
            context["conversation"] = conversations.conversation(selectors.documents_visible_to(request.user), document)
    if not public:
        context["fields_form"] = DocumentFieldsForm(definitions=definitions, initial_values=document.values)
        context["notes_form"] = NotesForm(initial={"notes": document.notes})
        context["versions"] = listing.originals
        context["suggestions"] = selectors.field_suggestions(request.user, definitions, settings.combobox_elements)
        context["version_key"] = _version_key_of(document, settings)
        context["history"] = document_history(document.pk, {d.name: d.label for d in definitions})
    return render(request, "archive/document.html", context)


# The Files tab lists this many attachment files; the rest behind "Show all N"
# (``?parts=all``). The originals (the versions) are always listed.
FILES_SHOWN = 50


@dataclasses.dataclass
class _FileListing:
    original: DocumentFile | None  # the current version's file
    originals: list[DocumentFile]  # every version's, as the Files tab orders them
    files: list[DocumentFile]  # the rows shown: attachments (perhaps the first few only), then originals
    total: int  # rows there are in all


def _document_files(document: Document, *, public: bool, all_parts: bool) -> _FileListing:
    """The Files tab's rows in the table's order (attachments, then originals):
    a mail with hundreds of parts lists the first ``FILES_SHOWN`` unless all are
    asked for. A visitor gets what the View tab shows, nothing of the rest."""
    originals = list(document.files.filter(role=FileRole.ORIGINAL))
    original = max(originals, key=lambda f: (f.version, f.pk), default=None)
    attachments = document.files.filter(role=FileRole.ATTACHMENT)
    if public:
        originals = [original] if original is not None else []
        attachments = attachments.filter(version=original.version) if original is not None else attachments.none()
    shown = list(attachments if all_parts else attachments[: FILES_SHOWN + 1])
    total = len(shown)
    if not all_parts and total > FILES_SHOWN:
        shown, total = shown[:FILES_SHOWN], attachments.count()
    return _FileListing(original, originals, [*shown, *originals], total + len(originals))


def _version_key_of(document: Document, settings: ArchiveSettings) -> str:
    """The document's version key, when an upload can name it (not when the key
    is the file name, which the uploaded file itself brings)."""
    key_field = settings.version_key_field
    if not settings.versioning or key_field is None or key_field == settings.filename_field:
        return ""
    value = selectors.field_value(document, key_field)
    return "" if value in (None, "") else str(value)


def _viewer_kind(document: Document, original: DocumentFile | None, usage: str = PrimaryUsage.DOCUMENTS) -> str:
    if original is None:
        return "none"
    if document.kind == "mail":
        return "mail"
    ct = original.content_type
    # A mail is shown as mail whatever the archive is mainly for (an uploaded .eml too).
    if ct == "message/rfc822" or original.name.lower().endswith(".eml"):
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


@document_access(public_ok=True, audit_as=AuditAction.FILE_DOWNLOAD)
@xframe_options_sameorigin  # shown inside the View tab's frame
@require_GET
def document_file(request: HttpRequest, access: DocumentAccess, file_id: int) -> HttpResponseBase:
    download = request.GET.get("download") == "1"
    audit_note(request, file=file_id, download=download)
    if access.public:  # what the View tab shows, nothing of the rest
        file = selectors.file_get_public(access.document, file_id)
    else:
        file = selectors.file_get_for_document(access.document, file_id)
    audit_note(request, audit.file_action(file), name=file.name, sha256=file.sha256)
    return serve_file(request, file, download=download)


@document_access(audit_as=AuditAction.DOCUMENT_EDIT, writes=True)
@require_POST
def document_fields(request: HttpRequest, access: DocumentAccess) -> HttpResponse:
    document = access.document
    form = DocumentFieldsForm(request.POST, definitions=selectors.field_definitions(), initial_values=document.values)
    if form.is_valid():
        values = {d.name: form.cleaned_data[d.name] for d in form.definitions}
        try:
            services.document_update_values(document, values, actor=actor_name(request.user))
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        else:
            messages.success(request, _("Fields saved."))
    else:
        messages.error(request, _("Not saved: ") + "; ".join(_labelled_errors(form)))
    return redirect(reverse("archive:document", args=[document.pk]) + "#fields")


def _labelled_errors(form: DocumentFieldsForm) -> list[str]:
    """Each error once with its field's label ("Department: 'Sales' is not one
    of the allowed values", not "Department: Department: …")."""
    found = []
    for name, errors in form.errors.items():
        label = str(form.fields[name].label) if name in form.fields else ""
        for error in map(str, errors):
            found.append(error if not label or error.startswith(f"{label}:") else f"{label}: {error}")
    return found


@document_access(audit_as=AuditAction.DOCUMENT_EDIT, writes=True)
@require_POST
def document_notes(request: HttpRequest, access: DocumentAccess) -> HttpResponse:
    document = access.document
    form = NotesForm(request.POST)
    if form.is_valid():
        services.document_set_notes(document, form.cleaned_data["notes"], actor=actor_name(request.user))
        messages.success(request, _("Notes saved."))
    return redirect(reverse("archive:document", args=[document.pk]) + "#notes")


@writer_required
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
                    actor=actor_name(request.user),
                )
                created.append(document)
                new_versions += is_version
        if new_versions:
            messages.success(
                request,
                _("%(files)d file(s) archived, %(versions)d as a new version.")
                % {"files": len(created), "versions": new_versions},
            )
        else:
            messages.success(request, _("%(files)d file(s) archived.") % {"files": len(created)})
        if len(created) == 1:
            return redirect("archive:document", created[0].pk)
        return redirect("archive:table")
    return render(request, "archive/upload.html", {"form": form})


@require_GET
def copy_links(request: HttpRequest) -> HttpResponse:
    """The one copy-link endpoint: ``?ids=1,2,3`` → JSON with title, URL and
    the ready clipboard texts (plain and HTML)."""
    given = [n.strip() for n in request.GET.get("ids", "").split(",") if n.strip()]
    if not all(_DOCUMENT_NUMBER.fullmatch(n) for n in given):
        return JsonResponse({"error": "ids must be document numbers"}, status=400)
    if not given:
        return JsonResponse({"error": "no documents given"}, status=400)
    if len(given) > MAX_LINKS:
        return JsonResponse({"error": f"at most {MAX_LINKS} documents at once"}, status=400)
    numbers = [int(n) for n in given]
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
    go = request.GET.get("go", "").strip()
    if not go:
        return redirect("archive:table")
    if not _DOCUMENT_NUMBER.fullmatch(go) or int(go) > selectors.MAX_DOCUMENT_NUMBER:
        # Not a number of any document (str.isdigit() would take "²").
        raise Http404("No such document")
    # The access link was opened; what the document's page then shows is logged there.
    audit.log(AuditAction.LINK_OPEN, request, document=int(go), details={"link": "legacy"})
    return redirect("archive:document", int(go))


def _shown_as_mail(document: Document) -> DocumentFile:
    """The document's .eml; Http404 for a document not shown as a mail."""
    original = document.original()
    if original is None or _viewer_kind(document, original, ArchiveSettings.load().primary_usage) != "mail":
        raise Http404("No such document")
    return original


def _required_original(access: DocumentAccess) -> DocumentFile:
    assert access.original is not None  # set by document_access(require=_shown_as_mail)
    return access.original


@document_access(public_ok=True, require=_shown_as_mail)
@xframe_options_sameorigin  # the View tab shows it in a sandboxed frame
@require_GET
def mail_body(request: HttpRequest, access: DocumentAccess) -> HttpResponse:
    """The body of a mail as a document of its own, for the View tab's
    ``<iframe sandbox>``; remote images only with ``?remote=1``."""
    document = access.document
    allow_remote = request.GET.get("remote") == "1"
    audit_note(request, part="body", remote=allow_remote)
    body = mailview.mail_body(
        mailview.mail_load(document, _required_original(access)),
        part_url=mailview.part_url_builder(document.pk, None if access.public else request.user),
        allow_remote=allow_remote,
        prefer_text=request.GET.get("format") == "text",
    )
    response = render(request, "archive/mail_body.html", {"body": body, "style": mailhtml.BODY_STYLE})
    response["Content-Security-Policy"] = mailhtml.body_csp(allow_remote=allow_remote)
    # Remote images and opened links learn nothing about the archive's URLs.
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-cache"
    return response


def _part_token_user(request: HttpRequest, number: int) -> selectors.User | None:
    # The body frame is sandboxed (an opaque origin): its image requests carry
    # no session cookie (SameSite). mail_body signed whom it showed the images
    # to; the access check runs again here for that user.
    token = request.GET.get("t")
    return mailview.part_token_user(token, number) if token else None


@document_access(
    public_ok=True, require=_shown_as_mail, signed_user=_part_token_user, audit_as=AuditAction.FILE_DOWNLOAD
)
@require_GET
def mail_part(request: HttpRequest, access: DocumentAccess, part: str) -> HttpResponseBase:
    """One MIME part of a mail (attachment or inline image), from the stored
    file when the mail was processed, else from the .eml itself."""
    document = access.document
    audit_note(request, part=audit.clip(part))
    content = mailview.mail_part_get(document, _required_original(access), part)
    if content is None:
        raise Http404("No such file")
    # Only images are ever shown inline (the body's cid: images); the rest downloads.
    download = request.GET.get("download") == "1" or not mailview.is_inline_image(content.content_type)
    if access.user is not request.user and download:
        # A signed URL shows the body's images, nothing else.
        return redirect_to_login(request.get_full_path())
    if content.file is not None:
        return serve_file(request, content.file, download=download)
    return mailview.serve_part_bytes(content, download=download)


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """The user's dashboard: growth and search coverage of the documents they see."""
    groups = (
        None
        if selectors.sees_everything(request.user)
        else list(selectors.groups_for_user(request.user).values_list("pk", flat=True))
    )
    context = dashboard.growth_and_coverage(groups, now=timezone.now(), subject=_("Your documents"))
    context["alarms"] = context["coverage_alarms"]
    return render(request, "archive/overview.html", context)
