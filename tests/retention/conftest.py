"""Documents with dates and mail locations, policies and holds for the retention tests."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from archive import services, storage
from archive.models import Document, DocumentKind, FileRole
from archive.retention.models import LegalHold, Preset, RetentionPolicy
from mailsources.models import ArchivedMail, MailLocation, MailSource, SourceKind

# The tests' clock: every service takes ``now``.
NOW = dt.datetime(2036, 6, 15, 9, 0, tzinfo=dt.UTC)
_serial = itertools.count(1)


@pytest.fixture
def source(group_a) -> MailSource:
    return MailSource.objects.create(kind=SourceKind.IMAP, name="Office", owner_group=group_a, host="h", username="u")


@pytest.fixture
def make_mail(group_a):
    """A mail document dated ``date`` (None: no date), seen in (source, mailbox, folder) places."""

    def make(date: str | None, *, places=(), content: bytes | None = None, values: dict | None = None) -> Document:
        raw = content or f"Subject: mail {next(_serial)}\r\n\r\nbody\r\n".encode()
        blob = storage.put_bytes(raw)
        document = services.document_create(
            owner_group=group_a,
            values={"title": f"mail {date}", **({"date": date} if date else {}), **(values or {})},
            kind=DocumentKind.MAIL,
            files=[services.NewFile(name="mail.eml", blob=blob, content_type="message/rfc822", role=FileRole.ORIGINAL)],
        )
        for index, (place_source, mailbox, folder) in enumerate(places):
            mail = ArchivedMail.objects.create(
                source=place_source,
                mailbox=mailbox,
                mailbox_key=f"{mailbox}-{index}",
                sha256=blob.sha256,
                document=document,
                size=blob.size,
            )
            MailLocation.objects.create(
                source=place_source, mailbox=mailbox, folder=folder, epoch="1", location=str(next(_serial)), mail=mail
            )
        return document

    return make


@pytest.fixture
def policy(db):
    def make(name: str = "CH", preset: str = Preset.CH_10, order: int = 100, **scope) -> RetentionPolicy:
        return RetentionPolicy.objects.create(name=name, preset=preset, order=order, **scope)

    return make


@pytest.fixture
def hold(admin_user):
    def make(name: str = "Lawsuit", **criteria) -> LegalHold:
        return LegalHold.objects.create(name=name, reason="Court order 17/2036", created_by=admin_user, **criteria)

    return make
