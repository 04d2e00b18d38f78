"""Entries written before the month tokens: the index is marked pending, each
entry is checked and rewritten in the background or by ``reindex``, and until
then the search does not count on them (archive/search/upgrade.py)."""

from __future__ import annotations

import importlib
import threading
import types

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction

from archive import services, storage, tasks
from archive.models import SearchEntry, SearchIndexState
from archive.search import upgrade
from archive.search.backends import backend_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def documents(group_a):
    blob = storage.put_bytes(b"x")
    made = [
        services.document_create(
            owner_group=group_a,
            values={"title": f"offer {i}", "date": f"2018-{i + 1:02d}-05"},
            files=[services.NewFile(name="x.txt", blob=blob)],
        )
        for i in range(5)
    ]
    made.append(services.document_create(owner_group=group_a, values={"title": "undated"}, files=[]))
    return made


def texts(documents) -> list[str]:
    entries = dict(SearchEntry.objects.values_list("document_id", "text"))
    return [entries[d.pk] for d in documents]


def pending() -> None:
    SearchIndexState.objects.update_or_create(pk=1, defaults={"pending": True, "checked_through": 0})


def test_entries_without_their_month_are_found_by_content_and_rewritten(documents):
    if not backend_for().month_tokens:
        pending()
        assert upgrade.upgrade_batch() is False and upgrade.months_ready()  # SQLite's need none
        return
    old = [documents[1], documents[3]]  # as the old code wrote them, also after the migration
    for document in old:
        text = SearchEntry.objects.get(document=document).text
        SearchEntry.objects.filter(document=document).update(text=text.split(" ", 1)[1])
    current = {d.pk: t for d, t in zip(documents, texts(documents), strict=True) if d not in old}
    pending()
    assert not upgrade.months_ready()
    assert upgrade.upgrade_batch(size=2) is True  # documents 0 and 1: 1 rewritten
    assert texts(documents)[1].split()[0] == "_m201802" and not texts(documents)[3].startswith("_m")
    assert not upgrade.months_ready()
    assert upgrade.upgrade(seconds=0, size=2) is False  # no time: nothing done
    assert upgrade.upgrade(size=2) is True and upgrade.months_ready()
    assert [t.split()[0] for t in texts(documents)[:5]] == [f"_m20180{m}" for m in range(1, 6)]
    assert {d.pk: t for d, t in zip(documents, texts(documents), strict=True) if d not in old} == current
    assert upgrade.upgrade_batch() is False  # idle once done


def test_the_beat_task_upgrades_and_a_full_reindex_clears_pending(documents):
    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["archive.tasks.upgrade_search_index"] == 60.0
    pending()
    tasks.upgrade_search_index()
    assert upgrade.months_ready()
    pending()
    call_command("reindex", str(documents[0].pk), stdout=open("/dev/null", "w"), stderr=open("/dev/null", "w"))
    assert not upgrade.months_ready()  # some documents only: others may still lack it
    call_command("reindex", stdout=open("/dev/null", "w"), stderr=open("/dev/null", "w"))
    assert upgrade.months_ready()


def test_the_migration_marks_mariadbs_existing_entries_pending(documents):
    migration = importlib.import_module("archive.migrations.0011_search_index_state")
    SearchIndexState.objects.all().delete()
    migration.mark_pending(apps, types.SimpleNamespace(connection=connection))
    assert SearchIndexState.objects.get(pk=1).pending == (connection.vendor == "mysql")  # SQLite's need none
    SearchIndexState.objects.all().delete()
    assert upgrade.months_ready()  # no row: a database made after the migration


def test_an_upgrade_does_not_wait_for_another_that_runs(documents):
    """Beat may start the next task while one still works: it leaves at once."""
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("SQLite locks the whole database, and its entries need no months")
    pending()
    held, release = threading.Event(), threading.Event()

    def other_upgrade() -> None:
        with transaction.atomic():
            SearchIndexState.objects.select_for_update().get(pk=1)
            held.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=other_upgrade)
    thread.start()
    try:
        assert held.wait(30)
        assert upgrade.upgrade_batch() is None
        assert upgrade.upgrade() is False  # nothing done, nothing waited for
    finally:
        release.set()
        thread.join()
    assert upgrade.upgrade() is True
