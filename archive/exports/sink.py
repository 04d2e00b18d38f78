"""Where an export's files go: members of a ZIP file written as a stream (one
member at a time, never held in memory), or files of a directory on the
server. Every file is hashed while it is written."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol


class Written:
    """A written file: its path in the export, its SHA-256 and size."""

    __slots__ = ("path", "sha256", "size")

    def __init__(self, path: str, sha256: str, size: int) -> None:
        self.path, self.sha256, self.size = path, sha256, size

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


class Sink(Protocol):
    def write(self, path: str, chunks: Iterable[bytes]) -> Written: ...

    def close(self) -> None: ...


def safe_path(path: str) -> str:
    """A relative POSIX path without ``..``, absolute parts or empty segments."""
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    if not parts:
        raise ValueError(f"empty export path: {path!r}")
    return "/".join(parts)


def _hashed(path: str, chunks: Iterable[bytes], out: BinaryIO) -> Written:
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        out.write(chunk)
    return Written(path, digest.hexdigest(), size)


class ZipSink:
    """Members deflated at the fastest level (mail and PDFs are mostly compressed
    already: more effort buys little), ZIP64 where needed (exports pass 4 GiB)."""

    def __init__(self, file: Path) -> None:
        self.zip = zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True)

    def write(self, path: str, chunks: Iterable[bytes]) -> Written:
        path = safe_path(path)
        with self.zip.open(path, "w", force_zip64=True) as out:
            return _hashed(path, chunks, out)  # type: ignore[arg-type]

    def close(self) -> None:
        self.zip.close()


class DirectorySink:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=False)

    def write(self, path: str, chunks: Iterable[bytes]) -> Written:
        path = safe_path(path)
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            written = _hashed(path, chunks, out)
            out.flush()
            os.fsync(out.fileno())
        return written

    def close(self) -> None:
        pass
