"""Outages of what a sync depends on are transient, never a permanent failure:
database connection loss (MariaDB 2002/2003/2006/2013/2055, SQLite's equivalents),
the broker unavailable, a full disk. A sync whose post-commit enqueue of processing
fails still succeeds; a run that dies on an outage is closed with its true reason
and its lease released. Real errors from real servers, files and devices."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import kombu.exceptions
import MySQLdb
import pytest
import redis
from django.contrib.auth.models import Group
from django.db import OperationalError, connection, connections
from django.db.backends.mysql.base import DatabaseWrapper as MysqlWrapper
from django.db.backends.sqlite3.base import DatabaseWrapper as SqliteWrapper
from django.utils import timezone
from kombu import Connection

from archive.models import Document
from mailsources import services, tasks
from mailsources.models import MailSource, RunStatus, SourceStatus, SyncRun
from tests.mailsources.imap_pipeline import archived_raws, mail, server_messages
from tests.mailsources.test_queues import PrivateRedis, celery_broker, free_port, private_redis_server
from tests.mailsources.test_worker_kill import REPO, Worker, wait_for


def database_error(wrapper: Any) -> OperationalError:
    with pytest.raises(OperationalError) as caught:
        wrapper.ensure_connection()
        with wrapper.cursor() as cursor:
            cursor.execute("CREATE TABLE t (x integer)")
    wrapper.close()
    return caught.value


def mysql_wrapper(**settings: Any) -> MysqlWrapper:
    base = {"NAME": "webadmin", "USER": "root", "PASSWORD": "", "HOST": "127.0.0.1", "PORT": "", "OPTIONS": {}}
    base.update(
        {
            "ENGINE": "django.db.backends.mysql",
            "TIME_ZONE": None,
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
            "AUTOCOMMIT": True,
            "ATOMIC_REQUESTS": False,
            "TEST": {},
        }
    )
    base.update(settings)
    return MysqlWrapper(base)


def sqlite_wrapper(name: str, **options: Any) -> SqliteWrapper:
    return SqliteWrapper(
        {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            "OPTIONS": options,
            "TIME_ZONE": None,
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
            "AUTOCOMMIT": True,
            "ATOMIC_REQUESTS": False,
            "TEST": {},
        }
    )


# --------------------------------------------------------------------------- classification


@pytest.fixture
def other_databases(django_db_blocker: Any) -> Iterator[None]:
    """Connections of the test's own (not the test database's), which pytest-django blocks."""
    with django_db_blocker.unblock():
        yield


def test_a_mariadb_server_that_cannot_be_reached_is_transient(tmp_path, other_databases):
    refused = database_error(mysql_wrapper(PORT=str(free_port())))  # nothing listens: TCP refused
    no_socket = database_error(mysql_wrapper(HOST=str(tmp_path / "no-such.sock")))  # a socket path
    for exc in (refused, no_socket):
        assert exc.args[0] in {2002, 2003}, exc.args
        assert tasks.is_transient_db_error(exc)
        assert tasks.infrastructure_error(exc) == f"database unavailable: {exc}"
    assert no_socket.args[0] == 2002


def test_sqlite_unreachable_or_locked_is_transient_and_a_missing_table_is_not(tmp_path, other_databases):
    unreachable = database_error(sqlite_wrapper(str(tmp_path / "no-such-folder" / "db.sqlite3")))
    assert "unable to open database file" in str(unreachable)

    path = str(tmp_path / "db.sqlite3")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        locked = database_error(sqlite_wrapper(path, timeout=0))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "database is locked" in str(locked)

    wrapper = sqlite_wrapper(path)
    with pytest.raises(OperationalError) as missing:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT x FROM no_such_table")
    wrapper.close()

    assert tasks.is_transient_db_error(unreachable) and tasks.is_transient_db_error(locked)
    assert tasks.infrastructure_error(unreachable).startswith("database unavailable: unable to open")
    assert not tasks.is_transient_db_error(missing.value)
    assert tasks.infrastructure_error(missing.value) is None


def test_an_unreachable_broker_is_transient_and_does_not_fail_the_enqueue_of_processing(caplog):
    port = free_port()
    with pytest.raises(redis.ConnectionError) as direct:
        redis.Redis(port=port, socket_connect_timeout=2).ping()
    with celery_broker(f"redis://127.0.0.1:{port}/0"):
        with pytest.raises(kombu.exceptions.OperationalError) as publish:
            tasks.process_mail_documents.delay([1])
        with caplog.at_level(logging.WARNING, logger="mailsources.tasks"):
            tasks._enqueue_processing([1, 2, 3])  # returns: the mails are committed
    for exc in (direct.value, publish.value):
        assert tasks.infrastructure_error(exc) == f"broker unavailable: {exc}"
    assert any("could not enqueue processing of 3 document(s)" in r.getMessage() for r in caplog.records)


def test_a_full_disk_or_quota_is_transient():
    with pytest.raises(OSError) as full:
        with open("/dev/full", "wb", buffering=0) as device:
            device.write(b"x")
    assert full.value.errno == errno.ENOSPC
    assert tasks.infrastructure_error(full.value) == f"disk full: {full.value}"
    quota = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert tasks.infrastructure_error(quota).startswith("disk full: ")
    assert tasks.infrastructure_error(PermissionError(errno.EACCES, "denied")) is None
    assert tasks.infrastructure_error(ValueError("a bug")) is None


# --------------------------------------------------------------------------- runs


def use_small_batches(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """The task's real client factory, with batches of ``size`` mails (batch boundaries)."""
    real = services.client_for_source

    def factory(source: Any, mailbox: str = "") -> Any:
        client = real(source, mailbox)
        client.batch_size = size
        return client

    monkeypatch.setattr(services, "client_for_source", factory)  # tasks look it up per call


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    yield from private_redis_server(tmp_path)


