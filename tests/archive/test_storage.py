"""The content-addressed store: write-once, dedup, durable, no partial files."""

from __future__ import annotations

import hashlib
import os

import pytest

from archive import storage


def test_it_stores_bytes_under_their_sha256():
    blob = storage.put_bytes(b"archived forever")
    digest = hashlib.sha256(b"archived forever").hexdigest()
    assert blob.sha256 == digest
    assert blob.size == len(b"archived forever")
    assert blob.created
    path = storage.blob_path(digest)
    assert path.read_bytes() == b"archived forever"
    assert path.parent.name == digest[2:4] and path.parent.parent.name == digest[:2]


def test_identical_bytes_are_stored_once():
    first = storage.put_bytes(b"same")
    second = storage.put_chunks([b"sa", b"me"])
    assert first.sha256 == second.sha256
    assert first.created and not second.created
    assert len(list((storage.blob_path(first.sha256).parent).iterdir())) == 1


def test_stored_blobs_are_read_only(isolated_store):
    blob = storage.put_bytes(b"immutable")
    mode = storage.blob_path(blob.sha256).stat().st_mode
    assert mode & 0o222 == 0


def test_it_fsyncs_the_file_and_its_directory(monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", recording_fsync)
    blob = storage.put_bytes(b"durable")
    final = storage.blob_path(blob.sha256)
    assert any("/tmp/.tmp-" in p for p in synced), "the temporary file was not fsynced"
    assert str(final.parent) in synced, "the directory was not fsynced after the rename"
    # The file is fsynced before it gets its final name.
    file_sync = next(i for i, p in enumerate(synced) if "/tmp/.tmp-" in p)
    assert file_sync < synced.index(str(final.parent))


def test_a_crash_between_write_and_rename_leaves_no_visible_partial_file(monkeypatch):
    def crash(src, dst):  # the process dies right before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(storage.os, "replace", crash)
    content = b"x" * 100_000
    with pytest.raises(KeyboardInterrupt):
        storage.put_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    assert not storage.exists(digest)
    assert not storage.blob_path(digest).exists()
    leftovers = list((storage.blob_path(digest).parents[3] / "tmp").iterdir())
    assert leftovers == []


def test_a_leftover_temporary_file_is_never_taken_for_a_blob_and_is_swept():
    storage.put_bytes(b"create the staging dir")
    staging = storage.blob_path("0" * 64).parents[3] / "tmp"
    orphan = staging / ".tmp-orphan"
    orphan.write_bytes(b"half a mail")
    os.utime(orphan, (0, 0))
    assert storage.sweep_temporary(older_than_seconds=60) == 1
    assert not orphan.exists()


def test_the_sweep_keeps_temporary_files_younger_than_the_threshold_by_the_given_clock():
    storage.put_bytes(b"create the staging dir")
    staging = storage.blob_path("0" * 64).parents[3] / "tmp"
    now = 2_000_000_000.0
    old, young, other = staging / ".tmp-old", staging / ".tmp-young", staging / "not-ours"
    for path, age in ((old, 3601), (young, 3599), (other, 99_999)):
        path.write_bytes(b"x")
        os.utime(path, (now - age, now - age))
    assert storage.sweep_temporary(older_than_seconds=3600, now=now) == 1
    assert not old.exists() and young.exists() and other.exists()
    # Later by the same clock, the young one is old too.
    assert storage.sweep_temporary(older_than_seconds=3600, now=now + 2) == 1
    assert not young.exists() and other.exists()


def test_iter_blobs_lists_every_stored_blob_with_its_size():
    blobs = [storage.put_bytes(data) for data in (b"one", b"two two", b"three three three")]
    storage.put_bytes(b"one")  # stored once
    assert sorted(storage.iter_blobs()) == sorted((b.sha256, b.size) for b in blobs)


def test_verify_detects_a_changed_blob():
    blob = storage.put_bytes(b"original")
    assert storage.verify(blob.sha256)
    path = storage.blob_path(blob.sha256)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    assert not storage.verify(blob.sha256)
    assert not storage.verify("f" * 64)


def test_bad_digests_are_refused():
    with pytest.raises(storage.StorageError):
        storage.blob_path("../../etc/passwd")


def test_ranges_are_read_exactly():
    blob = storage.put_bytes(bytes(range(256)) * 10_000)
    assert b"".join(storage.iter_range(blob.sha256, 1000, 5)) == bytes([232, 233, 234, 235, 236])
    assert len(b"".join(storage.iter_range(blob.sha256, 0, blob.size))) == blob.size


def test_put_many_stores_a_batch_like_put_bytes_each():
    items = [b"first mail", b"second mail", b"first mail", b"x" * 300_000]
    already = storage.put_bytes(b"second mail")
    blobs = storage.put_many(items)
    assert [b.sha256 for b in blobs] == [hashlib.sha256(i).hexdigest() for i in items]
    assert [b.size for b in blobs] == [len(i) for i in items]
    # Created once: a duplicate in the batch and a blob stored before are not new.
    assert [b.created for b in blobs] == [True, False, False, True]
    assert already.created
    for blob, item in zip(blobs, items, strict=True):
        assert storage.blob_path(blob.sha256).read_bytes() == item
        assert storage.blob_path(blob.sha256).stat().st_mode & 0o222 == 0


def test_put_many_fsyncs_every_file_before_its_rename_and_every_directory_before_returning(monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def recording_replace(src, dst) -> None:  # type: ignore[no-untyped-def]
        events.append(("rename", str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(storage.os, "fsync", recording_fsync)
    monkeypatch.setattr(storage.os, "replace", recording_replace)
    items = [f"mail {i}".encode() * 100 for i in range(40)]
    blobs = storage.put_many(items)
    synced = [path for kind, path in events if kind == "fsync"]
    for kind, path in events:
        if kind == "rename":  # the temporary file was fsynced before it got its name
            assert path in synced[: synced.index(path) + 1]
            assert ("fsync", path) in events[: events.index((kind, path))]
    for blob in blobs:
        assert str(storage.blob_path(blob.sha256).parent) in synced
    # A directory is fsynced after every rename into it.
    last_rename = max(i for i, (kind, _) in enumerate(events) if kind == "rename")
    for blob in blobs:
        directory = str(storage.blob_path(blob.sha256).parent)
        assert any(e == ("fsync", directory) for e in events[last_rename + 1 :])


def test_put_many_leaves_no_partial_file_when_a_write_fails(monkeypatch):
    def crash(src, dst):  # e.g. the disk is full at the rename
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", crash)
    items = [b"a" * 1000, b"b" * 1000, b"c" * 1000]
    with pytest.raises(OSError):
        storage.put_many(items)
    for item in items:
        assert not storage.exists(hashlib.sha256(item).hexdigest())
    staging = storage.blob_path("0" * 64).parents[3] / "tmp"
    assert [p for p in staging.iterdir() if p.name.startswith(".tmp-")] == []


def test_storing_the_same_bytes_again_repairs_a_damaged_copy():
    blob = storage.put_bytes(b"the original mail")
    path = storage.blob_path(blob.sha256)
    path.chmod(0o644)
    path.write_bytes(b"the 0riginal mail")  # same size, one byte rotted
    again = storage.put_bytes(b"the original mail")
    assert again.created
    assert storage.verify(blob.sha256)
    path.chmod(0o644)
    path.write_bytes(b"short")
    repaired = storage.put_many([b"the original mail", b"another"])
    assert repaired[0].created and storage.verify(blob.sha256)
