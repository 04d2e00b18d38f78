"""A huge Microsoft 365 mail through the real pipeline against the Graph fake: its
``$value`` body goes from the response into the store as it arrives
(``graph/transport.py::_read_body_to``), never held whole, and is archived byte for
byte; small mails stay in memory and are stored with their batch."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import pytest

from archive import storage
from mailsources.models import RunStatus
from tests.fakes.graph_fake import GraphFake, make_mime
from tests.mailsources import graph_pipeline
from tests.mailsources.graph_pipeline import ALICE, M365, originals, sync
from tests.mailsources.test_imap_streaming import huge_mail

graph_server = graph_pipeline.graph_server
fake = graph_pipeline.fake
loopback_only = graph_pipeline.loopback_only
graph_settings = graph_pipeline.graph_settings
m365 = graph_pipeline.m365

pytestmark = pytest.mark.django_db


def test_a_huge_mail_is_streamed_into_the_store_and_archived_byte_for_byte(
    fake: GraphFake, m365: M365, monkeypatch: pytest.MonkeyPatch
) -> None:
    streamed: list[tuple[storage.StoredBlob, list[int]]] = []
    put_chunks = storage.put_chunks

    def recording(chunks: Iterable[bytes]) -> Any:  # the real store, its calls listed
        sizes: list[int] = []

        def counted() -> Iterable[bytes]:
            for chunk in chunks:
                sizes.append(len(chunk))
                yield chunk

        blob = put_chunks(counted())
        streamed.append((blob, sizes))
        return blob

    monkeypatch.setattr(storage, "put_chunks", recording)  # services hands it to the client
    big = huge_mail("the year's scans", 12)
    small = make_mime("a small one", body="Hello.\n")
    ids = {fake.add_message(ALICE, "inbox", big): big, fake.add_message(ALICE, "inbox", small): small}
    source = m365.source(folders="Inbox")

    run = sync(source)

    assert run.status == RunStatus.OK, run.errors
    assert originals(source) == {("Inbox", i): raw for i, raw in ids.items()}
    # The huge mail reached the store in chunks of at most 1 MiB as they arrived from the
    # response; a mail held in memory is stored as one piece (``put_bytes``), like the small one.
    by_sha = {blob.sha256: (blob.size, sizes) for blob, sizes in streamed}
    size, sizes = by_sha[hashlib.sha256(big).hexdigest()]
    assert size == sum(sizes) == len(big) and max(sizes) <= 1024 * 1024 and len(sizes) >= 12
    assert by_sha[hashlib.sha256(small).hexdigest()] == (len(small), [len(small)])