@pytest.fixture
def kill_at_cursor_write():
    """kill(number, redis): SIGKILL ``redis`` at the ``number``-th folder cursor write,
    inside that batch's transaction: the commit follows, then the enqueue of its processing."""

    def install(number: int, server: PrivateRedis) -> Any:
        writes = 0

        def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal writes
            result = execute(sql, params, many, context)
            if "mailsources_foldercursor" in sql and sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
                writes += 1
                if writes == number:
                    server.kill()
            return result

        return connection.execute_wrapper(wrapper)

    return install


def test_redis_killed_between_a_commit_and_its_enqueue_the_run_still_succeeds(
    transactional_db, imap_mailbox, imap_source_factory, private_redis, kill_at_cursor_write, monkeypatch, caplog
):
    raws = [mail(f"receipt {i}", attachment=(f"receipt-{i}.txt", b"paid")) for i in range(6)]
    imap_mailbox.append_many("INBOX", raws)
    held = server_messages(imap_mailbox)
    source = imap_source_factory(imap_mailbox)
    use_small_batches(monkeypatch, 2)  # three batches

    with celery_broker(private_redis.url), kill_at_cursor_write(2, private_redis):
        with caplog.at_level(logging.WARNING, logger="mailsources.tasks"):
            tasks.sync_source(source.pk)

    assert private_redis.process is not None and private_redis.process.poll() is not None  # it was killed
    run = source.runs.get()
    assert (run.status, run.new, run.errors) == (RunStatus.OK, 6, "")
    assert sorted(archived_raws(source)) == sorted(held.values())
    # Batch 1's processing was queued; batches 2 and 3 met the dead broker, and said so.
    warnings = [r.getMessage() for r in caplog.records if "could not enqueue processing" in r.getMessage()]
    assert len(warnings) == 2
    source.refresh_from_db()
    assert source.status == SourceStatus.OK and source.lease_owner == "" and source.lease_until is None


@pytest.fixture
def small_disk(mount_small_disk: Callable[[str], Path]) -> Path:
    return mount_small_disk("384k")


