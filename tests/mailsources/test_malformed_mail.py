"""Hostile and broken mail: everything is archived raw, byte for byte; what
cannot be parsed is flagged; nothing crashes a run or blocks a folder."""

from __future__ import annotations

import email.policy
import sysconfig
from pathlib import Path

import pytest

from archive import processing, storage
from archive.mail import MailLimits, parse_message
from archive.models import Document, DocumentFile, FileRole
from mailsources.models import MailLocation, RunStatus
from tests.mailsources.imap_pipeline import archived_raws, mail, raw_mail, server_messages, sync

pytestmark = pytest.mark.django_db

LIMIT_DEPTH = 5
LIMIT_PARTS = 20
LIMIT_BYTES = 256 * 1024


@pytest.fixture
def mail_limits(settings):
    settings.MAIL_MAX_MIME_DEPTH = LIMIT_DEPTH
    settings.MAIL_MAX_MIME_PARTS = LIMIT_PARTS
    settings.MAIL_MAX_MESSAGE_BYTES = LIMIT_BYTES


def cpython_test_email_messages() -> list[bytes]:
    """CPython's own test corpus (Lib/test/test_email/data), or generated stand-ins."""
    data = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
    files = sorted(data.glob("msg_*.txt"))
    if files:
        return [f.read_bytes() for f in files]
    return [raw for _name, raw, _flag in generated_malformed()] + [  # pragma: no cover
        mail("multipart with attachment", attachment=("a.bin", bytes(range(256)))),
        raw_mail(
            "From: a@example.com\nSubject: uuencoded\nContent-Transfer-Encoding: x-uuencode",
            b"begin 644 a.txt\r\n#86)C\r\n`\r\nend\r\n",
        ),
    ]


def multipart(boundary: str, parts: list[bytes], *, close: bool = True) -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + boundary.encode() + b"--\r\n" if close else b"")


