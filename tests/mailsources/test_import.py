"""Imports of existing archives through the ingestion pipeline: each MBOX variant,
Thunderbird trees, Apple Mail packages, .eml directories and ZIPs — every message
archived byte for byte as the independent reader (``mailbox``, ``zipfile``) gives
it, every location recorded, and a second run neither reads nor adds anything."""

from __future__ import annotations

import email
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive import storage
from archive.models import Document, FileRole
from mailsources import pipeline
from mailsources.clients.imports import mbox
from mailsources.imports import import_client, import_source_create
from mailsources.models import ArchivedMail, FolderCursor, MailLocation, MailSource, RunStatus, SourceKind
from tests.mailsources.imap_pipeline import mail
from tests.mailsources.import_files import eml_zip, lf, mboxcl2_file, mboxrd_file, thunderbird_tree, write_mbox


@pytest.fixture
def owner(db: None) -> Group:
    return Group.objects.get_or_create(name="Mail")[0]


def run_import(path: Path, owner: Group, fmt: str = "auto", address: str = "alice@example.com"):
    source = import_source_create(path, address, owner, fmt)
    run = pipeline.source_sync(source.pk, client_factory=lambda s, a: import_client(s))
    assert run is not None
    return source, run


def archived(source: MailSource) -> dict[tuple[str, str], bytes]:
    """{(folder, location): stored original} of every location of the import."""
    result = {}
    for location in MailLocation.objects.filter(source=source).select_related("mail__document"):
        original = location.mail.document.files.get(role=FileRole.ORIGINAL)
        result[(location.folder, location.location)] = storage.read_bytes(original.sha256)
    return result


def test_a_thunderbird_tree_is_archived_byte_for_byte_folder_by_folder(tmp_path, owner):
    expected = thunderbird_tree(tmp_path / "Local Folders")

    source, run = run_import(tmp_path / "Local Folders", owner)

    assert run.status == RunStatus.OK, run.errors
    assert (run.new, run.duplicate, run.failed) == (7, 0, 0)
    assert source.kind == SourceKind.IMPORT
    got = archived(source)
    for folder, raws in expected.items():
        mine = [raw for (f, _), raw in sorted(got.items(), key=lambda i: (i[0][0], int(i[0][1]))) if f == folder]
        assert mine == raws, folder
    # Locations name the file and the byte offset of each message's separator line.
    offsets = sorted(int(loc) for f, loc in got if f == "Inbox")
    data = (tmp_path / "Local Folders" / "Inbox").read_bytes()
    assert all(data[o : o + 5] == b"From " for o in offsets) and offsets[0] == 0
    details = MailLocation.objects.filter(source=source, folder="Inbox").first().details
    assert details["format"] == "mbox" and details["variant"] == "mboxo"
    assert Document.objects.filter(title="project 1").exists()
    assert set(FolderCursor.objects.filter(source=source).values_list("folder", flat=True)) == set(expected)


def test_a_second_run_adds_nothing(tmp_path, owner):
    thunderbird_tree(tmp_path / "tb")
    source, _ = run_import(tmp_path / "tb", owner)
    counts = (Document.objects.count(), MailLocation.objects.count())

    again = pipeline.source_sync(source.pk, client_factory=lambda s, a: import_client(s))

    assert again is not None and again.status == RunStatus.OK
    assert (again.new, again.duplicate, again.done) == (0, 0, 0)
    assert (Document.objects.count(), MailLocation.objects.count()) == counts


def test_mboxrd_from_lines_are_unquoted_once_and_it_is_recorded(tmp_path, owner):
    originals, _ = mboxrd_file(tmp_path / "rd.mbox")

    source, run = run_import(tmp_path / "rd.mbox", owner)

    assert (run.new, run.status) == (3, RunStatus.OK), run.errors
    rows = MailLocation.objects.filter(source=source).order_by("pk")
    stored = [storage.read_bytes(r.mail.document.files.get(role=FileRole.ORIGINAL).sha256) for r in rows]
    assert stored == originals
    assert [r.details.get("unquoted_from_lines", 0) for r in rows] == [2, 1, 0]
    assert {r.details["variant"] for r in rows} == {"mboxrd"}


def test_the_variant_can_be_named_where_detection_would_guess_wrong(tmp_path, owner):
    # An mboxo file with a mail that had a ">>From " line: detected, it looks like mboxrd.
    raw = lf(mail("deep quote", body=">>From a quoted quote\n"))
    theirs = write_mbox(tmp_path / "o.mbox", [raw])

    source, run = run_import(tmp_path / "o.mbox", owner, fmt="mboxo")

    assert run.new == 1 and list(archived(source).values()) == theirs
    assert MailLocation.objects.get(source=source).details["variant"] == "mboxo"


def test_an_mboxo_file_keeps_its_quoted_lines_as_they_are(tmp_path, owner):
    raw = lf(mail("quoted", body="Hello\n>From the quoted line\nFrom an unquoted one\n"))
    theirs = write_mbox(tmp_path / "o.mbox", [raw, lf(mail("second"))])

    source, run = run_import(tmp_path / "o.mbox", owner)

    assert run.new == 2
    assert sorted(archived(source).values()) == sorted(theirs)
    assert b">From the quoted line" in theirs[0] and b">From an unquoted one" in theirs[0]


