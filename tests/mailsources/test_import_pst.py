"""A real PST (an Enron mailbox, shipped as test data by the npm package pst-extractor;
see tests/data/README.md) imported through libpff: every item archived once as a
generated .eml with its MAPI records kept as the original, both hashed, the location
marked converted; each mail checked field for field against ``readpst`` (libpst, a PST
reader written apart from libpff). A damaged or cut PST: per-item or per-file errors
in the run history, the rest imported; a killed PST import goes on where it stopped."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from archive import storage
from archive.integrity.models import LedgerEntry, LedgerEvent
from archive.models import Document, FileRole
from mailsources import pipeline
from mailsources.imports import import_client, import_source_create
from mailsources.models import ArchivedMail, FolderCursor, MailLocation, MailSource, RunStatus, SyncRun
from tests.mailsources.imap_pipeline import mail
from tests.mailsources.test_import_resume import run_until_killed

REPO = Path(__file__).resolve().parents[2]
ITEMS = 71  # the mails of enron.pst (readpst finds as many)


@pytest.fixture(scope="session")
def outlook_files() -> Path:
    fetched = subprocess.run(
        ["bash", str(REPO / "tests/data/fetch_pst.sh")], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert fetched.returncode == 0, f"tests/data/fetch_pst.sh failed:\n{fetched.stderr}"
    return REPO / fetched.stdout.strip()


@pytest.fixture(scope="session")
def enron_pst(outlook_files: Path) -> Path:
    return outlook_files / "enron.pst"


def read_with_readpst(path: Path, out: Path) -> dict[str, tuple[Path, bytes]]:
    """{Message-ID: (folder path below the file's root, .eml bytes)} as readpst writes them."""
    readpst = shutil.which("readpst")
    assert readpst, "readpst is missing (Debian package pst-utils; scripts/test.sh installs it)"
    out.mkdir(parents=True, exist_ok=True)
    # -e: one .eml per mail; -b: no extra RTF body attachment (the import makes none);
    # -j 0: no parallel jobs (its forked workers sometimes fail on a busy machine).
    subprocess.run([readpst, "-e", "-b", "-j", "0", "-q", "-o", str(out), str(path)], check=True)
    found = {}
    for eml in sorted(out.rglob("*.eml")):
        data = eml.read_bytes()
        found[str(message_from_bytes(data, policy=policy.default)["Message-ID"])] = (eml.parent.relative_to(out), data)
    return found


@pytest.fixture(scope="session")
def readpst_mails(enron_pst: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    return read_with_readpst(enron_pst, tmp_path_factory.mktemp("readpst"))


@pytest.fixture
def owner(db: None) -> Group:
    return Group.objects.get_or_create(name="Mail")[0]


def run_import(path: Path, owner: Group):
    source = import_source_create(path, "alice@example.com", owner)
    run = pipeline.source_sync(source.pk, client_factory=lambda s, a: import_client(s))
    assert run is not None
    run.refresh_from_db()
    return source, run


def readpst_attachments(data: bytes) -> list[tuple[str, bytes]]:
    """readpst's attachments, by the plain ``filename=`` parameter: its ``filename*=``
    leaves characters such as ``'`` and ``(`` unencoded, which RFC 2231 readers cut at."""
    found = []
    for part in message_from_bytes(data).walk():
        if part.get_content_disposition() == "attachment":
            name = re.search(r'\bfilename="([^"]*)"', str(part["Content-Disposition"]))
            if part.get_content_type() == "text/calendar" and name and re.fullmatch(r"i\d+\.ics", name.group(1)):
                continue  # readpst's own vCalendar of a meeting item, made from its properties
            payload = part.get_payload(decode=True)
            assert name and isinstance(payload, bytes)
            found.append((name.group(1), payload))
    return sorted(found)  # readpst writes them last to first


def body(message: EmailMessage, kind: str) -> str:
    """A body, less one line end at its end: the standard library ends each text part
    it writes with one, readpst not always."""
    part = message.get_body((kind,))
    text = part.get_content() if part is not None else ""
    return text.removesuffix("\n")


def assert_same_mail(ours: EmailMessage, theirs_bytes: bytes) -> None:
    theirs = message_from_bytes(theirs_bytes, policy=policy.default)
    assert isinstance(theirs, EmailMessage)
    for header in ("Message-ID", "Subject", "From", "To", "Cc", "Date"):
        assert str(ours[header] or "") == str(theirs[header] or ""), header
    assert body(ours, "plain") == body(theirs, "plain")
    assert body(ours, "html") == body(theirs, "html")
    mine = sorted((a.get_filename() or "", a.get_payload(decode=True)) for a in ours.iter_attachments())
    assert mine == readpst_attachments(theirs_bytes)


def archived_eml(location: MailLocation) -> EmailMessage:
    eml_file = location.mail.document.files.get(role=FileRole.ORIGINAL)
    assert eml_file.sha256 == location.details["eml_sha256"] and eml_file.content_type == "message/rfc822"
    data = storage.read_bytes(eml_file.sha256)
    assert hashlib.sha256(data).hexdigest() == eml_file.sha256
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_every_item_of_a_real_pst_is_archived_as_readpst_reads_it(enron_pst, readpst_mails, tmp_path, owner):
    root = tmp_path / "outlook"
    root.mkdir()
    shutil.copy(enron_pst, root / "lokay.pst")

    source, run = run_import(root, owner)

    assert (run.new, run.failed, run.status) == (ITEMS, 0, RunStatus.OK), run.errors
    assert len(readpst_mails) == ITEMS and Document.objects.count() == ITEMS
    locations = MailLocation.objects.filter(source=source).select_related("mail__document")
    assert locations.count() == ITEMS
    seen = set()
    for location in locations:
        details = location.details
        assert details["converted"] is True and details["format"] == "pst"
        assert location.location == details["identifier"]
        # The item's own records, kept and hashed: the original of the converted mail.
        original = storage.read_bytes(details["original_sha256"])
        assert hashlib.sha256(original).hexdigest() == details["original_sha256"]
        assert len(original) == details["original_size"]
        dump = json.loads(original)
        ours = archived_eml(location)
        folder, theirs = readpst_mails[str(ours["Message-ID"])]
        seen.add(str(ours["Message-ID"]))
        # readpst names the root folder its own way ("Personal folders"); the rest is the PST's.
        assert Path(details["folder_path"]).parts[1:] == folder.parts[1:] == Path(dump["folder"]).parts[1:]
        assert_same_mail(ours, theirs)
        if ours["Subject"]:
            assert location.mail.document.title == str(ours["Subject"])
        # Every attachment's bytes are in the original too (PR_ATTACH_DATA_BIN, 0x3701).
        kept = [
            bytes.fromhex(record["data"])
            for records in dump["attachments"]
            for record in records
            if record["entry_type"] == 0x3701
        ]
        assert sorted(kept) == sorted(data for _, data in readpst_attachments(theirs))
        # The item's records are a file of the document beside the .eml (role "source"), and
        # the ARCHIVED ledger entry holds both hashes: the conversion's input is in the chain.
        source_file = location.mail.document.files.get(role=FileRole.SOURCE)
        assert (source_file.sha256, source_file.size) == (details["original_sha256"], len(original))
        assert source_file.content_type == "application/json"
        entry = LedgerEntry.objects.get(event=LedgerEvent.ARCHIVED, document=location.mail.document_id)
        assert entry.blobs == sorted([details["eml_sha256"], details["original_sha256"]])
    assert seen == set(readpst_mails)


def test_importing_the_pst_again_adds_nothing(enron_pst, tmp_path, owner):
    shutil.copy(enron_pst, tmp_path / "lokay.pst")
    run_import(tmp_path / "lokay.pst", owner)
    FolderCursor.objects.all().delete()  # read the whole file again

    source, run = run_import(tmp_path / "lokay.pst", owner)

    assert (run.new, run.duplicate) == (0, ITEMS), run.errors
    assert Document.objects.count() == ITEMS


def damage(data: bytes, at: float, length: int = 200_000) -> bytes:
    start = int(len(data) * at)
    return data[:start] + b"\0" * length + data[start + length :]


@pytest.mark.parametrize("at", [0.3, 0.5, 0.7])
def test_a_damaged_pst_names_each_item_it_cannot_read_and_imports_the_others(
    enron_pst, readpst_mails, tmp_path, owner, at
):
    path = tmp_path / "damaged.pst"
    path.write_bytes(damage(enron_pst.read_bytes(), at))

    source, run = run_import(path, owner)

    assert run.status == RunStatus.PARTIAL and run.failed >= 1
    assert run.new + run.failed == ITEMS
    errors = run.errors.splitlines()
    assert len(errors) == run.failed
    for line in errors:
        assert re.match(r"damaged\.pst: item \d+ in Top of Personal Folders/\S.*: OSError: \S", line), line
    # What could be read is archived as the intact file has it.
    for location in MailLocation.objects.filter(source=source).select_related("mail__document"):
        ours = archived_eml(location)
        assert_same_mail(ours, readpst_mails[str(ours["Message-ID"])][1])


def test_a_cut_pst_is_one_clear_error_and_the_files_beside_it_import(enron_pst, tmp_path, owner):
    root = tmp_path / "export"
    root.mkdir()
    (root / "cut.pst").write_bytes(enron_pst.read_bytes()[: 7 << 20])
    (root / "fine.eml").write_bytes(mail("beside the cut PST"))
    garbage = root / "garbage.pst"
    garbage.write_bytes(b"This is no PST file at all.\n" * 100)

    source, run = run_import(root, owner)

    assert run.new == 1 and run.status == RunStatus.PARTIAL, run.errors
    assert "cut.pst: not a readable PST/OST file (corrupt, encrypted or password-protected)" in run.errors
    assert "garbage.pst: not a readable PST/OST file" in run.errors
    assert MailLocation.objects.get(source=source).location == "fine.eml"


def test_a_pst_import_killed_at_a_checkpoint_goes_on_and_loses_or_doubles_nothing(
    transactional_db, enron_pst, readpst_mails, tmp_path
):
    Group.objects.get_or_create(name="Mail")
    path = tmp_path / "lokay.pst"
    shutil.copy(enron_pst, path)

    # The first batch (8 MB of mails) committed, the second written but not committed.
    run_until_killed(path, 2, tmp_path)

    source = MailSource.objects.get()
    cursor = FolderCursor.objects.get(source=source).cursor
    committed = ArchivedMail.objects.count()
    assert 0 < committed < ITEMS and not cursor.get("done")
    assert cursor["index"] == committed  # no PST item is skipped, so each one read is a mail
    MailSource.objects.filter(pk=source.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    call_command("import", str(path), "--mailbox", "alice@example.com", "--owner", "Mail", "--no-progress")

    assert ArchivedMail.objects.count() == ITEMS == Document.objects.count()
    assert MailLocation.objects.filter(source=source).count() == ITEMS
    last = SyncRun.objects.filter(source=source).order_by("-started", "-pk").first()
    assert last is not None and last.status == RunStatus.OK
    assert (last.new, last.duplicate) == (ITEMS - committed, 0)
    ids = set()
    for location in MailLocation.objects.filter(source=source).select_related("mail__document"):
        ours = archived_eml(location)
        ids.add(str(ours["Message-ID"]))
        assert_same_mail(ours, readpst_mails[str(ours["Message-ID"])][1])
    assert ids == set(readpst_mails)


def test_an_ost_with_outlooks_own_items_is_imported_as_readpst_reads_it(outlook_files, tmp_path, owner):
    ost = outlook_files / "pstextractortest@outlook.com.ost"
    theirs = read_with_readpst(ost, tmp_path / "readpst")
    path = tmp_path / "account.ost"
    shutil.copy(ost, path)

    source, run = run_import(path, owner)

    # Every item is archived: mails, and the calendar's items (readpst writes those as .ics).
    assert (run.failed, run.status) == (0, RunStatus.OK), run.errors
    assert run.new + run.duplicate == 183
    assert len(theirs) == 13, sorted(str(folder) for folder, _ in theirs.values())
    ours = {}
    for location in MailLocation.objects.filter(source=source).select_related("mail__document"):
        message = archived_eml(location)
        dump = json.loads(storage.read_bytes(location.details["original_sha256"]))
        # PR_TRANSPORT_MESSAGE_HEADERS (0x007D): the headers the mail came with, if it came.
        ours[str(message["Message-ID"])] = (any(r["entry_type"] == 0x007D for r in dump["records"]), message)
    without_headers = 0
    for message_id, (_, data) in theirs.items():
        has_headers, message = ours[message_id]
        if has_headers:
            assert_same_mail(message, data)
            continue
        # Outlook's own items (sent mails, a sync log) have no transport headers: the
        # import takes the recipients' addresses from the recipient table, readpst writes
        # their display names (PR_DISPLAY_TO); a sender that has only an Exchange name gets
        # no From (readpst makes one up: MAILER-DAEMON).
        without_headers += 1
        reference = message_from_bytes(data, policy=policy.default)
        raw = message_from_bytes(data)
        assert str(message["Subject"]) == str(reference["Subject"])
        for header in ("To", "Cc"):
            # (a recipient without any address is an empty group: "Name:;")
            groups = message[header].groups if message[header] else ()
            names = [g.display_name or g.addresses[0].display_name or g.addresses[0].addr_spec for g in groups]
            assert ", ".join(names) == (raw[header] or ""), header
        if "MAILER-DAEMON" in str(reference["From"]):
            assert message["From"] is None
        else:
            assert str(message["From"]) == str(reference["From"])
        assert body(message, "plain") == body(reference, "plain")
        assert body(message, "html") == body(reference, "html")
        mine = sorted((a.get_filename() or "", a.get_payload(decode=True)) for a in message.iter_attachments())
        assert mine == readpst_attachments(data)
    assert without_headers == 4  # 2 sent mails, a sync log, Outlook.com's welcome mail
