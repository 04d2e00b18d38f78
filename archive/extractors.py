"""Text out of files: plain text, HTML, mail (.eml), PDF, OOXML (docx, xlsx,
pptx) and ODF (odt, ods, odp). Pure functions on bytes — no Django — because
they run in a separate, resource-limited process (``archive.extraction_pool``
keeps ``python -m archive.extractors --serve`` running): a hostile file can exhaust that
process's CPU seconds or memory, never the worker's.

Each extractor also caps what it reads and returns (``Limits``)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
import io
import json
import logging
import re
import sys
import zipfile
from collections.abc import Callable, Iterable
from email.message import Message
from html.parser import HTMLParser
from typing import Any, BinaryIO
from xml.parsers import expat

from archive.charsets import decode_bytes
from archive.mail import MailLimitExceeded, MailLimits, MimeNode, charset_hint, decode_text, walk_mime


class NotExtractable(Exception):
    """The file has no text we can read (an image, an unknown binary): not an error."""


class ExtractionError(Exception):
    """The file claims a format but cannot be read (damaged, encrypted, too big)."""


@dataclasses.dataclass(frozen=True)
class Limits:
    max_text_chars: int = 2_000_000
    max_pdf_pages: int = 2_000
    max_zip_member_bytes: int = 64 * 1024 * 1024  # one XML part of an office file, unpacked
    max_zip_members: int = 2_000
    max_mime_parts: int = 500
    max_mime_depth: int = 20
    max_nesting: int = 3  # an attachment inside a mail inside a mail…


class _Text:
    """Collects text up to a limit; ``full`` tells extractors to stop early."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size >= self.limit

    def add(self, text: str) -> None:
        if text and not self.full:
            text = text[: self.limit - self.size]
            self.parts.append(text)
            self.size += len(text)

    def value(self) -> str:
        return _tidy("".join(self.parts))


