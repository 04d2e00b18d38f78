"""Shared fixtures: personas (alice, bob, an admin), an isolated store, documents."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Dovecot on loopback, IMAP mailboxes per test, a TCP proxy that can cut connections.
pytest_plugins = ["tests.conftest_imap", "tests.mailsources.imap_pipeline"]


@pytest.fixture(autouse=True)
def isolated_store(request, tmp_path):
    """Every test writes blobs into its own empty store."""
    if not request.config.pluginmanager.hasplugin("django"):
        return None  # a client-only run with `-p no:django`
    settings = request.getfixturevalue("settings")
    settings.STORAGE_DIR = tmp_path / "store"
    return settings.STORAGE_DIR


@pytest.fixture(autouse=True)
def fast_password_hashing(request):
    # PBKDF2's deliberate slowness costs ~0.3 s per persona; tests need no such protection.
    if request.config.pluginmanager.hasplugin("django"):
        request.getfixturevalue("settings").PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def archive_defaults(request):
    """Transactional tests flush the database, data migrations included:
    put the default fields and settings back for every test that uses it."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    uses_db = {"db", "transactional_db", "live_server"} & set(request.fixturenames)
    marker = request.node.get_closest_marker("django_db")
    if not uses_db and marker is None:
        return
    transactional = (
        "transactional_db" in request.fixturenames
        or "live_server" in request.fixturenames
        or (marker is not None and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    from django.contrib.auth.models import Group

    from archive.defaults import ensure_defaults
    from archive.models import ArchiveSettings, FieldDefinition

    ensure_defaults(FieldDefinition, ArchiveSettings, Group)


@pytest.fixture
def group_a(db):
    from django.contrib.auth.models import Group

    return Group.objects.create(name="Sales")


@pytest.fixture
def group_b(db):
    from django.contrib.auth.models import Group

    return Group.objects.create(name="Legal")


@pytest.fixture
def alice(group_a):
    from django.contrib.auth.models import User

    user = User.objects.create_user("alice", password="alice-pass-123")
    user.groups.add(group_a)
    return user


@pytest.fixture
def bob(group_b):
    from django.contrib.auth.models import User

    user = User.objects.create_user("bob", password="bob-pass-123")
    user.groups.add(group_b)
    return user


@pytest.fixture
def admin_user(db):
    from django.contrib.auth.models import User

    return User.objects.create_superuser("admin", password="admin-pass-123")


@pytest.fixture
def make_document(group_a):
    from archive import services, storage

    def make(
        content: bytes = b"hello world\n",
        name: str = "hello.txt",
        owner_group=None,
        values: dict | None = None,
    ):
        blob = storage.put_bytes(content)
        document, _ = services.document_create_from_upload(
            name=name,
            blob=blob,
            content_type=services.guess_content_type(name),
            owner_group=owner_group or group_a,
            values=values,
        )
        return document

    return make


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """On SQLite the test database is a file, not Django's in-memory default, so
    that a real Celery worker process can share it (tests/mailsources/test_worker_kill.py)."""
    import tempfile
    from pathlib import Path

    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and not database.get("TEST", {}).get("NAME"):
        folder = Path(tempfile.mkdtemp(prefix="webadmin-testdb-"))
        database.setdefault("TEST", {})["NAME"] = str(folder / "test.sqlite3")


@pytest.fixture
def mount_small_disk(tmp_path: Path, settings: Any) -> Iterator[Callable[[str], Path]]:
    """``mount_small_disk("384k")``: STORAGE_DIR on a tmpfs of that size, for full-disk
    tests (mounting needs root: CI runs as root; otherwise the test says NOT ROOT and
    is skipped). Unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("NOT ROOT: a full-disk test mounts a small tmpfs, which needs root")
        mount_point = tmp_path / "small-disk"
        mount_point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], check=True)
        mounted.append(mount_point)
        settings.STORAGE_DIR = mount_point / "store"
        return mount_point

    yield mount
    for mount_point in mounted:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def auditor(db):
    """carol, in the group "Auditors" (read-only, every document) and in no owner group."""
    from tests.integrity.auditors import make_auditor

    return make_auditor()
