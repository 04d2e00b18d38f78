"""Shared fixtures: personas (alice, bob, an admin), an isolated store, documents."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from archive import services, storage


@pytest.fixture(autouse=True)
def isolated_store(settings, tmp_path):
    """Every test writes blobs into its own empty store."""
    settings.STORAGE_DIR = tmp_path / "store"
    return settings.STORAGE_DIR


@pytest.fixture
def group_a(db) -> Group:
    return Group.objects.create(name="Sales")


@pytest.fixture
def group_b(db) -> Group:
    return Group.objects.create(name="Legal")


@pytest.fixture
def alice(group_a) -> User:
    user = User.objects.create_user("alice", password="alice-pass-123")
    user.groups.add(group_a)
    return user


@pytest.fixture
def bob(group_b) -> User:
    user = User.objects.create_user("bob", password="bob-pass-123")
    user.groups.add(group_b)
    return user


@pytest.fixture
def admin_user(db) -> User:
    return User.objects.create_superuser("admin", password="admin-pass-123")


@pytest.fixture
def make_document(group_a):
    def make(
        content: bytes = b"hello world\n",
        name: str = "hello.txt",
        owner_group: Group | None = None,
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