def test_mboxcl2_content_length_keeps_from_lines_in_the_body(tmp_path, owner):
    messages = mboxcl2_file(tmp_path / "cl2.mbox")

    source, run = run_import(tmp_path / "cl2.mbox", owner)

    assert run.new == 2, run.errors
    assert sorted(archived(source).values()) == sorted(messages)
    assert all(loc.details.get("content_length") for loc in MailLocation.objects.filter(source=source))


def test_an_apple_mail_package_and_a_takeout_mbox(tmp_path, owner):
    root = tmp_path / "export"
    takeout = write_mbox(root / "Takeout" / "Mail" / "All mail Including Spam and Trash.mbox", [lf(mail("t1"))])
    apple = write_mbox(root / "Inbox.mbox" / "mbox", [lf(mail("a1")), lf(mail("a2"))])
    emlx = lf(mail("from emlx"))
    messages = root / "Work.mbox" / "Messages"
    messages.mkdir(parents=True)
    (messages / "12.emlx").write_bytes(f"{len(emlx)}\n".encode() + emlx + b"<?xml version='1.0'?><plist/>\n")
    (root / "Inbox.mbox" / "Info.plist").write_text("<plist/>")

    source, run = run_import(root, owner)

    assert (run.new, run.status) == (4, RunStatus.OK), run.errors
    got = archived(source)
    assert sorted(got.values()) == sorted(takeout + apple + [emlx])
    assert ("Work.mbox/Messages", "12.emlx") in got


def test_a_directory_and_a_zip_of_eml_files(tmp_path, owner):
    raws = {f"mail-{i}.eml": mail(f"eml {i}") for i in range(3)}
    folder = tmp_path / "old-archive" / "2023"
    folder.mkdir(parents=True)
    for name, raw in raws.items():
        (folder / name).write_bytes(raw)
    zipped = {f"export/{i:03}.eml": mail(f"zipped {i}") for i in range(3)}
    eml_zip(tmp_path / "old-archive" / "export.zip", zipped)

    source, run = run_import(tmp_path / "old-archive", owner)

    assert (run.new, run.status) == (6, RunStatus.OK), run.errors
    got = archived(source)
    assert {loc: raw for (f, loc), raw in got.items() if f == "2023"} == raws
    assert {loc: raw for (f, loc), raw in got.items() if f == "export.zip"} == zipped
    parsed = email.message_from_bytes(got[("export.zip", "export/001.eml")])
    assert parsed["Subject"] == "zipped 1"


def test_the_command_line_imports_and_prints_progress(tmp_path, owner, capsys):
    write_mbox(tmp_path / "cli.mbox", [lf(mail(f"cli {i}")) for i in range(5)])

    call_command("import", str(tmp_path / "cli.mbox"), "--mailbox", "alice@example.com", "--owner", "Mail")

    out = capsys.readouterr()
    assert "5 new, 0 duplicate, 0 failed" in out.out
    assert "100%" in out.err and "[" in out.err
    assert ArchivedMail.objects.count() == 5
    # Run again: the same source, nothing new.
    call_command("import", str(tmp_path / "cli.mbox"), "--mailbox", "alice@example.com", "--owner", "Mail")
    assert "0 new, 0 duplicate" in capsys.readouterr().out
    assert MailSource.objects.filter(kind=SourceKind.IMPORT).count() == 1


def test_an_import_into_two_mailboxes_makes_a_document_in_each(tmp_path, owner):
    write_mbox(tmp_path / "same.mbox", [lf(mail("same", message_id="<same@example.com>"))])
    run_import(tmp_path / "same.mbox", owner, address="alice@example.com")
    _, run = run_import(tmp_path / "same.mbox", owner, address="bob@example.com")

    assert run.new == 1 and Document.objects.count() == 2


_LINES = st.sampled_from(
    [b"", b"From here", b">From there", b">>From deep", b"Subject: x", b"body text", b"From: a@b", b" \t", b"\r"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_LINES, min_size=1, max_size=8), min_size=1, max_size=5))
def test_the_reader_agrees_with_pythons_mailbox_on_files_it_writes(tmp_path_factory, messages):
    """Any messages written by ``mailbox.mbox`` (which quotes ``From `` lines) come back
    byte for byte as its own reader gives them, offsets at their separators."""
    path = tmp_path_factory.mktemp("hypothesis") / "h.mbox"
    raws = [b"Subject: generated\n\n" + b"\n".join(lines) + b"\n" for lines in messages]
    theirs = write_mbox(path, raws)
    with open(path, "rb") as stream:
        mine = list(mbox.read_messages(stream, 0, variant="mboxo"))
    data = path.read_bytes()
    assert [m.raw for m in mine] == theirs
    assert all(data[m.offset : m.offset + 5] == b"From " for m in mine)
    assert not any(m.truncated for m in mine)
