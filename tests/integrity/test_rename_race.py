"""A group renamed while a batch of its documents is being archived: the
batch's documents must carry the new name in the ledger (an entry of the
rename's after theirs, or their own hash taken with the new name), else
``verify`` reports tampering that never happened. What orders them is
InnoDB's locks: a new document's foreign key holds a shared lock on its group's
row (the rename's UPDATE waits), and the rename's ledger signal locks the
group's documents (a batch holding one of them goes first). MariaDB only:
SQLite has one writer at a time, so the two cannot overlap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group
from django.db import connection, connections, transaction

from archive import services, storage
from archive.integrity import ledger, verify
from archive.integrity.models import LedgerEvent
from archive.models import Document, DocumentKind

pytestmark = pytest.mark.skipif(connection.vendor != "mysql", reason="two writers at once: MariaDB")


def _running(patterns: tuple[str, ...]) -> bool:
    """A statement matching one of ``patterns`` (SQL LIKE) is running: waiting for the other's locks."""
    with connections["default"].cursor() as cursor:
        where = " OR ".join(["info LIKE %s"] * len(patterns))
        cursor.execute(
            f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE id != CONNECTION_ID() AND ({where})", patterns
        )
        return int(cursor.fetchone()[0]) > 0


def _until(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    """Poll ``condition`` (a state another thread reaches), failing after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def archive_new(group: Group, existing: Document) -> None:
    """A batch of new mails of the group (the pipeline's ``documents_create_many``)."""
    services.documents_create_many(
        [
            services.NewDocument(
                owner_group=group,
                values={"title": f"mail {i}"},
                kind=DocumentKind.MAIL,
                files=[services.NewFile(name=f"m{i}.eml", blob=storage.put_bytes(f"mail {i}\n".encode()))],
            )
            for i in range(3)
        ],
        schedule_extraction=False,
    )


def add_location(group: Group, existing: Document) -> None:
    """A mail archived before, found in one more folder (the pipeline's ``_record_locations_added``)."""
    locked = Document.objects.select_for_update().get(pk=existing.pk)
    ledger.record_many([(LedgerEvent.LOCATION_ADDED, locked, "source 1", [], {"folder": "Archive"})])


def rename(group: Group, existing: Document) -> None:
    group.name = "Sales (renamed)"
    group.save()


LOCKED = "SELECT %`archive_document`% FOR UPDATE"  # a document row, locked
# What each step waits in when the other holds its transaction open.
WAITS_IN = {
    archive_new: ("INSERT INTO `archive_document`%",),  # the owner group's row (the foreign key's check)
    add_location: (LOCKED,),
    rename: ("UPDATE `auth_group`%", LOCKED),  # the group's row, or its documents (the ledger signal)
}


def _in_thread(
    step: Callable[[Group, Document], None],
    group_pk: int,
    existing: Document,
    done: threading.Event,
    errors: list,
    hold: tuple[threading.Event, threading.Event] | None = None,
) -> None:
    """``step`` in a transaction of its own; with ``hold``: set the first event
    once it has run and commit only when the second is set."""
    try:
        with transaction.atomic():
            step(Group.objects.get(pk=group_pk), existing)
            if hold is not None:
                hold[0].set()
                hold[1].wait(30)
        done.set()
    except Exception as exc:  # pragma: no cover - reported by the test
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("first", "second"),
    [(archive_new, rename), (rename, archive_new), (add_location, rename), (rename, add_location)],
    ids=["archive-then-rename", "rename-then-archive", "location-then-rename", "rename-then-location"],
)
def test_a_rename_racing_an_archiving_transaction_is_not_a_finding(make_document, group_a, first, second):
    existing = make_document(b"archived before\n", name="before.txt")
    inside, release, first_done, second_done = (threading.Event() for _ in range(4))
    errors: list[Exception] = []
    one = threading.Thread(target=_in_thread, args=(first, group_a.pk, existing, first_done, errors, (inside, release)))
    two = threading.Thread(target=_in_thread, args=(second, group_a.pk, existing, second_done, errors))
    one.start()
    _until(inside.is_set, f"{first.__name__} to run")
    two.start()
    # The second must wait for the first's commit: it cannot slip in between.
    _until(lambda: _running(WAITS_IN[second]) or second_done.is_set(), f"{second.__name__} to wait")
    assert not second_done.is_set()
    release.set()
    one.join(30)
    two.join(30)
    assert not errors
    assert first_done.is_set() and second_done.is_set()
    assert Group.objects.get(pk=group_a.pk).name == "Sales (renamed)"
    assert verify.run().findings == []
