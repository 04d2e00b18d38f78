"""The content-addressed, write-once store for every archived byte.

A blob lives at ``<STORAGE_DIR>/sha256/ab/cd/<hex digest>``. Writing goes to a
temporary file in the same directory tree, which is fsynced, then atomically
renamed into place, then the directory is fsynced: after ``put_*`` returns, the
bytes survive a power cut, and a crash before the rename leaves no file under
the final name (only a ``.tmp-*`` file that ``sweep_temporary`` removes).
Identical bytes are stored once. Blobs are never modified; ``remove`` deletes
one only for retention's expiry (``archive.retention.deletion``), once no
document references it.

``put_many`` stores a batch with the same guarantee for every blob, faster: on
this kind of disk creating and flushing a file mostly waits, so a few threads
write and fsync the batch's files side by side, and each directory that got
new entries is fsynced once, after all of its renames, before ``put_many``
returns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

CHUNK = 1024 * 1024
logger = logging.getLogger(__name__)
# Files written and fsynced at once by put_many; more did not help on the disks measured.
PUT_MANY_THREADS = 8
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class StorageError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    created: bool  # False when identical bytes were already stored


def _root() -> Path:
    return Path(settings.STORAGE_DIR)


def blob_path(sha256: str) -> Path:
    if not _HEX64.match(sha256):
        raise StorageError(f"not a SHA-256 hex digest: {sha256!r}")
    return _root() / "sha256" / sha256[:2] / sha256[2:4] / sha256


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(path: Path) -> None:
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    # Make the new directory entries themselves durable.
    for parent in (path, path.parent, path.parent.parent):
        _fsync_dir(parent)


def put_bytes(data: bytes) -> StoredBlob:
    return put_chunks([data])


def put_stream(stream: BinaryIO) -> StoredBlob:
    return put_chunks(iter(lambda: stream.read(CHUNK), b""))


def put_chunks(chunks: Iterable[bytes]) -> StoredBlob:
    """Hash and store ``chunks`` durably; returns the digest and size."""
    staging = _root() / "tmp"
    _ensure_dir(staging)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=staging)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        final = blob_path(sha)
        if _intact(final, sha, size):
            tmp.unlink()
            return StoredBlob(sha, size, created=False)
        _ensure_dir(final.parent)
        os.chmod(tmp, 0o444)
        # rename is atomic within one file system; a concurrent writer of the
        # same bytes renames identical content over it, which is harmless.
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return StoredBlob(sha, size, created=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def put_many(items: Sequence[bytes]) -> list[StoredBlob]:
    """Store every item durably, like ``put_bytes`` each (same order in the
    result); when it returns, every blob and its directory entry are fsynced."""
    if len(items) <= 1:
        return [put_bytes(data) for data in items]
    staging = _root() / "tmp"
    _ensure_dir(staging)
    with ThreadPoolExecutor(min(PUT_MANY_THREADS, len(items))) as pool:
        # hashlib and file I/O release the GIL: hashing is parallel too.
        digests = list(pool.map(lambda data: hashlib.sha256(data).hexdigest(), items))
        unique = {sha: data for sha, data in zip(digests, items, strict=True)}
        placed = dict(zip(unique, pool.map(lambda sha: _place(staging, sha, unique[sha]), unique), strict=True))
        # One fsync per directory for all the renames and new subdirectories in
        # it (an entry is durable once its directory is), after all of them.
        directories = set().union(*(changed for _, changed in placed.values()))
        list(pool.map(_fsync_dir, directories))
    created = {sha: new for sha, (new, _) in placed.items()}
    seen: set[str] = set()
    blobs = []
    for sha, data in zip(digests, items, strict=True):
        blobs.append(StoredBlob(sha, len(data), created=created[sha] and sha not in seen))
        seen.add(sha)
    return blobs


def _place(staging: Path, sha: str, data: bytes) -> tuple[bool, set[Path]]:
    """Write ``data`` to a fsynced temporary file and rename it to its blob path.
    Returns (created, the directories that got new entries): the caller fsyncs
    those. Not created when the blob was already stored."""
    final = blob_path(sha)
    if _intact(final, sha, len(data)):
        return False, set()
    changed = {final.parent}
    if not final.parent.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        changed |= {final.parent.parent, final.parent.parent.parent}  # as _ensure_dir fsyncs
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=staging)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)
        return True, changed
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _intact(final: Path, sha256: str, size: int) -> bool:
    """Whether identical bytes are stored already. A damaged copy (bit rot, a
    tampered file) is not: the fresh bytes replace it, atomically."""
    try:
        if final.stat().st_size != size:
            intact = False
        else:
            intact = verify(sha256)
    except FileNotFoundError:
        return False
    if not intact:
        logger.error("blob %s was damaged in the store; replacing it with verified bytes", sha256)
    return intact


def remove(sha256: str) -> bool:
    """Delete a blob no document references any more (False: it was not there)."""
    path = blob_path(sha256)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(path.parent)
    return True


def exists(sha256: str) -> bool:
    return blob_path(sha256).is_file()


def open_blob(sha256: str) -> BinaryIO:
    try:
        return open(blob_path(sha256), "rb")
    except FileNotFoundError:
        raise StorageError(f"blob {sha256} is missing from the store") from None


def read_bytes(sha256: str) -> bytes:
    with open_blob(sha256) as fh:
        return fh.read()


def iter_range(sha256: str, start: int, length: int) -> Iterator[bytes]:
    with open_blob(sha256) as fh:
        fh.seek(start)
        remaining = length
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


def verify(sha256: str) -> bool:
    """Re-read a stored blob and check that its bytes still hash to its name."""
    digest = hashlib.sha256()
    try:
        with open_blob(sha256) as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
    except StorageError:
        return False
    return digest.hexdigest() == sha256


def sweep_temporary(older_than_seconds: float = 3600, *, now: float | None = None) -> int:
    """Remove staging files left by a crash between write and rename, once they are
    older than ``older_than_seconds`` (by mtime; ``now``: the clock, for tests).
    A write in progress keeps its file fresh, so a live writer never loses it."""
    staging = _root() / "tmp"
    if not staging.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - older_than_seconds
    removed = 0
    for entry in staging.iterdir():
        if not entry.name.startswith(".tmp-"):
            continue
        try:
            if entry.stat().st_mtime < cutoff:
                entry.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # renamed into place or swept by someone else meanwhile
    return removed


def iter_blobs() -> Iterator[tuple[str, int]]:
    """(sha256, size) of every blob in the store, in no particular order."""
    root = _root() / "sha256"
    if not root.is_dir():
        return
    for first in os.scandir(root):
        if not first.is_dir():
            continue
        for second in os.scandir(first.path):
            if not second.is_dir():
                continue
            for entry in os.scandir(second.path):
                if _HEX64.match(entry.name) and entry.is_file():
                    try:
                        yield entry.name, entry.stat().st_size
                    except FileNotFoundError:
                        continue
