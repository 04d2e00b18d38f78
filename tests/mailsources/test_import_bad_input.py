"""Bad input in an import: each problem is one clear line in the run history naming
the file and the position, what could be read is archived, the rest goes on."""

from __future__ import annotations

import zipfile

import pytest
from django.contrib.auth.models import Group

from archive import storage
from archive.models import Document, FileRole
from mailsources import pipeline
from mailsources.imports import import_client, import_source_create
from mailsources.models import CursorStatus, FolderCursor, MailLocation, RunStatus
from tests.mailsources.imap_pipeline import mail
from tests.mailsources.import_files import eml_zip, lf, write_mbox


@pytest.fixture
def owner(db: None) -> Group:
    return Group.objects.get_or_create(name="Mail")[0]


def run_import(path, owner):
    source = import_source_create(path, "alice@example.com", owner)
    run = pipeline.source_sync(source.pk, client_factory=lambda s, a: import_client(s))
    assert run is not None
    run.refresh_from_db()
    return source, run


def test_a_truncated_mbox_keeps_its_last_message_as_it_is_and_flags_it(tmp_path, owner):
    path = tmp_path / "cut.mbox"
    write_mbox(path, [lf(mail("whole")), lf(mail("cut off", body="This line is long enough to be cut."))])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 12])
    last = data.rindex(b"\nFrom ") + 1

    source, run = run_import(path, owner)

    assert run.status == RunStatus.PARTIAL and run.new == 2 and run.failed == 1
    assert f"cut.mbox: byte {last}: the file ends inside this message (truncated)" in run.errors
    location = MailLocation.objects.get(source=source, location=str(last))
    assert location.details["truncated"] is True
    stored = storage.read_bytes(location.mail.document.files.get(role=FileRole.ORIGINAL).sha256)
    assert stored == data[last : len(data) - 12].split(b"\n", 1)[1]


def test_files_that_are_not_what_their_names_say_are_named_and_the_others_imported(tmp_path, owner):
    root = tmp_path / "in"
    root.mkdir()
    (root / "empty.mbox").write_bytes(b"")
    (root / "photo.mbox").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    (root / "archive.pst").write_bytes(b"!BDN" + b"\x00" * 1000)
    write_mbox(root / "good.mbox", [lf(mail("good one"))])

    source, run = run_import(root, owner)

    assert run.status == RunStatus.PARTIAL and run.new == 1, run.errors
    assert Document.objects.filter(title="good one").exists()
    assert "empty.mbox: empty file, nothing to import" in run.errors
    assert "photo.mbox: not an MBOX file: no MBOX separator line ('From ...') at byte 0" in run.errors
    assert "archive.pst: not a readable PST/OST file (corrupt, encrypted or password-protected)" in run.errors
    failing = dict(FolderCursor.objects.filter(source=source).values_list("folder", "status"))
    assert failing["photo.mbox"] == CursorStatus.ERROR and failing["good.mbox"] == CursorStatus.OK


def test_a_zip_with_non_mail_unsafe_names_and_a_bomb_imports_only_its_mails(tmp_path, owner, settings):
    settings.IMPORT_ZIP_MAX_RATIO = 100
    path = tmp_path / "export.zip"
    eml_zip(
        path,
        {
            "mails/1.eml": mail("first in zip"),
            "mails/readme.pdf": b"%PDF-1.4 not a mail",
            "../../etc/evil.eml": mail("evil"),
            "bomb.eml": b"\x00" * (20 << 20),
            "mails/2.eml": mail("second in zip"),
            "mails/broken.msg": b"this is no OLE file",
            "Takeout/Mail/All mail.mbox": b"From x\nSubject: y\n\nz\n",
        },
    )

    source, run = run_import(path, owner)

    assert run.new == 2 and run.status == RunStatus.PARTIAL, run.errors
    assert set(Document.objects.values_list("title", flat=True)) == {"first in zip", "second in zip"}
    errors = run.errors
    assert "export.zip: member 2 ('mails/readme.pdf'): not a mail file (.eml, .msg, .emlx), skipped" in errors
    assert "export.zip: member 3 ('../../etc/evil.eml'): unsafe name (an absolute path or '..'), skipped" in errors
    assert "export.zip: member 4 ('bomb.eml'): compressed" in errors and "(a ZIP bomb?)" in errors
    assert "export.zip: member 6 ('mails/broken.msg'): not a readable Outlook .msg file" in errors
    assert "member 7 ('Takeout/Mail/All mail.mbox'): an MBOX inside a ZIP (e.g. a Google Takeout): unpack it" in errors


def test_a_zip_over_the_total_limit_stops_reading_and_says_so(tmp_path, owner, settings):
    settings.IMPORT_ZIP_MAX_TOTAL_BYTES = 5000
    eml_zip(tmp_path / "big.zip", {f"{i}.eml": mail(f"m {i}", body="x" * 1500) for i in range(5)})

    _, run = run_import(tmp_path / "big.zip", owner)

    assert 0 < run.new < 5
    assert "the ZIP unpacks to more than the limit of 5000 bytes in all; the rest is not read" in run.errors


def test_a_file_that_is_not_a_zip(tmp_path, owner):
    (tmp_path / "fake.zip").write_bytes(b"PK but not really")

    _, run = run_import(tmp_path / "fake.zip", owner)

    assert run.new == 0 and "fake.zip: not a readable ZIP file" in run.errors


def test_an_encrypted_zip_member_is_named(tmp_path, owner):
    path = tmp_path / "locked.zip"
    eml_zip(path, {"open.eml": mail("open"), "locked.eml": mail("locked")})
    # Mark the second member encrypted (bit 0 of its flags, in its local header and in the
    # central directory), as a password-protecting ZIP tool would: zipfile then wants a password.
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo("locked.eml").header_offset
    central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)
    data[local + 6] |= 1
    data[central + 8] |= 1
    path.write_bytes(bytes(data))

    _, run = run_import(path, owner)

    assert run.new == 1
    assert "locked.zip: member 2 ('locked.eml'): cannot be unpacked" in run.errors


def test_an_mbox_cut_at_a_line_end_is_caught_by_its_content_length(tmp_path, owner):
    path = tmp_path / "cl.mbox"
    body = b"first line\nsecond line\nthird line\n"
    data = b"From x@example.com Mon Jan  6 09:00:00 2025\n"
    data += f"Subject: cut\nContent-Length: {len(body)}\n\n".encode() + body
    path.write_bytes(data[: -len(b"third line\n")])

    source, run = run_import(path, owner)

    assert run.new == 1 and "byte 0: the file ends inside this message (truncated)" in run.errors
    assert MailLocation.objects.get(source=source).details["truncated"] is True