def _tidy(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.replace("\r", "\n").split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- detection ---------------------------------------------------------------

_TEXT_EXTENSIONS = {
    ".txt",
    ".text",
    ".csv",
    ".tsv",
    ".md",
    ".log",
    ".json",
    ".xml",
    ".ics",
    ".vcf",
    ".ini",
    ".yaml",
    ".yml",
    ".rtf",
}
_HTML_EXTENSIONS = {".htm", ".html", ".xhtml"}


def _extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot >= 0 else ""


def detect(data: bytes, content_type: str, name: str) -> str | None:
    """The extractor for a file: pdf, ooxml, odf, eml, html, text — or None."""
    ct = (content_type or "").split(";")[0].strip().lower()
    ext = _extension(name)
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data[:4] == b"PK\x03\x04":
        return "zip"
    if ct == "message/rfc822" or ext == ".eml":
        return "eml"
    if ct in ("text/html", "application/xhtml+xml") or ext in _HTML_EXTENSIONS:
        return "html"
    if ct.startswith("text/") or ext in _TEXT_EXTENSIONS or ct in ("application/json", "application/xml"):
        return "text"
    if ct in ("", "application/octet-stream") and _looks_like_text(data[:8192]):
        return "text"
    return None


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\0" in head:
        return False
    try:
        sample = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end
            return False
        sample = head[: exc.start].decode("utf-8")
    printable = sum(1 for c in sample if c.isprintable() or c in "\r\n\t")
    return printable >= 0.95 * max(1, len(sample))


# --- HTML --------------------------------------------------------------------

_BLOCK = {
    "p",
    "div",
    "br",
    "li",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "section",
    "article",
    "blockquote",
    "pre",
    "hr",
    "dd",
    "dt",
    "ul",
    "ol",
    "header",
    "footer",
    "address",
}
_SKIP = {"script", "style", "head", "template", "noscript", "svg", "object"}


class _HTMLToText(HTMLParser):
    def __init__(self, out: _Text) -> None:
        super().__init__(convert_charrefs=True)
        self.out = out
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCK:
            self.out.add("\n")
        elif tag in ("td", "th"):
            self.out.add(" ")
        elif tag == "img" and not self.skipping:
            alt = dict(attrs).get("alt")
            if alt:
                self.out.add(f" {alt} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK:
            self.out.add("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.add(data)


def html_to_text(html: str, limit: int = 2_000_000) -> str:
    out = _Text(limit)
    parser = _HTMLToText(out)
    # Feed in pieces so a huge page stops being parsed once the text is full.
    for start in range(0, len(html), 65536):
        parser.feed(html[start : start + 65536])
        if out.full:
            break
    parser.close()
    return out.value()


# --- PDF ---------------------------------------------------------------------


def pdf_text(data: bytes, limits: Limits) -> str:
    import pypdf
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    out = _Text(limits.max_text_chars)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("the PDF is encrypted with a password")
        for number, page in enumerate(reader.pages):
            if number >= limits.max_pdf_pages or out.full:
                break
            out.add(page.extract_text() or "")
            out.add("\n\n")
    except (
        PyPdfError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        AssertionError,
        RecursionError,
        NotImplementedError,
        OSError,
        UnicodeError,
        ZeroDivisionError,
    ) as exc:
        # pypdf reports damaged files through many exception types.
        raise ExtractionError(f"unreadable PDF: {type(exc).__name__}: {exc}"[:500]) from None
    return out.value()


# --- XML inside office files ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _XMLRules:
    text_in: frozenset[str] | None  # collect character data only inside these elements (None: all)
    breaks: frozenset[str]  # a line break after these
    spaces: frozenset[str] = frozenset()  # a space at these


def _xml_text(
    stream: Iterable[bytes], rules: _XMLRules, out: _Text, on_start: Callable[[str, dict[str, str]], bool] | None = None
) -> None:
    """Streaming (expat): no tree in memory, no recursion. Refuses DTDs, so no
    entity expansion ("billion laughs") — office files never carry one.
    ``on_start`` may veto collecting the text of an element (returns False)."""
    parser = expat.ParserCreate(namespace_separator=" ")
    depth_in = 0
    vetoes: list[bool] = []  # one per open element: did on_start veto it?
    vetoed = 0

    def refuse_doctype(*_: object) -> None:
        raise ExtractionError("XML with a DOCTYPE in an office file")

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth_in, vetoed
        local = name.rsplit(" ", 1)[-1]
        veto = on_start is not None and not on_start(local, attrs)
        vetoes.append(veto)
        vetoed += veto
        if rules.text_in is not None and local in rules.text_in:
            depth_in += 1
        if local in rules.spaces:
            out.add(" ")

    def end(name: str) -> None:
        nonlocal depth_in, vetoed
        local = name.rsplit(" ", 1)[-1]
        vetoed -= vetoes.pop()
        if rules.text_in is not None and local in rules.text_in:
            depth_in -= 1
        if local in rules.breaks:
            out.add("\n")

    def chars(data: str) -> None:
        if (rules.text_in is None or depth_in > 0) and not vetoed:
            out.add(data)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        for chunk in stream:
            parser.Parse(chunk, False)
            if out.full:
                return
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise ExtractionError(f"damaged XML: {exc}") from None


def _member_chunks(zf: zipfile.ZipFile, name: str, limits: Limits) -> Iterable[bytes]:
    """A member's bytes in chunks, refusing more than the limit — whatever its
    header claims (a zip bomb lies there)."""
    info = zf.getinfo(name)
    if info.file_size > limits.max_zip_member_bytes:
        raise ExtractionError(f"{name}: {info.file_size} bytes unpacked, more than the limit")
    read = 0
    with zf.open(info) as fh:
        while chunk := fh.read(65536):
            read += len(chunk)
            if read > limits.max_zip_member_bytes:
                raise ExtractionError(f"{name}: unpacks to more than the limit")
            yield chunk


_DOCX = _XMLRules(
    text_in=frozenset({"t", "delText"}), breaks=frozenset({"p", "br", "cr", "tr"}), spaces=frozenset({"tab", "tc"})
)
_PPTX = _XMLRules(text_in=frozenset({"t"}), breaks=frozenset({"p"}))
_XLSX_STRINGS = _XMLRules(text_in=frozenset({"t"}), breaks=frozenset({"si"}))
_XLSX_SHEET = _XMLRules(text_in=frozenset({"v", "t"}), breaks=frozenset({"row"}), spaces=frozenset({"c"}))
_ODF = _XMLRules(
    text_in=None,
    breaks=frozenset({"p", "h", "table-row", "line-break", "list-item"}),
    spaces=frozenset({"s", "tab", "table-cell"}),
)


def _numbered(names: list[str], pattern: str) -> list[str]:
    rx = re.compile(pattern)
    found = [(int(m.group(1)), n) for n in names if (m := rx.fullmatch(n))]
    return [n for _, n in sorted(found)]


def office_text(data: bytes, limits: Limits) -> str:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ExtractionError(f"damaged ZIP container: {exc}") from None
    if len(names) > limits.max_zip_members:
        raise ExtractionError(f"{len(names)} parts in the ZIP container, more than the limit")
    out = _Text(limits.max_text_chars)
    try:
        parts: list[tuple[str, _XMLRules]]
        if "word/document.xml" in names:
            extra = [n for n in names if re.fullmatch(r"word/(header|footer)\d*\.xml", n)]
            extra += [n for n in ("word/footnotes.xml", "word/endnotes.xml", "word/comments.xml") if n in names]
            parts = [(n, _DOCX) for n in ["word/document.xml", *sorted(extra)]]
        elif "ppt/presentation.xml" in names:
            slides = _numbered(names, r"ppt/slides/slide(\d+)\.xml")
            notes = _numbered(names, r"ppt/notesSlides/notesSlide(\d+)\.xml")
            parts = [(n, _PPTX) for n in slides + notes]
        elif "xl/workbook.xml" in names:
            parts = [(n, _XLSX_STRINGS) for n in ("xl/sharedStrings.xml",) if n in names]
            parts += [(n, _XLSX_SHEET) for n in _numbered(names, r"xl/worksheets/sheet(\d+)\.xml")]
        elif "content.xml" in names and "mimetype" in names:
            mimetype = zf.read("mimetype")[:100]
            if not mimetype.startswith(b"application/vnd.oasis.opendocument"):
                raise NotExtractable("a ZIP file, not an OpenDocument")
            parts = [("content.xml", _ODF)]
        else:
            raise NotExtractable("a ZIP archive, not an office document")
        for name, rules in parts:
            if out.full:
                break
            veto = _xlsx_cell_filter() if rules is _XLSX_SHEET else None
            _xml_text(_member_chunks(zf, name, limits), rules, out, veto)
            out.add("\n")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError) as exc:
        # RuntimeError: an encrypted member; EOFError/OSError: a truncated or damaged one.
        raise ExtractionError(f"damaged office file: {type(exc).__name__}: {exc}"[:500]) from None
    return out.value()


def _xlsx_cell_filter() -> Callable[[str, dict[str, str]], bool]:
    """In a sheet, take a cell's value unless it is an index into the shared
    strings (already taken), a boolean or an error."""

    def allow(local: str, attrs: dict[str, str]) -> bool:
        return not (local == "c" and attrs.get("t") in ("s", "b", "e"))

    return allow


# --- mail ----------------------------------------------------------------------


def _part_text(part: Message, hint: str | None = None) -> str:
    payload = part.get_payload(decode=True)
    return decode_bytes(payload, part.get_content_charset(), hint=hint) if isinstance(payload, bytes) else ""


def _header_lines(msg: Message) -> str:
    """The header fields as the View tab decodes them (``mail.decode_text``)."""
    lines = []
    hint = charset_hint(msg)
    for name in ("From", "To", "Cc", "Bcc", "Subject"):
        for value in msg.get_all(name, []) or []:
            try:
                lines.append(f"{name}: {decode_text(value, hint=hint)}")
            except Exception:  # noqa: BLE001 - a broken header is skipped, the mail is not
                continue
    return "\n".join(lines)


def _alternative(node: MimeNode, subparts: list[Message], hint: str | None = None) -> list[Message]:
    """Of a multipart/alternative, the sender's plain-text rendering if there
    is one with words in it, else the first other one (the HTML)."""
    if node.content_type != "multipart/alternative":
        return subparts
    by_type = {p.get_content_type(): p for p in subparts}
    plain = by_type.get("text/plain")
    if plain is not None and _part_text(plain, hint).strip():
        return [plain]
    return next(([sub] for sub in subparts if sub.get_content_type() != "text/plain"), [])


def _mail_body_text(msg: Message, limits: Limits, skip: frozenset[str], depth: int, out: _Text) -> None:
    """The walk's leaves as text: bodies (HTML as text), forwarded mails with
    their headers, attachments through ``extract_text``. Parts past the limits
    are left out."""
    hint = charset_hint(msg)

    def alternative(node: MimeNode, subparts: list[Message]) -> list[Message]:
        return _alternative(node, subparts, hint)

    walk = walk_mime(
        msg,
        MailLimits(max_depth=limits.max_mime_depth, max_parts=limits.max_mime_parts),
        children=alternative,
        skip_too_deep=True,
    )
    try:
        for node in walk:
            if out.full:
                return
            if node.is_multipart:
                if node.content_type == "message/rfc822":  # a forwarded mail: its headers, then its body
                    for inner in node.children:
                        out.add("\n\n" + _header_lines(inner) + "\n")
                continue
            if node.disposition != "attachment" and node.content_type in ("text/plain", "text/html"):
                text = node.text(hint)
                out.add(
                    (html_to_text(text, limits.max_text_chars) if node.content_type == "text/html" else text) + "\n"
                )
                continue
            _attachment_text(node, limits, skip, depth, out)
    except MailLimitExceeded:
        return


def _attachment_text(node: MimeNode, limits: Limits, skip: frozenset[str], depth: int, out: _Text) -> None:
    payload = node.payload()
    if not payload:
        return
    # An attachment that the archive keeps as a file of its own is extracted there.
    if hashlib.sha256(payload).hexdigest() in skip:
        return
    name = node.raw_filename
    try:
        text = extract_text(payload, node.content_type, name, limits, skip_sha256=skip, depth=depth + 1)
    except (NotExtractable, ExtractionError):
        text = ""
    if name or text:
        out.add(f"\n\n{name}\n{text}\n")


def mail_text(data: bytes, limits: Limits, skip_sha256: frozenset[str] = frozenset(), depth: int = 0) -> str:
    """Headers (From, To, Cc, Subject), the body (HTML as text) and the text of
    attachments that are not archived as files of their own."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    out = _Text(limits.max_text_chars)
    out.add(_header_lines(msg) + "\n\n")
    _mail_body_text(msg, limits, skip_sha256, depth, out)
    return out.value()


# --- dispatch ------------------------------------------------------------------


def extract_text(
    data: bytes,
    content_type: str,
    name: str,
    limits: Limits | None = None,
    *,
    skip_sha256: frozenset[str] = frozenset(),
    depth: int = 0,
) -> str:
    """The text of a file; NotExtractable or ExtractionError otherwise."""
    limits = limits or Limits()
    if depth > limits.max_nesting:
        raise NotExtractable("nested too deeply")
    kind = detect(data, content_type, name)
    if kind == "pdf":
        return pdf_text(data, limits)
    if kind == "zip":
        return office_text(data, limits)
    if kind == "eml":
        return mail_text(data, limits, skip_sha256, depth)
    if kind == "html":
        return html_to_text(decode_bytes(data), limits.max_text_chars)
    if kind == "text":
        return _tidy(decode_bytes(data[: limits.max_text_chars * 4])[: limits.max_text_chars])
    raise NotExtractable(f"no text in {content_type or 'this kind of file'}")


# --- the sandboxed child ---------------------------------------------------------


def _limit_resources(cpu_seconds: int, memory_bytes: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # it reads one file and writes nothing
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _extract_request(request: dict[str, Any]) -> dict[str, Any]:
    """One request (a stored file by path, its limits) → the result as the parent wants it."""
    max_bytes = int(request["max_input_bytes"])
    try:
        with open(request["path"], "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        return {"status": "failed", "error": f"unreadable: {exc}"}
    if len(data) > max_bytes:
        return {"status": "none", "error": f"larger than {max_bytes} bytes: not extracted"}
    try:
        text = extract_text(
            data,
            request["content_type"],
            request["name"],
            Limits(**request["limits"]),
            skip_sha256=frozenset(request.get("skip_sha256", ())),
        )
        return {"status": "done", "text": text}
    except NotExtractable as exc:
        return {"status": "none", "error": str(exc)}
    except ExtractionError as exc:
        return {"status": "failed", "error": str(exc)}
    except MemoryError:
        # The memory limit: this child's heap may be in a bad state — the parent replaces it.
        return {"status": "failed", "error": "MemoryError: the file needs too much (memory limit)", "recycle": True}
    except RecursionError as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: the file needs too much"}


def child_main() -> int:
    """Request (JSON on stdin) → result (JSON on stdout), one file. The parent
    kills us at the wall-clock timeout; the kernel at the CPU and memory limits."""
    request = json.loads(sys.stdin.buffer.read())
    _limit_resources(int(request["cpu_seconds"]), int(request["memory_bytes"]))
    sys.stdout.write(json.dumps(_extract_request(request)))
    return 0


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _limit_cpu_for_next_file(cpu_seconds: int) -> None:
    """RLIMIT_CPU counts the whole process: the soft limit moves to the CPU used
    so far plus this file's allowance (the kernel's limit has whole seconds)."""
    import math
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    resource.setrlimit(resource.RLIMIT_CPU, (used + cpu_seconds, resource.RLIM_INFINITY))


def serve_main() -> int:
    """The reusable child (``archive.extraction_pool``): framed requests on
    stdin (4-byte big-endian length, JSON), framed answers on stdout, until
    stdin closes. The memory limit is set at the first request, the CPU limit
    before each one."""
    import resource

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    limited = False
    while (header := _read_exactly(stdin, 4)) is not None:
        body = _read_exactly(stdin, int.from_bytes(header, "big"))
        if body is None:
            break
        request = json.loads(body)
        if not limited:
            memory = int(request["memory_bytes"])
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # it reads files and writes none
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            limited = True
        _limit_cpu_for_next_file(int(request["cpu_seconds"]))
        try:
            answer = json.dumps(_extract_request(request)).encode()
        except MemoryError:  # the text itself too big to encode under the limit
            answer = json.dumps({"status": "failed", "error": "MemoryError (memory limit)", "recycle": True}).encode()
        stdout.write(len(answer).to_bytes(4, "big") + answer)
        stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve_main() if sys.argv[1:] == ["--serve"] else child_main())
