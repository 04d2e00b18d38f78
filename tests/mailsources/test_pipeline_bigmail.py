"""A huge mail through the real pipeline against the test Dovecot: its body goes
from the socket straight into the store (``mailsources/clients/imap/literal.py``),
is archived byte for byte, and a line cut or a full disk in the middle leaves no
half blob and no temporary file; the next run archives it."""

from __future__ import annotations

import errno
import hashlib
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from archive import storage
from archive.models import Document, DocumentFile, FileRole
from mailsources import services, tasks
from mailsources.clients.base import TransientSourceError
from mailsources.models import ArchivedMail, RunStatus
from tests.mailsources.imap_pipeline import archived_raws, mail, server_messages, sync
from tests.mailsources.test_imap_streaming import MB, huge_mail

pytestmark = pytest.mark.django_db


def store_contents() -> tuple[list[int], list[str]]:
    """(sizes of the blobs in the store, names of its temporary files)."""
    staging = Path(settings.STORAGE_DIR) / "tmp"
    temporary = sorted(p.name for p in staging.iterdir()) if staging.is_dir() else []
    return sorted(size for _sha, size in storage.iter_blobs()), temporary


def streaming_client_factory(streamed: list[storage.StoredBlob]) -> Callable[..., Any]:
    """The real client factory; what the client streamed into the store is listed."""

    def factory(source: Any, mailbox: str = "") -> Any:
        client = services.client_for_source(source, mailbox)
        sink = client.raw_sink

        def recording(chunks: Iterable[bytes]) -> storage.StoredBlob:
            blob = sink(chunks)
            streamed.append(blob)
            return blob

        client.raw_sink = recording
        return client

    return factory


def test_a_30_mb_mail_is_streamed_into_the_store_and_archived_byte_for_byte(imap_mailbox, imap_source):
    raw = huge_mail("Quarterly scans", 31)
    imap_mailbox.append_many("INBOX", [mail("small one"), raw])
    assert server_messages(imap_mailbox)[2] == raw
    streamed: list[storage.StoredBlob] = []

    run = sync(imap_source, client_factory=streaming_client_factory(streamed))

    assert (run.status, run.new) == (RunStatus.OK, 2), run.errors
    assert [blob.sha256 for blob in streamed] == [hashlib.sha256(raw).hexdigest()]  # only the big one
    big = ArchivedMail.objects.get(sha256=hashlib.sha256(raw).hexdigest())
    assert big.size == len(raw)
    assert big.document.title == "Quarterly scans"  # the header block read back from the store
    original = DocumentFile.objects.get(document=big.document, role=FileRole.ORIGINAL)
    assert (original.sha256, original.size) == (big.sha256, len(raw))
    assert sorted(archived_raws(imap_source)) == sorted(server_messages(imap_mailbox).values())
    assert store_contents()[1] == []


def test_a_line_cut_in_the_middle_of_a_huge_mail_leaves_no_half_blob_and_the_next_run_archives_it(
    dovecot, imap_mailbox, imap_source_factory, tcp_proxy_factory
):
    raw = huge_mail("Cut off", 12)
    imap_mailbox.append_many("INBOX", [mail("before the big one"), raw])
    proxy = tcp_proxy_factory("127.0.0.1", dovecot.tls_port, cut_after_server_bytes=6 * MB)
    source = imap_source_factory(imap_mailbox, port=proxy.port)

    with pytest.raises(TransientSourceError) as exc_info:
        sync(source)

    assert proxy.cuts == 1 and exc_info.value.code == "connection_lost"
    assert source.runs.get().status == RunStatus.RETRY
    assert Document.objects.count() == 1  # the small mail's batch is committed
    sizes, temporary = store_contents()
    assert len(sizes) == 1 and max(sizes) < MB and temporary == []  # nothing of the big one

    proxy.cut_after_server_bytes = None
    run = sync(source)

    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 1, 0), run.errors
    assert sorted(archived_raws(source)) == sorted(server_messages(imap_mailbox).values())
    assert store_contents()[1] == []


@pytest.fixture
def small_disk(mount_small_disk: Callable[[str], Path]) -> Path:
    return mount_small_disk("6m")


def test_a_full_disk_while_a_huge_mail_streams_is_a_retry_and_leaves_no_temporary_file(
    transactional_db, imap_mailbox, imap_source, small_disk
):
    raw = huge_mail("Too big for the disk", 10)
    imap_mailbox.append("INBOX", raw)

    with pytest.raises(OSError) as raised:  # called directly, the task's retry re-raises
        tasks.sync_source(imap_source.pk)

    assert raised.value.errno == errno.ENOSPC
    run = imap_source.runs.get()
    assert run.status == RunStatus.RETRY and run.errors.startswith("disk full: [Errno 28]"), run.errors
    assert store_contents() == ([], [])

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    tasks.sync_source(imap_source.pk)

    rerun = imap_source.runs.order_by("-pk").first()
    assert (rerun.status, rerun.new) == (RunStatus.OK, 1), rerun.errors
    assert archived_raws(imap_source) == [raw] and store_contents() == ([len(raw)], [])
