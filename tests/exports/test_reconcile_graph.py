"""The reconciliation report of a Microsoft 365 source, against the Graph fake
after a real sync: archived, too young, excluded folder, new since the last
run, and archived mail deleted in the mailbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailsources import reconcile
from tests.fakes.graph_fake import make_mime
from tests.mailsources.graph_pipeline import (  # noqa: F401 (fixtures)
    ALICE,
    add_mails,
    fake,
    graph_server,
    graph_settings,
    loopback_only,
    m365,
    sync,
)

pytestmark = pytest.mark.django_db


def test_a_microsoft_365_mailbox_is_reconciled_folder_by_folder(m365):  # noqa: F811 (a fixture)
    archived = add_mails(m365.fake, "Inbox", 2)
    source = m365.source(min_age_days=1)
    young = m365.fake.add_message(ALICE, "Inbox", make_mime(subject="young"), datetime.now(UTC))
    sync(source)
    deleted = next(iter(archived))
    m365.fake.delete_message(ALICE, deleted)
    excluded = m365.fake.add_message(
        ALICE, "Sent Items", make_mime(subject="sent"), datetime.now(UTC) - timedelta(days=5)
    )
    reports = {r.folder: r for r in reconcile.reconcile_source(source)}
    assert not [r.error for r in reports.values() if r.error]
    inbox = reports["Inbox"]
    assert (inbox.on_server, inbox.archived, inbox.not_archived, inbox.gone) == (2, 1, 1, 1)
    rows = {row.location: row for r in reports.values() for row in r.rows}
    assert rows[young].reason == "too young (archived when 1 day(s) old)"
    assert rows[deleted].state == reconcile.State.GONE
    assert rows[excluded].reason == "excluded folder (not in the source's folder list)"
