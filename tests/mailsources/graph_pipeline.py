"""Helpers and fixtures for the Microsoft 365 tests that go through the product's real code
paths (the pipeline, the client factory, WebAdmin, ``manage.py mailtest``).

Nothing of the product is patched: Django is only *configured* to talk to the local Entra ID +
Graph fake (``tests/fakes/graph_fake/``) — ``GRAPH_AUTHORITY_HOST``, ``GRAPH_URL``,
``MAIL_CA_FILE`` — and its pacing window is set to one the fake's tests never reach
(``GRAPH_RATE_LIMIT_*``; Graph's own 10,000 per 600 s would make every test crawl).

Test modules import the fixtures they use from here (``from tests.mailsources.graph_pipeline
import ...``).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest

from tests.fakes.graph_fake import GraphFake, make_mime

ALICE = "alice@contoso.com"
BOB = "bob@contoso.com"


@pytest.fixture(scope="module")
def graph_server() -> Iterator[GraphFake]:
    with GraphFake() as server:
        yield server


@pytest.fixture
def fake(graph_server: GraphFake) -> Iterator[GraphFake]:
    graph_server.reset()
    yield graph_server
    graph_server.reset()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may reach Microsoft (a misconfigured client would try login.microsoftonline.com)."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test tried to reach {host}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def graph_settings(settings: Any, fake: GraphFake) -> Any:
    """Point the product at the fake: configuration only."""
    settings.GRAPH_AUTHORITY_HOST = fake.base_url
    settings.GRAPH_URL = fake.base_url
    settings.MAIL_CA_FILE = fake.ca_pem
    settings.GRAPH_RATE_LIMIT_REQUESTS = 1_000_000
    settings.GRAPH_RATE_LIMIT_SECONDS = 1
    return settings


class M365:
    """One Entra tenant in the fake with an app registration (Mail.ReadWrite) and alice's
    mailbox; ``source()`` saves a Microsoft 365 source for it as WebAdmin would."""

    def __init__(self, fake: GraphFake, *, roles: Iterable[str] = ("Mail.ReadWrite",)) -> None:
        self.fake = fake
        self.tenant = fake.add_tenant(domains=["contoso.com"])
        self.client_id, self.secret = fake.add_app(self.tenant, roles=roles)
        fake.add_mailbox(ALICE, tenant=self.tenant)

    def add_mailbox(self, address: str, **kwargs: Any) -> None:
        self.fake.add_mailbox(address, tenant=self.tenant, **kwargs)

    def source(self, *, mailboxes: Iterable[str] = (ALICE,), secret: str | None = None, **fields: Any) -> Any:
        from django.contrib.auth.models import Group

        from archive.models import FieldDefinition
        from mailsources.models import MailSource, SourceKind
        from mailsources.services import source_set_secret

        mapped = {name: FieldDefinition.objects.get(name=name) for name in ("from", "to", "cc", "subject")}
        values: dict[str, Any] = {
            "kind": SourceKind.M365,
            "name": f"M365 {uuid.uuid4().hex[:8]}",
            "tenant": self.tenant,
            "client_id": self.client_id,
            "mailboxes": "\n".join(mailboxes),
            "folders": "Inbox",
            "page_size": 25,
            "owner_group": Group.objects.get_or_create(name="Mail")[0],
            "from_field": mapped["from"],
            "to_field": mapped["to"],
            "cc_field": mapped["cc"],
            "subject_field": mapped["subject"],
        }
        values.update(fields)
        source = MailSource(**values)
        source_set_secret(source, self.secret if secret is None else secret)
        source.save()
        return source


@pytest.fixture
def m365(fake: GraphFake, graph_settings: Any) -> M365:
    return M365(fake)


def sync(source: Any, **kwargs: Any) -> Any:
    """One run of the real service with the real client factory, as the task does."""
    from mailsources import pipeline, services

    kwargs.setdefault("client_factory", services.client_for_source)
    return pipeline.source_sync(source.pk, **kwargs)


def add_mails(
    fake: GraphFake, folder: str, count: int, *, mailbox: str = ALICE, prefix: str = "mail"
) -> dict[str, bytes]:
    """``count`` distinct mails delivered to ``folder``: {immutable id: the MIME Graph serves}."""
    base = datetime.now(UTC) - timedelta(days=3)
    mails = {}
    for i in range(count):
        received = base + timedelta(minutes=i)
        raw = make_mime(subject=f"{prefix} {folder} {i}", date=received, body=f"Mail {i} of {folder}.\n")
        mails[fake.add_message(mailbox, folder, raw, received)] = raw
    return mails


def downloads(fake: GraphFake) -> list[str]:
    """Ids whose MIME (``/messages/{id}/$value``) was requested since the last reset_stats()."""
    return [unquote(r.path.split("/")[-2]) for r in fake.requests if r.kind == "value"]


def originals(source: Any, folder: str | None = None) -> dict[tuple[str, str], bytes]:
    """{(folder, immutable id): the stored original} for every location in the ledger."""
    from archive import storage
    from archive.models import DocumentFile, FileRole
    from mailsources.models import MailLocation

    rows = MailLocation.objects.filter(source=source).select_related("mail")
    if folder is not None:
        rows = rows.filter(folder=folder)
    result = {}
    for row in rows:
        original = DocumentFile.objects.get(document_id=row.mail.document_id, role=FileRole.ORIGINAL)
        result[(row.folder, row.location)] = storage.read_bytes(original.sha256)
    return result


def counts() -> dict[str, int]:
    from archive.models import Document
    from mailsources.models import ArchivedMail, MailLocation

    return {
        "documents": Document.objects.count(),
        "mails": ArchivedMail.objects.count(),
        "locations": MailLocation.objects.count(),
    }