def test_a_full_disk_ends_the_run_as_retry_with_its_reason_and_space_returning_completes_it(
    transactional_db, imap_mailbox, imap_source_factory, small_disk, monkeypatch
):
    raws = [mail(f"scan {i}", attachment=(f"scan-{i}.bin", os.urandom(60_000))) for i in range(10)]
    imap_mailbox.append_many("INBOX", raws)
    held = server_messages(imap_mailbox)
    source = imap_source_factory(imap_mailbox)
    use_small_batches(monkeypatch, 2)

    with pytest.raises(OSError) as raised:  # called directly, the task's retry re-raises
        tasks.sync_source(source.pk)

    assert raised.value.errno == errno.ENOSPC
    run = source.runs.get()
    assert run.status == RunStatus.RETRY and run.finished is not None
    assert run.errors.startswith("disk full: [Errno 28]"), run.errors
    assert "internal error" not in run.errors
    source.refresh_from_db()
    assert source.status == SourceStatus.RETRYING and source.status_message.startswith("disk full: ")
    assert source.lease_owner == "" and source.lease_until is None
    assert source.enabled and source.status != SourceStatus.ERROR  # still scheduled
    archived_before = Document.objects.count()
    assert archived_before < 10

    # Space returns: the next attempt archives the rest, nothing twice.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    tasks.sync_source(source.pk)
    rerun = source.runs.order_by("-pk").first()
    assert (rerun.status, rerun.new, rerun.duplicate) == (RunStatus.OK, 10 - archived_before, 0), rerun.errors
    assert sorted(archived_raws(source)) == sorted(held.values())
    assert Document.objects.count() == 10


def test_the_retry_closes_a_run_its_attempt_left_running_when_the_database_went_away(imap_source, imap_mailbox):
    imap_mailbox.append_many("INBOX", [mail("after the outage")])
    # What an attempt leaves when the database goes away mid-batch: it could neither
    # close its run nor release its lease.
    dead = SyncRun.objects.create(source=imap_source, new=3, done=3)
    MailSource.objects.filter(pk=imap_source.pk).update(
        status=SourceStatus.RUNNING, lease_owner="dead-attempt@w1", lease_until=timezone.now() + timedelta(minutes=15)
    )
    reason = "database unavailable: (2013, 'Lost connection to server during query')"

    tasks.sync_source(imap_source.pk, interrupted_owner="dead-attempt@w1", interrupted_reason=reason)

    dead.refresh_from_db()
    assert (dead.status, dead.errors) == (RunStatus.RETRY, reason) and dead.finished is not None
    rerun = imap_source.runs.order_by("-pk").first()
    assert rerun.pk != dead.pk and (rerun.status, rerun.new) == (RunStatus.OK, 1)
    imap_source.refresh_from_db()
    assert imap_source.status == SourceStatus.OK and imap_source.lease_owner == ""


def test_a_retry_does_not_close_a_run_that_another_live_attempt_holds(imap_source):
    live = SyncRun.objects.create(source=imap_source)
    until = timezone.now() + timedelta(minutes=15)
    MailSource.objects.filter(pk=imap_source.pk).update(
        status=SourceStatus.RUNNING, lease_owner="live-attempt@w2", lease_until=until
    )
    assert tasks.run_close_interrupted(imap_source.pk, "dead-attempt@w1", "database unavailable: x")
    live.refresh_from_db()
    assert live.status == RunStatus.RUNNING and live.finished is None
    imap_source.refresh_from_db()
    assert imap_source.lease_owner == "live-attempt@w2"


# --------------------------------------------------------------------------- a private MariaDB


