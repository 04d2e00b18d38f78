"""An outage answers 503 "try again later", not 500 (issue 10, requirement 3):
the disk full (ENOSPC/EDQUOT), the database or the broker unreachable, on every
route, also where the view is not to blame: the session saved by its middleware
after the view, the user loaded for the view. An upload onto a full disk (a small
tmpfs as STORAGE_DIR; mounting needs root) stores nothing — no document, no blob,
no temporary file — and the same upload succeeds once there is room again."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kombu.exceptions
import pytest
import redis
from django.contrib.auth.signals import user_logged_in
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from django.urls import reverse
from kombu import Connection

from archive.models import Document
from tests.mailsources.test_queues import PrivateRedis, free_port, private_redis_server
from tests.mailsources.test_transient_errors import database_error, mysql_wrapper, sqlite_wrapper
from tests.webadmin.test_error_pages import assert_styled_error
from webadmin.middleware import OUTAGE_RETRY_AFTER_SECONDS, outage_response

MESSAGE = (
    "The archive cannot store files right now (disk full / database unavailable). Nothing was stored; try again later."
)


def assert_outage_page(response: Any) -> None:
    html = assert_styled_error(response, 503, "Try again later")
    assert MESSAGE in html
    assert response["Retry-After"] == str(OUTAGE_RETRY_AFTER_SECONDS)


@pytest.fixture
def other_databases(django_db_blocker: Any) -> Iterator[None]:
    """Connections of the test's own (not the test database's), which pytest-django blocks."""
    with django_db_blocker.unblock():
        yield


def test_a_lost_database_or_a_full_disk_is_a_503_and_anything_else_is_left_to_the_500(tmp_path, other_databases):
    refused = database_error(mysql_wrapper(PORT=str(free_port())))  # MariaDB: nothing listens (2002 or 2003)
    no_socket = database_error(mysql_wrapper(HOST=str(tmp_path / "no-such.sock")))  # 2002
    unreachable = database_error(sqlite_wrapper(str(tmp_path / "no-such-folder" / "db.sqlite3")))
    with pytest.raises(OSError) as full:
        with open("/dev/full", "wb", buffering=0) as device:
            device.write(b"x")
    quota = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert refused.args[0] in {2002, 2003} and no_socket.args[0] == 2002 and full.value.errno == errno.ENOSPC
    for exc in (refused, no_socket, unreachable, full.value, quota):
        assert_outage_page(outage_response(exc))
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: a stopped broker
    with pytest.raises(kombu.exceptions.OperationalError) as broker, Connection(dead_redis) as celery_side:
        celery_side.ensure_connection(max_retries=1)
    with pytest.raises(redis.exceptions.ConnectionError) as redis_down:
        redis.Redis.from_url(dead_redis).ping()
    for exc in (broker.value, redis_down.value):
        assert_outage_page(outage_response(exc))

    wrapper = sqlite_wrapper(str(tmp_path / "db.sqlite3"))
    with pytest.raises(OperationalError) as missing:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT x FROM no_such_table")  # a bug, not an outage
    wrapper.close()
    for exc in (missing.value, PermissionError(errno.EACCES, "denied"), ValueError("a bug")):
        assert outage_response(exc) is None


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture
def small_disk(mount_small_disk: Callable[[str], Path]) -> Path:
    return mount_small_disk("256k")


@pytest.fixture
def upload_temp(settings: Any, tmp_path: Path) -> Path:
    """Files over 64 KiB are spooled to a folder of the test's own, so a leftover shows."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


def test_an_upload_onto_a_full_disk_is_a_503_that_stores_nothing_and_succeeds_once_there_is_room(
    client, alice, group_a, small_disk, upload_temp, caplog
):
    client.force_login(alice)
    content = b"%PDF-1.4\n" + os.urandom(400 * 1024)  # more than the whole disk
    client.raise_request_exception = True  # a 500 would raise here: the 503 is an answer

    def upload() -> Any:
        scan = SimpleUploadedFile("scan.pdf", content, content_type="application/pdf")
        return client.post(reverse("archive:upload"), {"files": [scan], "owner_group": group_a.pk})

    response = upload()
    assert_outage_page(response)
    assert "No space left on device" not in response.content.decode()  # the reason goes to the log
    assert any("answered 503" in r.getMessage() and "No space left" in r.getMessage() for r in caplog.records)
    assert Document.objects.count() == 0
    assert files_in(small_disk) == []  # no blob, no half-written temporary file
    assert files_in(upload_temp) == []

    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    response = upload()
    assert response.status_code == 302
    document = Document.objects.get()
    assert response["Location"] == reverse("archive:document", args=[document.pk])
    assert document.files.get().size == len(content)
    assert len([p for p in files_in(small_disk) if p.parent.name != "tmp"]) == 1
    assert files_in(upload_temp) == []