def nested(levels: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nthe innermost text\r\n"
    for level in range(levels):
        boundary = f"level-{level}"
        inner = (f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n').encode() + multipart(
            boundary, [inner]
        )
    return b"From: nest@example.com\r\nSubject: deep nesting\r\nMIME-Version: 1.0\r\n" + inner


def generated_malformed() -> list[tuple[str, bytes, str]]:
    """(name, raw, expected parse error or "") — the error is the processing's verdict."""
    cases: list[tuple[str, bytes, str]] = []

    def add(name: str, raw: bytes, flagged: str = "") -> None:
        cases.append((name, raw, flagged))

    add(
        "boundary never used",
        raw_mail(
            "From: a@example.com\nSubject: broken boundary\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="declared"',
            multipart("other", [b"Content-Type: text/plain\r\n\r\nlost?"]),
        ),
    )
    add(
        "boundary never closed",
        raw_mail(
            "From: a@example.com\nSubject: unclosed boundary\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="open"',
            multipart(
                "open",
                [b"Content-Type: text/plain\r\n\r\nfirst", b"Content-Type: application/pdf; name=x.pdf\r\n\r\n%PDF"],
                close=False,
            ),
        ),
    )
    add(
        "multipart without boundary",
        raw_mail("From: a@example.com\nSubject: no boundary\nContent-Type: multipart/mixed", b"text\r\n"),
    )
    add(
        "unknown charsets",
        raw_mail(
            "From: =?x-no-such-charset?q?J=FCrg?= <j@example.com>\n"
            "Subject: =?x-no-such-charset?q?Gr=FC=DFe?= and more\n"
            'Content-Type: text/plain; charset="x-no-such-charset"',
            b"Gr\xfc\xdfe\r\n",
        ),
    )
    add(
        "latin-1 8-bit headers",
        raw_mail(b"From: J\xfcrg M\xfcller <j@example.com>\nSubject: Caf\xe9 cr\xe8me\nTo: b@example.com"),
    )
    add("utf-8 8-bit headers", raw_mail("From: Zoë <z@example.com>\nSubject: Ärger mit €\nTo: b@example.com".encode()))
    add(
        "surrogate from an encoded word",
        raw_mail("From: =?unicode-escape?q?=5Cudc80?= <x@example.com>\nSubject: =?unicode-escape?q?=5Cud800?="),
    )
    add("deep nesting", nested(LIMIT_DEPTH + 5), flagged="nesting deeper than")
    add(
        "too many parts",
        raw_mail(
            'From: a@example.com\nSubject: many parts\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="p"',
            multipart(
                "p",
                [f"Content-Type: text/plain; name=p{i}.txt\r\n\r\npart {i}".encode() for i in range(LIMIT_PARTS * 2)],
            ),
        ),
        flagged="more than 20 MIME parts",
    )
    add(
        "huge headers",
        raw_mail(
            "From: a@example.com\nSubject: "
            + "\n ".join(["very long subject"] * 3000)
            + "\n"
            + "\n".join(f"X-Trace-{i}: hop {i} via relay-{i}.example.com" for i in range(3000))
        ),
    )
    add("oversize", mail("oversize", "y" * (LIMIT_BYTES + 50_000)), flagged="over the limit")
    add("not a mail at all", b"this is not a mail at all\r\njust some text\r\n", flagged="no mail headers")
    add("headers without a body", b"From: a@example.com\r\nSubject: no body")
    for number, date in enumerate(
        [
            "the day after tomorrow",
            "Mon, 1 Jan 0001 00:30:00 +0100",
            "Fri, 1 Jan 99999 00:00:00 +0000",
            "Fri, 31 Dec 9999 23:30:00 -0100",  # past the calendar's end in UTC
            "Wed, 1 Jan 1000 00:30:00 +0100",  # before what MariaDB's DATETIME stores
            "Sat, 1 Jan 2000 00:30:00 +9959",
        ]
    ):
        add(f"bad date {number}", raw_mail(f"From: a@example.com\nSubject: bad date\nDate: {date}"))
    add(
        "broken base64 and quoted-printable",
        raw_mail(
            "From: a@example.com\nSubject: broken encodings\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="e"',
            multipart(
                "e",
                [
                    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbad =ZZ =\r\nend",
                    b"Content-Type: application/octet-stream; name=a.bin\r\nContent-Transfer-Encoding: base64"
                    b"\r\n\r\n!!!not base64###\r\nAAE",
                ],
            ),
        ),
    )
    add(
        "hostile part headers",
        raw_mail(
            "From: a@example.com\nSubject: hostile parts\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="h"',
            multipart(
                "h",
                [
                    b"Content-Type: application/" + b"x" * 300 + b"\r\nContent-Disposition: attachment; "
                    b'filename="' + b"n" * 1000 + b'.bin"\r\nContent-ID: <' + b"c" * 1000 + b">\r\n\r\ndata",
                    b"Content-Type: image/png\r\nContent-ID: <img@x>\r\nContent-Disposition: inline; "
                    b"filename*=x-no-such-charset''%FC.png\r\n\r\nPNG",
                ],
            ),
        ),
    )
    add(
        "broken embedded message",
        raw_mail(
            "From: a@example.com\nSubject: forwarded garbage\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="f"',
            multipart("f", [b"Content-Type: message/rfc822\r\n\r\n\x00\x01 not a message"]),
        ),
    )
    add("bare line ends", b"From: a@example.com\nSubject: bare\rline ends\n\nbody\rwith\rCRs\n")
    return cases


def assert_archived_byte_for_byte(source, mailbox) -> dict[int, Document]:
    """Every mail on the server is archived exactly once, byte-identical; returns {uid: doc}."""
    held = server_messages(mailbox)
    assert sorted(archived_raws(source)) == sorted(held.values())
    documents = {}
    for location in MailLocation.objects.filter(source=source).select_related("mail__document"):
        document = location.mail.document
        original = document.files.get(role=FileRole.ORIGINAL)
        assert storage.read_bytes(original.sha256) == held[int(location.location)]
        documents[int(location.location)] = document
    assert len(documents) == len(held)
    return documents


def test_cpython_test_email_corpus_is_archived_raw_and_processed_without_a_crash(
    imap_mailbox, imap_source, mail_limits
):
    corpus = cpython_test_email_messages()
    imap_mailbox.append_many("INBOX", corpus)

    run = sync(imap_source)

    assert run.status == RunStatus.OK, run.errors
    documents = assert_archived_byte_for_byte(imap_source, imap_mailbox)
    assert len(documents) == len(corpus) and run.new + run.duplicate == len(corpus)
    processing.mail_documents_process([d.pk for d in documents.values()])
    # Every part the MIME walk finds within the limits is a file, once (the
    # guard: the corpus has parts at all).
    held = server_messages(imap_mailbox)
    limits = MailLimits(max_depth=LIMIT_DEPTH, max_parts=LIMIT_PARTS)
    expected = []
    for uid, document in documents.items():
        if len(held[uid]) <= LIMIT_BYTES:
            parsed = parse_message(held[uid], limits, policy=email.policy.compat32)
            expected += [(document.pk, part.path) for part in parsed.attachments + parsed.inline]
    stored = DocumentFile.objects.filter(role=FileRole.ATTACHMENT).values_list("document_id", "part")
    assert len(expected) > 40  # 50 with Python 3.11's corpus (an attached message is one part, its .eml)
    assert sorted(stored) == sorted(expected)


def test_malformed_mails_are_archived_raw_and_flagged_where_unparseable(imap_mailbox, imap_source, mail_limits):
    cases = generated_malformed()
    uids = imap_mailbox.append_many("INBOX", [raw for _name, raw, _flag in cases])

    run = sync(imap_source)

    assert run.status == RunStatus.OK, run.errors
    assert run.new == len(cases)
    documents = assert_archived_byte_for_byte(imap_source, imap_mailbox)
    processing.mail_documents_process([d.pk for d in documents.values()])
    processing.mail_documents_process([d.pk for d in documents.values()])  # a rerun is a no-op

    for uid, (name, _raw, flagged) in zip(uids, cases, strict=True):
        document = Document.objects.get(pk=documents[uid].pk)
        if flagged:
            assert flagged in document.parse_error, (name, document.parse_error)
        else:
            assert document.parse_error == "", (name, document.parse_error)
    by_name = {
        name: Document.objects.get(pk=documents[uid].pk) for uid, (name, _raw, _flag) in zip(uids, cases, strict=True)
    }
    # Every mail has a date: its header's, or the server's INTERNALDATE when that is bogus.
    assert all(document.date is not None for document in by_name.values())
    assert by_name["latin-1 8-bit headers"].values["subject"] == "Café crème"
    assert by_name["latin-1 8-bit headers"].values["from"] == "Jürg Müller <j@example.com>"
    assert by_name["utf-8 8-bit headers"].title == "Ärger mit €"
    assert by_name["unknown charsets"].title.startswith("Gr") and "and more" in by_name["unknown charsets"].title
    assert len(by_name["huge headers"].title) == 500
    assert by_name["huge headers"].values["subject"].startswith("very long subject very long subject")
    assert by_name["oversize"].files.filter(role=FileRole.ATTACHMENT).count() == 0
    hostile = by_name["hostile part headers"].files.filter(role=FileRole.ATTACHMENT)
    assert hostile.count() == 2
    assert all(len(f.name) <= 255 and len(f.content_type) <= 255 for f in hostile)
    assert by_name["boundary never closed"].files.filter(role=FileRole.ATTACHMENT).exists()


def test_a_mail_the_server_cannot_deliver_in_one_batch_does_not_block_the_folder(
    imap_mailbox, imap_source, mail_limits, imap_commands
):
    # Above the message-size limit: fetched alone, archived raw, never parsed.
    big = mail("big one", "z" * (LIMIT_BYTES * 3))
    imap_mailbox.append_many("INBOX", [mail("before"), big, mail("after")])

    run = sync(imap_source)

    assert (run.status, run.new) == (RunStatus.OK, 3)
    assert_archived_byte_for_byte(imap_source, imap_mailbox)
    fetch_sets = [c[2] for c in imap_commands if c[:2] == ("UID", "FETCH") and "BODY.PEEK[]" in c[3]]
    assert "2" in fetch_sets  # the big one travelled alone