class PrivateMariaDB:
    """`mariadbd` of the test's own (loopback port, own datadir and socket), killable
    with SIGKILL and restarted on the same datadir (InnoDB recovers, as after a crash)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.datadir = folder / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115  # kept open for the server's life
        self.process = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                f"--socket={self.folder / 'mariadb.sock'}",
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1).close()
                return
            except MySQLdb.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the private MariaDB did not start:\n" + (self.folder / "server.log").read_text())
                time.sleep(0.05)  # polling for readiness

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/webadmin"

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", database="webadmin")
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            conn.close()


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB(tmp_path / "mariadb")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def private_database(private_mariadb: PrivateMariaDB, django_db_blocker: Any, tmp_path: Path) -> Iterator[str]:
    """The product's schema in the private MariaDB (``manage.py migrate``), reachable here
    as the database alias it returns."""
    MySQLdb.connect(host="127.0.0.1", port=private_mariadb.port, user="root").cursor().execute(
        "CREATE DATABASE webadmin CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )
    environment = {**os.environ, "DATABASE_URL": private_mariadb.url, "DATA_DIR": str(tmp_path / "migrate")}
    environment.pop("TEST_DATABASE_NAME", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=environment, check=True)
    alias = "private"
    connections.settings[alias] = {
        **connections["default"].settings_dict,
        **dj_database_url.parse(private_mariadb.url, conn_max_age=0),
        "OPTIONS": {"charset": "utf8mb4", "isolation_level": "read committed"},
        "TEST": {},
    }
    with django_db_blocker.unblock():
        yield alias
        connections[alias].close()
    del connections.settings[alias]


def test_mariadb_killed_mid_batch_the_run_is_closed_with_its_reason_and_the_retry_completes(
    private_mariadb, private_database, private_redis, imap_mailbox, dovecot, tmp_path, settings
):
    raws = [mail(f"statement {i}", f"Statement {i}.") for i in range(9)]
    imap_mailbox.append_many("INBOX", raws)
    held = server_messages(imap_mailbox)
    group = Group.objects.using(private_database).create(name="Mail")
    source = MailSource(
        kind="imap",
        name="outage",
        host=dovecot.host,
        port=dovecot.tls_port,
        security="tls",
        username=imap_mailbox.user.name,
        ca_file=dovecot.ca_file,
        folders="INBOX",
        owner_group=group,
    )
    services.source_set_secret(source, imap_mailbox.user.password)
    source.save(using=private_database)

    marker = tmp_path / "retry-scheduled"
    assert private_mariadb.process is not None
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webadmin.settings",
        "DATABASE_URL": private_mariadb.url,
        "CELERY_BROKER_URL": private_redis.url,
        "STORAGE_DIR": str(settings.STORAGE_DIR),
        "SOURCE_SECRET_KEY": settings.SOURCE_SECRET_KEY,
        "DATA_DIR": str(tmp_path / "worker"),
        "PYTHONPATH": str(REPO),
        "OUTAGE_BATCH_SIZE": "3",
        "OUTAGE_AT_CURSOR_WRITE": "2",  # batch 1 committed, batch 2's commit meets a dead server
        "OUTAGE_MARIADB_PID": str(private_mariadb.process.pid),
        "OUTAGE_MARKER": str(marker),
    }
    worker = Worker.start(["tests.mailsources.outage_worker"], environment, tmp_path / "worker.log")
    try:
        with Connection(private_redis.url) as broker:
            tasks.sync_source.apply_async((source.pk,), connection=broker)  # routed to "sync"
        wait_for(marker.exists, "the task failing on the dead database", [worker])
        assert private_mariadb.process.poll() is not None  # killed by the worker, mid-batch
        private_mariadb.start()  # the database is back (after crash recovery)

        def finished() -> bool:  # the run closed, then (last of all) the lease released
            rows = private_mariadb.query("SELECT status FROM mailsources_syncrun ORDER BY id")
            released = private_mariadb.query("SELECT lease_owner FROM mailsources_mailsource") == [("",)]
            return len(rows) == 2 and rows[-1][0] != RunStatus.RUNNING and released

        wait_for(finished, "the retry's run to finish", [worker])
    finally:
        worker.kill()

    (dead_status, dead_errors, dead_finished, dead_new), (status, errors, new, duplicate) = (
        private_mariadb.query("SELECT status, errors, finished, new FROM mailsources_syncrun ORDER BY id")[0],
        private_mariadb.query("SELECT status, errors, new, duplicate FROM mailsources_syncrun ORDER BY id")[1],
    )
    # The dead attempt's run: closed by the retry, with the true reason (not "the worker stopped").
    assert dead_status == RunStatus.RETRY and dead_finished is not None and dead_new == 3
    assert dead_errors.startswith("database unavailable: ("), dead_errors
    assert "internal error" not in dead_errors and "worker stopped" not in dead_errors
    # The retry archived the rest; nothing lost, nothing twice.
    assert (status, errors, new, duplicate) == (RunStatus.OK, "", 6, 0)
    stored = private_mariadb.query("SELECT sha256 FROM mailsources_archivedmail")
    assert sorted(sha for (sha,) in stored) == sorted(hashlib.sha256(raw).hexdigest() for raw in held.values())
    assert private_mariadb.query("SELECT COUNT(*) FROM archive_document") == [(9,)]
    [(source_status, message, lease_owner, lease_until)] = private_mariadb.query(
        "SELECT status, status_message, lease_owner, lease_until FROM mailsources_mailsource"
    )
    assert (source_status, message, lease_owner, lease_until) == (SourceStatus.OK, "", "", None)
    assert "database unavailable" in worker.log()
