"""Posters for the media table. No image processing on the server: an image
is its own thumbnail (scaled by the browser), a video shows the frame the
browser decodes from its first bytes (``#t=`` media fragment); anything else
gets a type badge, because we cannot honestly show more without decoding it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from archive.models import Document, DocumentFile, FileRole
from archive.serving import is_inline_type


@dataclasses.dataclass(frozen=True)
class Poster:
    kind: str  # "image", "video" or "badge"
    file_id: int
    name: str
    badge: str = ""


def poster_for_file(file: DocumentFile) -> Poster:
    ct = file.content_type
    if ct.startswith("image/") and is_inline_type(ct):
        return Poster("image", file.pk, file.name)
    if ct.startswith("video/"):
        return Poster("video", file.pk, file.name)
    if ct.startswith("audio/"):
        return Poster("badge", file.pk, file.name, "♪ audio")
    ext = file.name.rsplit(".", 1)[-1].upper() if "." in file.name else "FILE"
    return Poster("badge", file.pk, file.name, ext[:6])


def posters_for(documents: Iterable[Document]) -> dict[int, Poster]:
    """The newest original of each document as a poster, in one query."""
    numbers = [d.pk for d in documents]
    if not numbers:
        return {}
    newest: dict[int, DocumentFile] = {}
    files = (
        DocumentFile.objects.filter(document_id__in=numbers, role=FileRole.ORIGINAL)
        .order_by("document_id", "-version", "-id")
        .only("id", "document_id", "name", "content_type", "version")
    )
    for file in files:
        newest.setdefault(file.document_id, file)
    return {number: poster_for_file(file) for number, file in newest.items()}
