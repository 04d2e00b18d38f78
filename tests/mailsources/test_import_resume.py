"""An import killed with SIGKILL at a checkpoint (inside a batch's transaction: the
batch written, nothing committed) goes on where it stopped when run again: every
message of the file archived once, none lost, none doubled, the committed batches
not read again."""

from __future__ import annotations

import mailbox
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from archive import storage
from archive.models import Document, FileRole
from mailsources.clients.imports.client import BATCH_MESSAGES
from mailsources.models import ArchivedMail, FolderCursor, MailLocation, MailSource, RunStatus, SyncRun
from tests.mailsources.imap_pipeline import mail
from tests.mailsources.import_files import lf, write_mbox
from tests.mailsources.test_worker_kill import DEADLINE, REPO, worker_database_url

MAILS = 2 * BATCH_MESSAGES + 37

# The command line import, with a kill point: on the n-th folder-cursor write, inside the
# batch's transaction, the marker file is made and the process hangs until killed.
KILLABLE_IMPORT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webadmin.settings")
    import django
    django.setup()
    from django.core.management import call_command
    from tests.mailsources.kill_points import pause_at_cursor_write
    pause_at_cursor_write(int(os.environ["PAUSE_AT_CURSOR_WRITE"]), Path(os.environ["PAUSE_MARKER"]))
    call_command("import", sys.argv[1], "--mailbox", "alice@example.com", "--owner", "Mail", "--no-progress")
    """
)


def run_until_killed(path: Path, at_write: int, tmp_path: Path) -> None:
    marker = tmp_path / f"paused-{at_write}"
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webadmin.settings",
        "DATABASE_URL": worker_database_url(),
        "STORAGE_DIR": str(settings.STORAGE_DIR),
        "SOURCE_SECRET_KEY": settings.SOURCE_SECRET_KEY,
        "PAUSE_AT_CURSOR_WRITE": str(at_write),
        "PAUSE_MARKER": str(marker),
        "PYTHONPATH": str(REPO),
    }
    environment.pop("TEST_DATABASE_NAME", None)
    log = tmp_path / f"import-{at_write}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", KILLABLE_IMPORT, str(path)],
            cwd=REPO,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = timezone.now() + timedelta(seconds=DEADLINE)
        while not marker.exists():
            if process.poll() is not None:
                pytest.fail(f"the import ended before its kill point:\n{log.read_text()[-3000:]}")
            if timezone.now() > deadline:
                pytest.fail(f"no kill point reached within {DEADLINE:g} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)  # polling for the marker file, not waiting for time to pass
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.mark.parametrize("killed_at_batch", [1, 3])
def test_an_import_killed_at_a_checkpoint_goes_on_and_loses_or_doubles_nothing(
    transactional_db: None, tmp_path: Path, killed_at_batch: int
) -> None:
    Group.objects.get_or_create(name="Mail")
    path = tmp_path / "big.mbox"
    write_mbox(path, [lf(mail(f"mail {i}")) for i in range(MAILS)])
    box = mailbox.mbox(str(path), create=False)
    theirs = {box.get_bytes(key) for key in box.keys()}
    box.close()

    run_until_killed(path, killed_at_batch, tmp_path)

    committed = (killed_at_batch - 1) * BATCH_MESSAGES
    assert ArchivedMail.objects.count() == committed
    source = MailSource.objects.get()
    cursor = FolderCursor.objects.filter(source=source).first()
    if committed:
        assert cursor is not None and not cursor.cursor.get("done")
        assert path.read_bytes()[cursor.cursor["offset"] : cursor.cursor["offset"] + 5] == b"From "
    # The killed run's lease runs out (as it would after MAIL_SOURCE_LEASE_SECONDS).
    MailSource.objects.filter(pk=source.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    call_command("import", str(path), "--mailbox", "alice@example.com", "--owner", "Mail", "--no-progress")

    assert ArchivedMail.objects.count() == MAILS == Document.objects.count()
    assert MailLocation.objects.filter(source=source).count() == MAILS
    stored = {
        storage.read_bytes(m.document.files.get(role=FileRole.ORIGINAL).sha256)
        for m in ArchivedMail.objects.select_related("document")
    }
    assert stored == theirs
    last = SyncRun.objects.filter(source=source).order_by("-started", "-pk").first()
    assert last is not None and last.status == RunStatus.OK
    # Only what was not committed before the kill was read again.
    assert (last.new, last.duplicate) == (MAILS - committed, 0)
    assert SyncRun.objects.filter(source=source, status=RunStatus.RETRY).count() == 1
