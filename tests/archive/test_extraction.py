"""Text extraction: each supported format from small files the tests build,
the limits that keep a hostile file from stalling a worker, and what happens
to a file (and its document) when extraction fails."""

from __future__ import annotations

import io
import sys
import zipfile
from email.message import EmailMessage

import pytest
from django.conf import settings

from archive import extraction, search, services, storage
from archive.extractors import ExtractionError, Limits, NotExtractable, extract_text
from archive.models import DocumentFile, DocumentKind, ExtractionStatus

# --- fixture files --------------------------------------------------------------


def make_pdf(*lines: str) -> bytes:
    """A one-page PDF with the lines in Helvetica."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    stream = "BT /F1 12 Tf 72 720 Td " + " ".join(f"({esc(line)}) Tj 0 -16 Td" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        " /Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1"))
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def make_zip(members: dict[str, str | bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
A = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'
S = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
CT = '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'


def make_docx(*paragraphs: str, document_xml: str | None = None) -> bytes:
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    return make_zip(
        {
            "[Content_Types].xml": CT,
            "word/document.xml": document_xml
            or f'<?xml version="1.0"?><w:document {W}><w:body>{body}</w:body></w:document>',
            "word/footer1.xml": f"<w:ftr {W}><w:p><w:r><w:t>Footer Zeile</w:t></w:r></w:p></w:ftr>",
        }
    )


def make_xlsx() -> bytes:
    return make_zip(
        {
            "[Content_Types].xml": CT,
            "xl/workbook.xml": f"<workbook {S}/>",
            "xl/sharedStrings.xml": f"<sst {S}><si><t>Quarterly</t></si><si><t>Turnover</t></si></sst>",
            "xl/worksheets/sheet1.xml": (
                f'<worksheet {S}><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c>'
                '<c r="B1"><v>4711</v></c><c r="C1" t="b"><v>1</v></c>'
                '<c r="D1" t="inlineStr"><is><t>inline words</t></is></c></row></sheetData></worksheet>'
            ),
        }
    )


def make_pptx() -> bytes:
    slide = (
        f'<p:sld xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" {A}>'
        "<a:p><a:r><a:t>Roadmap</a:t></a:r></a:p><a:p><a:r><a:t>Milestones ahead</a:t></a:r></a:p></p:sld>"
    )
    return make_zip(
        {
            "[Content_Types].xml": CT,
            "ppt/presentation.xml": "<p:presentation xmlns:p='x'/>",
            "ppt/slides/slide2.xml": slide.replace("Roadmap", "Second"),
            "ppt/slides/slide1.xml": slide,
        }
    )


def make_odt() -> bytes:
    content = (
        '<?xml version="1.0"?><office:document-content'
        ' xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>'
        "<text:h>Protokoll</text:h><text:p>Sitzung vom <text:span>Montag</text:span>"
        "<text:s/>mit Traktanden</text:p></office:text></office:body></office:document-content>"
    )
    return make_zip({"mimetype": "application/vnd.oasis.opendocument.text", "content.xml": content})


def make_mail(
    *,
    subject: str = "Offer",
    body: str = "Hello",
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),
    charset: str = "utf-8",
) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.com>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = subject
    msg.set_content(body, charset=charset)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for name, ctype, data in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return bytes(msg)


# --- formats ------------------------------------------------------------------------


def test_it_extracts_plain_text_in_utf8_and_windows_1252():
    assert extract_text("Grüße aus Zürich".encode(), "text/plain", "a.txt") == "Grüße aus Zürich"
    assert extract_text("Grüße aus Zürich".encode("cp1252"), "text/plain", "a.txt") == "Grüße aus Zürich"
    assert extract_text("mit BOM".encode("utf-16"), "text/plain", "a.txt") == "mit BOM"


def test_it_converts_html_to_text_without_scripts_and_styles():
    html = (
        "<html><head><title>t</title><style>p{color:red}</style></head><body><p>First&nbsp;para</p>"
        "<script>alert('x')</script><div>Second &amp; last</div><img alt='Logo'></body></html>"
    )
    text = extract_text(html.encode(), "text/html", "page.html")
    assert "First\xa0para" in text or "First para" in text
    assert "Second & last" in text and "Logo" in text
    assert "alert" not in text and "color" not in text


def test_it_extracts_pdf_text():
    text = extract_text(make_pdf("Quarterly report 2024", "Invoice number 4711"), "application/pdf", "r.pdf")
    assert "Quarterly report 2024" in text
    assert "Invoice number 4711" in text


def test_it_extracts_docx_with_footers():
    text = extract_text(make_docx("Vertrag mit der Muster AG", "Zweiter Absatz"), "", "contract.docx")
    assert "Vertrag mit der Muster AG" in text
    assert "Zweiter Absatz" in text and "Footer Zeile" in text


def test_it_extracts_xlsx_strings_and_numbers_but_not_string_indexes():
    text = extract_text(make_xlsx(), "application/octet-stream", "sheet.xlsx")
    assert "Quarterly" in text and "Turnover" in text and "4711" in text and "inline words" in text
    assert "0" not in text.split()  # the shared-string index of A1


def test_it_extracts_pptx_slides_in_order():
    text = extract_text(make_pptx(), "", "deck.pptx")
    assert text.index("Roadmap") < text.index("Second")
    assert "Milestones ahead" in text


def test_it_extracts_odf_text():
    text = extract_text(make_odt(), "application/vnd.oasis.opendocument.text", "minutes.odt")
    assert "Protokoll" in text
    assert "Sitzung vom Montag mit Traktanden" in text


def test_it_extracts_a_mail_body_preferring_plain_text_and_including_unstored_attachments():
    pdf = make_pdf("Attached price list")
    raw = make_mail(
        subject="Angebot Nr. 12",
        body="Guten Tag, anbei das Angebot.",
        html="<p>HTML version</p>",
        attachments=[("prices.pdf", "application/pdf", pdf)],
    )
    text = extract_text(raw, "message/rfc822", "mail.eml")
    assert "Subject: Angebot Nr. 12" in text and "From: Alice Example <alice@example.com>" in text
    assert "Guten Tag, anbei das Angebot." in text
    assert "HTML version" not in text  # the alternative, not both
    assert "prices.pdf" in text and "Attached price list" in text


def test_it_skips_mail_attachments_that_are_archived_as_files_of_their_own():
    import hashlib

    pdf = make_pdf("Attached price list")
    raw = make_mail(attachments=[("prices.pdf", "application/pdf", pdf)])
    text = extract_text(raw, "message/rfc822", "mail.eml", skip_sha256=frozenset({hashlib.sha256(pdf).hexdigest()}))
    assert "Attached price list" not in text


def test_it_converts_an_html_only_mail_and_decodes_its_charset():
    msg = EmailMessage()
    msg["Subject"] = "Newsletter"
    msg.set_content(
        "<h1>Grüezi</h1><p>Neuigkeiten &amp; mehr</p><style>.x{}</style>", subtype="html", charset="iso-8859-1"
    )
    text = extract_text(bytes(msg), "message/rfc822", "n.eml")
    assert "Grüezi" in text and "Neuigkeiten & mehr" in text and ".x{}" not in text


def test_images_and_unknown_binaries_are_not_extractable():
    with pytest.raises(NotExtractable):
        extract_text(b"\x89PNG\r\n\x1a\n\0\0\0", "image/png", "photo.png")
    with pytest.raises(NotExtractable):
        extract_text(b"\0\1\2\3binary", "application/octet-stream", "blob.bin")
    with pytest.raises(NotExtractable):
        extract_text(make_zip({"a.txt": "x"}), "application/zip", "files.zip")


# --- limits ---------------------------------------------------------------------------


def test_a_damaged_pdf_is_an_extraction_error():
    with pytest.raises(ExtractionError):
        extract_text(b"%PDF-1.4\n1 0 obj << /Type /Catalog broken", "application/pdf", "bad.pdf")


def test_a_zip_bomb_is_refused():
    bomb = make_zip({"[Content_Types].xml": CT, "word/document.xml": b"<w:document>" + b" " * 5_000_000})
    assert len(bomb) < 50_000
    with pytest.raises(ExtractionError, match="limit"):
        extract_text(bomb, "", "bomb.docx", Limits(max_zip_member_bytes=1_000_000))


def test_xml_entity_expansion_is_refused():
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        f"<w:document {W}><w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>"
    )
    with pytest.raises(ExtractionError, match="DOCTYPE"):
        extract_text(make_docx(document_xml=laughs), "", "lol.docx")


def test_extracted_text_is_capped():
    text = extract_text(("word " * 100_000).encode(), "text/plain", "big.txt", Limits(max_text_chars=1000))
    assert len(text) <= 1000


# --- the sandboxed run, and the service ------------------------------------------------


def _archive(
    group,
    name: str,
    data: bytes,
    *,
    kind: str = DocumentKind.DOCUMENT,
    values: dict | None = None,
    content_type: str = "",
):
    blob = storage.put_bytes(data)
    return services.document_create(
        owner_group=group,
        values={"title": name, **(values or {})},
        kind=kind,
        files=[services.NewFile(name=name, blob=blob, content_type=content_type)],
    )


@pytest.fixture
def queued(monkeypatch) -> list[tuple[int, float | None]]:
    """Tasks queued for extraction: (document number, countdown), instead of a broker."""
    sent: list[tuple[int, float | None]] = []
    monkeypatch.setattr(extraction, "enqueue_document", lambda number, countdown=None: sent.append((number, countdown)))
    monkeypatch.setattr(extraction, "enqueue_documents", lambda numbers: sent.extend((n, None) for n in numbers))
    return sent


def test_archiving_schedules_extraction_after_commit(db, group_a, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        document = _archive(group_a, "notes.txt", b"some text")
        assert queued == []  # nothing is queued before the commit
    assert queued == [(document.pk, None)]


@pytest.mark.django_db(transaction=True)
def test_extraction_stores_text_and_makes_it_searchable(group_a, alice):
    document = _archive(group_a, "report.pdf", make_pdf("Photovoltaik Jahresbericht"), content_type="application/pdf")
    assert not search.search_documents(alice, "photovoltaik").documents.exists()

    from archive.tasks import extract_document

    extract_document(document.pk)  # the task body, run here

    file = DocumentFile.objects.get(document=document)
    assert file.extraction_status == ExtractionStatus.DONE
    assert file.extraction_attempts == 1 and file.extraction_error == ""
    assert "Photovoltaik Jahresbericht" in file.text
    assert list(search.search_documents(alice, "photovoltaik").documents) == [document]


@pytest.mark.django_db(transaction=True)
def test_a_mail_body_is_extracted_from_the_eml(group_a, alice):
    raw = make_mail(
        subject="Lieferung", body="Die Palette kommt am Dienstag.", html="<p>Die Palette kommt am Dienstag.</p>"
    )
    document = _archive(
        group_a, "mail.eml", raw, kind=DocumentKind.MAIL, content_type="message/rfc822", values={"subject": "Lieferung"}
    )
    extraction.extract_document(document.pk)
    assert list(search.search_documents(alice, '"palette kommt"').documents) == [document]


@pytest.mark.django_db(transaction=True)
def test_a_failed_extraction_is_recorded_retried_and_leaves_the_fields_searchable(group_a, alice, queued):
    document = _archive(
        group_a,
        "broken.pdf",
        b"%PDF-1.4 not really",
        content_type="application/pdf",
        values={"subject": "Kaputtes Dokument"},
    )
    assert queued == [(document.pk, None)]  # at commit
    queued.clear()
    retries = queued
    extraction.extract_document(document.pk)

    file = DocumentFile.objects.get(document=document)
    assert file.extraction_status == ExtractionStatus.FAILED
    assert file.extraction_attempts == 1
    assert "attempt 1 of 3" in file.extraction_error and "PDF" in file.extraction_error
    # The first retry after one attempt: EXTRACTION_RETRY_SECONDS, ±20 % jitter.
    assert len(retries) == 1 and retries[0][0] == document.pk
    assert 0.8 * settings.EXTRACTION_RETRY_SECONDS <= retries[0][1] <= 1.2 * settings.EXTRACTION_RETRY_SECONDS
    assert list(search.search_documents(alice, "kaputtes").documents) == [document]

    extraction.extract_document(document.pk)
    extraction.extract_document(document.pk)
    extraction.extract_document(document.pk)  # attempts used up: nothing more happens
    file.refresh_from_db()
    assert file.extraction_attempts == 3 and file.extraction_status == ExtractionStatus.FAILED
    assert len(retries) == 2  # after attempts 1 and 2; none after the last

    assert extraction.reset_failed([document.pk]) == 1
    file.refresh_from_db()
    assert (file.extraction_status, file.extraction_attempts) == (ExtractionStatus.PENDING, 0)


@pytest.mark.django_db(transaction=True)
def test_an_unreadable_store_postpones_extraction_without_using_up_its_attempts(group_a, alice, queued):
    document = _archive(group_a, "report.pdf", make_pdf("Wartungsvertrag Heizung"), content_type="application/pdf")
    file = DocumentFile.objects.get(document=document)
    blob = storage.blob_path(file.sha256)
    kept = blob.read_bytes()
    blob.unlink()  # the store is not mounted, restored from a backup, ...
    queued.clear()

    for _ in range(5):  # more tries than attempts exist: an outage uses none of them
        extraction.extract_document(document.pk)
    file.refresh_from_db()
    assert (file.extraction_status, file.extraction_attempts) == (ExtractionStatus.FAILED, 0)
    assert file.extraction_error.startswith("will retry, not the file's fault: the store is not readable: blob ")
    assert [number for number, _countdown in queued] == [document.pk] * 5  # each one retried later

    blob.write_bytes(kept)  # the store is back
    extraction.extract_document(document.pk)
    file.refresh_from_db()
    assert (file.extraction_status, file.extraction_attempts) == (ExtractionStatus.DONE, 1)
    assert list(search.search_documents(alice, "wartungsvertrag").documents) == [document]


@pytest.mark.django_db(transaction=True)
def test_a_hanging_extractor_is_killed_at_the_timeout(group_a, monkeypatch, settings, queued):
    settings.EXTRACTION_TIMEOUT_SECONDS = 1
    monkeypatch.setattr(extraction, "EXTRACTOR_COMMAND", [sys.executable, "-c", "import time; time.sleep(60)"])
    document = _archive(group_a, "slow.pdf", make_pdf("x"))
    extraction.extract_document(document.pk)
    file = DocumentFile.objects.get(document=document)
    assert file.extraction_status == ExtractionStatus.FAILED
    assert "timed out after 1 s" in file.extraction_error


def test_the_child_process_runs_under_a_memory_limit(tmp_path, monkeypatch, settings):
    """A file that needs more memory than allowed kills only the child."""
    settings.EXTRACTION_MEMORY_MB = 300
    hog = (
        "import sys, json; from archive.extractors import _limit_resources, _read_exactly; "
        "h = _read_exactly(sys.stdin.buffer, 4); "
        "r = json.loads(_read_exactly(sys.stdin.buffer, int.from_bytes(h, 'big'))); "
        "_limit_resources(r['cpu_seconds'], r['memory_bytes']); "
        "x = bytearray(1024 ** 3)"
    )
    monkeypatch.setattr(extraction, "EXTRACTOR_COMMAND", [sys.executable, "-c", hog])
    path = tmp_path / "f.txt"
    path.write_bytes(b"x")
    outcome = extraction.run_sandboxed(str(path), "text/plain", "f.txt")
    assert outcome.status == ExtractionStatus.FAILED
    assert "memory limit" in outcome.error


def test_the_real_child_extracts_and_reports_unextractable_files(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert extraction.run_sandboxed(str(path), "image/png", "photo.png").status == ExtractionStatus.NONE
    path = tmp_path / "r.pdf"
    path.write_bytes(make_pdf("Sandboxed text"))
    outcome = extraction.run_sandboxed(str(path), "application/pdf", "r.pdf")
    assert outcome.status == ExtractionStatus.DONE and "Sandboxed text" in outcome.text


def test_files_over_the_size_limit_are_not_extracted(tmp_path, settings):
    settings.EXTRACTION_MAX_BYTES = 10
    path = tmp_path / "big.txt"
    path.write_bytes(b"more than ten bytes")
    outcome = extraction.run_sandboxed(str(path), "text/plain", "big.txt")
    assert outcome.status == ExtractionStatus.NONE and "larger than 10 bytes" in outcome.error


@pytest.mark.django_db(transaction=True)
def test_the_sweep_requeues_stale_pending_files_and_gives_up_on_exhausted_ones(group_a, queued):
    import datetime as dt

    from django.utils import timezone

    lost = _archive(group_a, "lost.txt", b"lost task")
    _archive(group_a, "fresh.txt", b"just archived")  # not stale yet: left alone
    exhausted = _archive(group_a, "exhausted.txt", b"killed three times", content_type="text/plain")
    old = timezone.now() - dt.timedelta(hours=2)
    DocumentFile.objects.filter(document__in=[lost, exhausted]).update(created=old)
    DocumentFile.objects.filter(document=exhausted).update(extraction_attempts=3)
    queued.clear()  # the tasks queued at archiving "were lost"

    assert extraction.extraction_sweep() == 1
    assert queued == [(lost.pk, None)]
    file = DocumentFile.objects.get(document=exhausted)
    assert file.extraction_status == ExtractionStatus.FAILED
    # What was being extracted when the workers died: the file, its document, size and type.
    assert file.extraction_error == (
        "gave up: 3 attempts did not finish (worker killed?) on the file "
        f'"exhausted.txt" of document {exhausted.pk} (18 bytes, text/plain)'
    )


def test_a_batch_of_documents_is_scheduled_after_commit(db, monkeypatch, django_capture_on_commit_callbacks):
    queued: list[list[int]] = []
    monkeypatch.setattr(extraction, "enqueue_documents", queued.append)
    numbers = list(range(1, extraction.DOCUMENTS_PER_TASK + 3))
    with django_capture_on_commit_callbacks(execute=True):
        extraction.schedule_for_documents(numbers)
        assert queued == []
    assert queued == [numbers[: extraction.DOCUMENTS_PER_TASK], numbers[extraction.DOCUMENTS_PER_TASK :]]


# --- Queueing by name: the tasks import extraction, never the other way round -----------------


def test_extraction_queues_the_archive_tasks_by_their_registered_names(monkeypatch):
    from celery import current_app

    from archive import tasks

    sent = []
    monkeypatch.setattr(
        current_app.amqp, "send_task_message", lambda producer, name, message, **options: sent.append((name, message))
    )
    extraction.enqueue_document(7, countdown=30)
    extraction.enqueue_documents([8, 9])

    assert [(name, list(message.body[0])) for name, message in sent] == [
        ("archive.tasks.extract_document", [7]),
        ("archive.tasks.extract_documents", [[8, 9]]),
    ]
    assert current_app.tasks["archive.tasks.extract_document"].run is tasks.extract_document.run
    assert current_app.tasks["archive.tasks.extract_documents"].run is tasks.extract_documents.run


def test_no_archive_service_imports_the_tasks():
    import ast
    from pathlib import Path

    importers = []
    for path in sorted(Path(settings.BASE_DIR, "archive").rglob("*.py")):
        if path.name == "tasks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names] + [str(node.module)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n == "archive.tasks" or n.startswith("archive.tasks.") for n in names):
                importers.append(str(path.relative_to(settings.BASE_DIR)))
    assert importers == []
