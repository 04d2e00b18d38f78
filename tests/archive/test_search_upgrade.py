"""Entries written before the month tokens: marked stale, rewritten in the
background (highest number first) or by ``reindex``, and until then the
search does not count on them (archive/search/upgrade.py)."""

from __future__ import annotations

import importlib
import types

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from archive import services, storage, tasks
from archive.models import SearchEntry, SearchIndexState
from archive.search import upgrade

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
    SearchEntry.objects.update(text="stale")  # as an older token stream left them
    return made


def texts(documents) -> list[str]:
    entries = dict(SearchEntry.objects.values_list("document_id", "text"))
    return [entries[d.pk] for d in documents]


def test_stale_entries_are_rewritten_highest_number_first_in_batches(documents):
    SearchIndexState.objects.update_or_create(pk=1, defaults={"stale_through": documents[3].pk})
    assert not upgrade.months_ready()
    assert upgrade.upgrade_batch(size=2) == documents[2].pk - 1
    assert [t == "stale" for t in texts(documents)] == [True, True, False, False, True]  # 5th: newer, current
    assert "offer" in texts(documents)[3] and not upgrade.months_ready()
    assert upgrade.upgrade(seconds=0, size=2) == documents[2].pk - 1  # no time: nothing done
    assert upgrade.upgrade(size=2) == 0
    assert upgrade.months_ready()
    assert [t == "stale" for t in texts(documents)] == [False, False, False, False, True]
    if connection.vendor == "mysql":  # MariaDB's entries begin with their month
        assert [t.split()[0] for t in texts(documents)[:4]] == ["_m201801", "_m201802", "_m201803", "_m201804"]
    assert upgrade.upgrade_batch() == 0  # idle once done


def test_the_beat_task_upgrades_and_reindex_marks_everything_current(documents):
    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["archive.tasks.upgrade_search_index"] == 60.0
    SearchIndexState.objects.update_or_create(pk=1, defaults={"stale_through": documents[1].pk})
    tasks.upgrade_search_index()
    assert upgrade.months_ready() and [t == "stale" for t in texts(documents)][:2] == [False, False]
    SearchIndexState.objects.update_or_create(pk=1, defaults={"stale_through": documents[4].pk})
    call_command("reindex", str(documents[0].pk), stdout=open("/dev/null", "w"), stderr=open("/dev/null", "w"))
    assert not upgrade.months_ready()  # some documents only: the rest may still be stale
    call_command("reindex", stdout=open("/dev/null", "w"), stderr=open("/dev/null", "w"))
    assert upgrade.months_ready() and "stale" not in texts(documents)


def test_the_migration_marks_mariadbs_existing_entries_stale(documents):
    migration = importlib.import_module("archive.migrations.0011_search_index_state")
    SearchIndexState.objects.all().delete()
    migration.mark_stale(apps, types.SimpleNamespace(connection=connection))
    expected = documents[-1].pk if connection.vendor == "mysql" else 0  # SQLite's need no months
    assert SearchIndexState.objects.get(pk=1).stale_through == expected
    SearchIndexState.objects.all().delete()
    assert upgrade.months_ready()  # no row: a database made after the migration


def test_an_upgrade_does_not_wait_for_another_that_runs(documents):
    """Beat may start the next task while one still works: it leaves at once."""
    import threading

    from django.db import transaction

    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("SQLite locks the whole database, and its entries are never stale")
    SearchIndexState.objects.update_or_create(pk=1, defaults={"stale_through": documents[3].pk})
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
        assert upgrade.upgrade() == documents[3].pk  # nothing done, nothing waited for
    finally:
        release.set()
        thread.join()
    assert upgrade.upgrade() == 0
