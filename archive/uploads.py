"""Upload size limits, enforced while the request body streams in.

``UploadLimitHandler`` runs first in ``FILE_UPLOAD_HANDLERS``: every chunk of
every file passes through it before Django's memory or temporary-file handlers
keep it, so an upload over the limit stops as soon as its running byte count
crosses it — not after gigabytes sit in a temporary file. A request whose
``Content-Length`` is already over the per-request limit stops at its first
file without reading the rest. The view asks :func:`upload_refusal` and answers
413; nothing reaches the store, and Django closes (deletes) the temporary files.
"""

from __future__ import annotations

from typing import IO

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext

# Where the refusal is noted on the request: a WSGI-environ-style key, so the
# handler and the view share it without a new attribute on HttpRequest.
REFUSAL_KEY = "webadmin.upload_refusal"


def limits_message() -> str:
    return gettext(
        "Nothing was stored: the upload is too large. Each file may have at most %(file)s, "
        "one upload at most %(upload)s in all."
    ) % {"file": filesizeformat(settings.MAX_UPLOAD_BYTES), "upload": filesizeformat(settings.MAX_UPLOAD_REQUEST_BYTES)}


def upload_refusal(request: HttpRequest) -> str:
    """Why the request's upload was stopped, or "" if it was not.

    Reads the body (through the limit handler) if nothing has read it yet."""
    if request.method == "POST":
        request.FILES  # noqa: B018 - parses the body; the handler notes a refusal
    refusal = request.META.get(REFUSAL_KEY, "")
    return str(refusal)


class UploadLimitHandler(FileUploadHandler):
    """Counts the bytes of each file and of the whole request as they arrive;
    passes every chunk on unchanged to the next handler while under the limits."""

    def handle_raw_input(
        self,
        input_data: IO[bytes],
        META: dict[str, str],
        content_length: int,
        boundary: str,
        encoding: str | None = None,
    ) -> None:
        self.file_limit: int = settings.MAX_UPLOAD_BYTES
        self.request_limit: int = settings.MAX_UPLOAD_REQUEST_BYTES
        self.request_bytes = 0
        self.file_bytes = 0
        # Decided up front, acted on at the first file: the form fields before
        # it (the CSRF token among them) are still read, so the answer is a
        # clear 413 rather than a CSRF failure.
        self.declared_too_large = content_length > self.request_limit

    def new_file(
        self,
        field_name: str,
        file_name: str,
        content_type: str,
        content_length: int | None,
        charset: str | None = None,
        content_type_extra: dict[str, bytes] | None = None,
    ) -> None:
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)
        if self.declared_too_large:
            self._refuse(read_the_rest=False)
        self.file_bytes = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.file_bytes += len(raw_data)
        self.request_bytes += len(raw_data)
        if self.request_bytes > self.request_limit:
            self._refuse(read_the_rest=False)
        if self.file_bytes > self.file_limit:
            # The rest of the body is at most the request limit (Content-Length
            # was checked): read and drop it so the client gets to see the answer.
            self._refuse(read_the_rest=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler builds the file

    def _refuse(self, *, read_the_rest: bool) -> None:
        if self.request is not None:
            self.request.META[REFUSAL_KEY] = limits_message()
        raise StopUpload(connection_reset=not read_the_rest)
