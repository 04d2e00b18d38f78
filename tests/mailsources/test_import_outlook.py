"""Outlook .msg files (written by msgforge, an independent MS-OXMSG writer) have no
original MIME: the import keeps the .msg bytes as the original, archives a generated
.eml for viewing and search, marks the location converted and hashes both. Each
archived mail is checked field for field against extract-msg's reading of the .msg
and against @kenjiuno/msgreader's (a JavaScript reader written apart from extract-msg,
which the import uses); one .msg is a real one shipped by a public package."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import extract_msg
import pytest
from django.contrib.auth.models import Group
from msgforge import Message

from archive import storage
from archive.integrity import verify
from archive.models import FileRole
from mailsources import pipeline
from mailsources.imports import import_client, import_source_create
from mailsources.models import MailLocation, RunStatus
from tests.mailsources.import_files import eml_zip

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def owner(db: None) -> Group:
    return Group.objects.get_or_create(name="Mail")[0]


@pytest.fixture(scope="session")
def msgreader() -> Path:
    """tests/data/msgreader.sh: @kenjiuno/msgreader installed, its reading script's path."""
    installed = subprocess.run(
        ["bash", str(REPO / "tests/data/msgreader.sh")], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert installed.returncode == 0, f"tests/data/msgreader.sh failed:\n{installed.stderr}"
    assert shutil.which("node"), "node is missing (it comes with npm)"
    return REPO / installed.stdout.strip()


def assert_as_msgreader_reads(eml: EmailMessage, msg_bytes: bytes, msgreader: Path, tmp_path: Path) -> None:
    path = tmp_path / "compared.msg"
    path.write_bytes(msg_bytes)
    read = subprocess.run(["node", str(msgreader), str(path)], capture_output=True, check=True)
    theirs = json.loads(read.stdout)
    assert eml["Subject"] == theirs["subject"]
    assert eml["From"].addresses[0].addr_spec == theirs["senderEmail"]
    for header, kind in (("To", "to"), ("Cc", "cc")):
        ours = [a.addr_spec for a in eml[header].addresses] if eml[header] else []
        assert ours == [r["email"] for r in theirs["recipients"] if r["kind"] == kind], header
    # A MIME text part's line ends are CRLF in any case: Python reads them as "\n".
    assert eml.get_body(("plain",)).get_content() == theirs["body"].replace("\r\n", "\n")
    assert [(a.get_filename(), a.get_payload(decode=True)) for a in eml.iter_attachments()] == [
        (a["fileName"], base64.b64decode(a["content"])) for a in theirs["attachments"]
    ]


def write_msg(path: Path, subject: str, attachment: Path | None = None) -> bytes:
    message = Message(
        subject=subject,
        text_body=f"Body of {subject}.\n",
        sender=("boss@corp.example", "The Boss"),
        to=[("alice@example.com", "Alice")],
        cc=[("carol@example.com", "Carol")],
        sent=datetime(2025, 3, 4, 10, 0),
    )
    if attachment is not None:
        message.attach(str(attachment))
    message.save(str(path))
    return path.read_bytes()


def test_msg_files_are_archived_as_generated_eml_with_the_msg_kept(tmp_path, owner, msgreader):
    root = tmp_path / "outlook"
    root.mkdir()
    (tmp_path / "figures.csv").write_bytes(b"region;revenue\nEMEA;1.2\n")
    originals = {
        "q1.msg": write_msg(root / "q1.msg", "Quarterly figures", attachment=tmp_path / "figures.csv"),
        "memo.msg": write_msg(root / "memo.msg", "A memo"),
    }
    source = import_source_create(root, "alice@example.com", owner)

    run = pipeline.source_sync(source.pk, client_factory=lambda s, a: import_client(s))

    assert run is not None and (run.new, run.status) == (2, RunStatus.OK), run.errors
    for location in MailLocation.objects.filter(source=source).select_related("mail__document"):
        msg_bytes = originals[location.location]
        details = location.details
        assert details["converted"] is True and details["format"] == "msg"
        assert details["original_sha256"] == hashlib.sha256(msg_bytes).hexdigest()
        assert storage.read_bytes(details["original_sha256"]) == msg_bytes
        eml_file = location.mail.document.files.get(role=FileRole.ORIGINAL)
        assert eml_file.sha256 == details["eml_sha256"] and eml_file.content_type == "message/rfc822"
        # The .msg itself is a file of the document too (in the ledger, exports, retention).
        msg_file = location.mail.document.files.get(role=FileRole.SOURCE)
        assert (msg_file.name, msg_file.sha256) == (location.location, details["original_sha256"])
        eml = message_from_bytes(storage.read_bytes(eml_file.sha256), policy=policy.default)
        theirs = extract_msg.openMsg(msg_bytes)
        try:
            assert eml["Subject"] == theirs.subject
            assert eml["From"] == theirs.sender and eml["To"] == theirs.to and eml["Cc"] == theirs.cc
            assert eml["Date"].datetime == theirs.date.astimezone(UTC)
            assert eml.get_body(("plain",)).get_content() == theirs.body
            assert [(a.get_filename(), a.get_payload(decode=True)) for a in eml.iter_attachments()] == [
                (a.longFilename, a.data) for a in theirs.attachments
            ]
        finally:
            theirs.close()
        assert location.mail.document.title == theirs.subject
        assert_as_msgreader_reads(eml, msg_bytes, msgreader, tmp_path)
        # An attachment's type by its name (the .msg says none): the CSV is text/csv.
        assert [a.get_content_type() for a in eml.iter_attachments()] == ["text/csv"] * len(theirs.attachments)
    assert verify.run().findings == []  # both files' blobs and the metadata check out


def test_the_same_msg_twice_is_one_document(tmp_path, owner):
    root = tmp_path / "twice"
    root.mkdir()
    data = write_msg(root / "one.msg", "Only once")
    eml_zip(root / "copy.zip", {"again/one.msg": data})
    source = import_source_create(root, "alice@example.com", owner)

    run = pipeline.source_sync(source.pk, client_factory=lambda s, a: import_client(s))

    assert run is not None and (run.new, run.duplicate) == (1, 1), run.errors
    assert MailLocation.objects.filter(source=source).values("mail").distinct().count() == 1
    assert MailLocation.objects.filter(source=source).count() == 2


REAL_MSG = Path(__file__).resolve().parents[1] / "data" / "msgreader-test.msg"


def test_a_msg_written_by_outlook_from_a_public_package_is_archived_field_for_field(tmp_path, owner, msgreader):
    # tests/data/README.md: from the npm package msgreader 1.0.1 (ISC), a mail sent via Gmail.
    root = tmp_path / "real"
    root.mkdir()
    msg_bytes = REAL_MSG.read_bytes()
    (root / "test.msg").write_bytes(msg_bytes)
    source = import_source_create(root, "alice@example.com", owner)

    run = pipeline.source_sync(source.pk, client_factory=lambda s, a: import_client(s))

    assert run is not None and (run.new, run.status) == (1, RunStatus.OK), run.errors
    location = MailLocation.objects.select_related("mail__document").get(source=source)
    assert location.details["converted"] is True and location.details["format"] == "msg"
    assert storage.read_bytes(location.details["original_sha256"]) == msg_bytes
    eml_file = location.mail.document.files.get(role=FileRole.ORIGINAL)
    eml_bytes = storage.read_bytes(eml_file.sha256)
    assert hashlib.sha256(eml_bytes).hexdigest() == eml_file.sha256 == location.details["eml_sha256"]
    eml = message_from_bytes(eml_bytes, policy=policy.default)
    theirs = extract_msg.openMsg(msg_bytes)
    try:
        # The item's transport headers, as Outlook kept them, are the generated mail's headers.
        headers = message_from_bytes(theirs.headerText.encode(), policy=policy.default)
        for name in ("From", "To", "Subject", "Date", "Message-ID"):
            assert eml[name] == headers[name], name
        assert eml["Subject"] == theirs.subject and eml["Message-ID"] == theirs.messageId
        assert eml["Date"].datetime == theirs.date
        assert eml.get_body(("plain",)).get_content() == theirs.body.replace("\r\n", "\n")
        # msgreader does not read the HTML body; the standard library ends a text part with a line end.
        html = theirs.htmlBody.decode().replace("\r\n", "\n")
        assert eml.get_body(("html",)).get_content() == html + ("" if html.endswith("\n") else "\n")
        assert [(a.get_filename(), a.get_payload(decode=True)) for a in eml.iter_attachments()] == [
            (a.longFilename, a.data) for a in theirs.attachments
        ]
        assert len(theirs.attachments) == 1 and theirs.attachments[0].data[:3] == b"\xff\xd8\xff"  # a JPEG
    finally:
        theirs.close()
    assert_as_msgreader_reads(eml, msg_bytes, msgreader, tmp_path)
