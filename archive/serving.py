"""Serving archived bytes defensively: explicit disposition, nosniff, a strict
CSP, and HTTP Range requests so video and audio are seekable.

PDFs are never shown inline: a browser's own PDF viewer runs the JavaScript a
PDF may carry. The View tab renders them with PDF.js (scripting off) from the
same URL, which answers a browser's navigation with a download."""

from __future__ import annotations

import re
from typing import TypeVar

from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.http import content_disposition_header

from archive import storage
from archive.models import DocumentFile

# Types a browser may show inline; everything else is a download.
INLINE_PREFIXES = ("image/", "video/", "audio/")
INLINE_EXACT = {"text/plain"}
# SVG and PDF can carry script; never inline.
NEVER_INLINE = {"image/svg+xml", "application/pdf"}

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

FILE_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"


def is_inline_type(content_type: str) -> bool:
    if content_type in NEVER_INLINE:
        return False
    return content_type in INLINE_EXACT or content_type.startswith(INLINE_PREFIXES)


_Response = TypeVar("_Response", bound=HttpResponseBase)


def serve_file(request: HttpRequest, file: DocumentFile, *, download: bool = False) -> HttpResponseBase:
    inline = is_inline_type(file.content_type) and not download
    content_type = file.content_type if inline else "application/octet-stream"
    if content_type == "text/plain":
        content_type = "text/plain; charset=utf-8"
    size = file.size
    status = 200
    start, length = 0, size
    header = request.headers.get("Range", "")
    match = _RANGE.match(header.strip()) if header else None
    if header and match and (match.group(1) or match.group(2)):
        first, last = match.group(1), match.group(2)
        if first:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        else:  # suffix range: the last N bytes
            start = max(0, size - int(last))
            end = size - 1
        if start >= size or end < start:
            unsatisfiable = HttpResponse(status=416)
            unsatisfiable["Content-Range"] = f"bytes */{size}"
            return _harden(unsatisfiable, file, inline)
        status, length = 206, end - start + 1
    response = StreamingHttpResponse(
        storage.iter_range(file.sha256, start, length), status=status, content_type=content_type
    )
    response["Content-Length"] = str(length)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    return _harden(response, file, inline)


def _harden(response: _Response, file: DocumentFile, inline: bool) -> _Response:
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = content_disposition_header(not inline, file.name) or "attachment"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = FILE_CSP
    response["Cache-Control"] = "private, max-age=3600"
    response["ETag"] = f'"{file.sha256}"'
    return response
