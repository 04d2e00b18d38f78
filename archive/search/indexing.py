"""Writing the index: a document's fields, notes, file names and extracted text
become the token stream of its ``SearchEntry``.

Called inside the transaction that changes a document (``archive.services``),
so fields are searchable as soon as the document is committed, and again by
text extraction when a file's text is known. Cheap: one read of the files'
text, one upsert."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Max

from archive import bulk
from archive.models import Document, DocumentFile, FieldDefinition, FieldType, FileRole, SearchEntry
from archive.search import tokens as tk

# Types whose value is not words: a date matches by range (date:2024-03), yes/no by field:yes.
_NOT_WORDS = {FieldType.DATE, FieldType.YESNO}


def _max_index_chars() -> int:
    return int(getattr(settings, "SEARCH_MAX_INDEX_CHARS", 4_000_000))


def stream_options() -> dict[str, bool]:
    """``entry_text``'s keywords for the engine in use (see ``SearchBackend``)."""
    from archive.search.backends import backend_for

    backend = backend_for(SearchEntry.objects.db)
    return {"shingles": backend.shingles, "months": backend.month_tokens}


def _field_types() -> dict[str, str]:
    return dict(FieldDefinition.objects.values_list("name", "type"))


def entry_text(
    document: Document,
    files: Iterable[tuple[str, str]],
    field_types: dict[str, str],
    *,
    shingles: bool = False,
    months: bool = False,
) -> str:
    """The token stream of a document. ``files`` are (name, extracted text);
    ``shingles``: add word-pair tokens (the MariaDB engine matches phrases by
    them) and cap each token's repeats (``tokens.capped``: no positions needed);
    ``months``: begin with the month token of the document date, where no cap
    on the length can cut it off (``tokens.month_token``).

    Fields, notes and file names come first and file text last, so the cap on
    a huge attachment's text never cuts a field off."""
    plain: list[str] = [tk.month_token(document.date)] if months and document.date else []
    fielded: list[str] = []

    def add(text: str, field: str) -> None:
        folded = tk.words(text)
        plain.extend(tk.padded(folded))
        prefix = tk.field_prefix(field)
        fielded.extend(tk.prefixed(prefix, folded))
        if shingles:
            plain.extend(tk.shingles(folded))
            fielded.extend(tk.shingles(folded, prefix))

    for name, value in document.values.items():
        if value in (None, "") or isinstance(value, bool):
            continue
        if field_types.get(name, FieldType.TEXT) in _NOT_WORDS:
            continue
        add(str(value), name)
    if document.notes:
        add(document.notes, "notes")
    texts = []
    for name, text in files:
        add(name, "file")
        if text:
            texts.append(text)
    out = " ".join(plain + fielded)
    limit = _max_index_chars()
    for text in texts:
        room = limit - len(out) - 1
        if room <= 0:
            break
        folded = tk.words(text[:room])
        chunk = " ".join(tk.padded(folded))
        if shingles:
            chunk += " " + " ".join(tk.shingles(folded))
        out = f"{out} {chunk}" if out and chunk else out or chunk
    if len(out) > limit:  # padding and pairs make the tokens longer than their text
        out = out[:limit].rsplit(" ", 1)[0]
    # MariaDB's entry needs no word positions (phrases are pairs): repeats capped.
    return tk.capped(out) if shingles else out


def _current_files(files: list[DocumentFile]) -> list[tuple[str, str]]:
    """The newest version of the original and the files of that version: older
    versions are kept, but a search should find what the document says now."""
    originals = [f.version for f in files if f.role == FileRole.ORIGINAL]
    newest = max(originals) if originals else None
    return [(f.name, f.text) for f in files if newest is None or f.version == newest]


@transaction.atomic
def index_document(document: Document | int) -> None:
    """(Re)write the index entry of one document from what the database holds now.
    Call it in the transaction of any change to a document's fields, notes or
    files' text. (The owner group is not in the entry: access is checked on the
    document row, so an owner change takes effect at once.)"""
    if isinstance(document, int):
        # Lock the row: a concurrent field edit and this rewrite cannot interleave.
        found = Document.objects.select_for_update().filter(pk=document).first()
        if found is None:
            return
        document = found
    files = list(DocumentFile.objects.filter(document_id=document.pk).only("name", "text", "role", "version"))
    text = entry_text(document, _current_files(files), _field_types(), **stream_options())
    SearchEntry.objects.update_or_create(document_id=document.pk, defaults={"text": text})


def index_new_documents(
    documents: list[Document], files: dict[int, list[DocumentFile]], field_types: dict[str, str]
) -> None:
    """The entries of documents created in this transaction, from the rows in hand
    (``documents_create_many``): no re-read, one INSERT — they have no entry yet."""
    options = stream_options()
    bulk.create(
        [
            SearchEntry(
                document_id=d.pk,
                text=entry_text(d, _current_files(files.get(d.pk, [])), field_types, **options),
            )
            for d in documents
        ]
    )


def index_documents(numbers: list[int]) -> int:
    """Rewrite the entries of many documents in a few queries (``reindex``)."""
    documents = list(Document.objects.filter(pk__in=numbers).only("pk", "values", "notes", "date"))
    newest = dict(
        DocumentFile.objects.filter(document_id__in=numbers, role=FileRole.ORIGINAL)
        .values("document_id")
        .annotate(v=Max("version"))
        .values_list("document_id", "v")
    )
    files: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for doc_id, name, text, version in (
        DocumentFile.objects.filter(document_id__in=numbers)
        .values_list("document_id", "name", "text", "version")
        .order_by("document_id", "role", "id")
    ):
        if doc_id not in newest or version == newest[doc_id]:
            files[doc_id].append((name, text))
    field_types = _field_types()
    options = stream_options()
    entries = [
        SearchEntry(document_id=d.pk, text=entry_text(d, files[d.pk], field_types, **options)) for d in documents
    ]
    # MySQL's upsert has no conflict target (the primary key is the only unique key).
    features = connections[SearchEntry.objects.db].features
    target = ["document"] if features.supports_update_conflicts_with_target else None
    for chunk in _by_size(entries, STATEMENT_BYTES):
        SearchEntry.objects.bulk_create(
            chunk, update_conflicts=True, unique_fields=target, update_fields=["text", "indexed"]
        )
    return len(entries)


# A statement's text at most (more than one entry): MariaDB refuses a statement
# longer than max_allowed_packet (16 MB by default), and 500 mails' entries are more.
STATEMENT_BYTES = 4 * 1024 * 1024


def _by_size(entries: list[SearchEntry], limit: int) -> Iterable[list[SearchEntry]]:
    """The entries in runs of at most ``limit`` bytes of text (an entry longer
    than that on its own)."""
    chunk: list[SearchEntry] = []
    size = 0
    for entry in entries:
        n = len(entry.text) if entry.text.isascii() else len(entry.text.encode())
        if chunk and size + n > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += n
    if chunk:
        yield chunk
