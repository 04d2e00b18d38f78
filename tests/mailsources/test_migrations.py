"""Migrations keep existing rows valid."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from mailsources.models import CursorStatus, FolderCursor

CURSOR_CHOICES = ("mailsources", "0003_foldercursor_status_choices")


@pytest.mark.django_db(transaction=True)
def test_free_text_cursor_statuses_become_choices(group_a):
    executor = MigrationExecutor(connection)
    before = sorted(executor.loader.graph.node_map[CURSOR_CHOICES].parents)[0].key
    latest = executor.loader.graph.leaf_nodes("mailsources")
    executor.migrate([before])
    try:
        apps = executor.loader.project_state([before]).apps
        Source = apps.get_model("mailsources", "MailSource")
        Cursor = apps.get_model("mailsources", "FolderCursor")
        source = Source.objects.create(kind="imap", name="old", owner_group_id=group_a.pk)
        for folder, status, message in [
            ("INBOX", "ok", ""),
            ("Gone", "error", "folder not found"),
            ("Odd", "stalled", "the server hung up"),
            ("Blank", "", ""),
        ]:
            Cursor.objects.create(source=source, mailbox="m", folder=folder, status=status, status_message=message)

        executor = MigrationExecutor(connection)
        executor.migrate([CURSOR_CHOICES])
        statuses = dict(FolderCursor.objects.values_list("folder", "status"))
    finally:
        MigrationExecutor(connection).migrate(latest)
    assert statuses == {
        "INBOX": CursorStatus.OK,
        "Gone": CursorStatus.ERROR,
        "Odd": CursorStatus.ERROR,  # with a message: something went wrong
        "Blank": CursorStatus.OK,
    }