def test_an_upload_whose_spooling_fills_the_disk_is_a_503_and_leaves_no_temporary_file(
    client, alice, group_a, small_disk, settings
):
    """The upload's temporary files on the same full disk: the request body
    cannot even be spooled (Django's multipart parser raises ENOSPC)."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    spool = small_disk / "upload-tmp"
    spool.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(spool)
    client.force_login(alice)
    scan = SimpleUploadedFile("scan.pdf", b"%PDF-1.4\n" + os.urandom(400 * 1024), content_type="application/pdf")
    response = client.post(reverse("archive:upload"), {"files": [scan], "owner_group": group_a.pk})
    assert_outage_page(response)
    assert Document.objects.count() == 0
    assert files_in(small_disk) == []


# --------------------------------------------------------------------------- outside the view


class DatabaseOutage:
    """``stop()``: from now on the test database's server is unreachable, as a stopped
    one is (MariaDB: nobody listens on its port, error 2003; SQLite: its file's folder
    is gone); the real driver raises the real errors. ``start()``: back again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.saved = dict(connection.settings_dict)

    def stop(self) -> None:
        connection.close()
        if connection.vendor == "mysql":
            connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
        else:
            connection.settings_dict["NAME"] = str(self.folder / "no-such-folder" / "db.sqlite3")

    def start(self) -> None:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(self.saved)


@pytest.fixture
def database_outage(transactional_db: Any, tmp_path: Path) -> Iterator[DatabaseOutage]:
    outage = DatabaseOutage(tmp_path)
    yield outage
    outage.start()


def test_the_database_gone_when_the_session_is_saved_after_the_login_is_a_503_and_the_login_works_once_back(
    client, alice, database_outage, caplog
):
    client.raise_request_exception = False  # Django signals the exception, and answers

    def outage_after_the_view(**kwargs: Any) -> None:
        database_outage.stop()  # the login view is done with the database; the session is saved after it

    def log_in() -> Any:
        return client.post(reverse("login"), {"username": "alice", "password": "alice-pass-123"})

    user_logged_in.connect(outage_after_the_view, dispatch_uid="outage-after-login")
    try:
        response = log_in()
    finally:
        user_logged_in.disconnect(dispatch_uid="outage-after-login")

    # Raised in SessionMiddleware.process_response, outside the view: before, the 500 page.
    assert_outage_page(response)
    assert "sessionid" not in response.cookies  # no session handed out that was never stored
    assert any("answered 503" in r.getMessage() and "POST /login/" in r.getMessage() for r in caplog.records)

    database_outage.start()
    assert client.get(reverse("archive:table"))["Location"].startswith(reverse("login"))  # not logged in
    assert log_in()["Location"] == reverse("archive:table")
    assert client.get(reverse("archive:table")).status_code == 200


def test_the_database_gone_when_a_signed_in_user_s_session_and_user_are_loaded_is_a_503(client, alice, database_outage):
    client.force_login(alice)
    client.raise_request_exception = False
    database_outage.stop()
    for url in (reverse("archive:table"), reverse("archive:upload"), "/webadmin/", "/api/v1/documents/"):
        assert_outage_page(client.get(url))


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    yield from private_redis_server(tmp_path)


def test_the_api_s_rate_limit_cache_on_a_stopped_redis_is_a_503(client, alice, settings, private_redis):
    settings.CACHES = {
        **settings.CACHES,
        "api": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": private_redis.url},
    }
    client.force_login(alice)
    assert client.get("/api/v1/documents/").status_code == 200
    private_redis.kill()
    client.raise_request_exception = False
    assert_outage_page(client.get("/api/v1/documents/"))
