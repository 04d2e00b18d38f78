"""The import client: an existing archive read like a mailbox, one unit (MBOX
file, directory of mail files, ZIP, PST) per folder, in batches whose cursor is the
checkpoint (byte offset, file name, member or item index). The pipeline commits a
batch with its cursor, so a killed import goes on after the last committed batch."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from archive import storage
from mailsources.clients.base import (
    ConnectionReport,
    FetchedMessage,
    FolderBatch,
    FolderInfo,
    KnownFilter,
    PermanentSourceError,
)
from mailsources.clients.imports import mbox, outlook
from mailsources.clients.imports.discovery import MAIL_FILE_SUFFIXES, MBOX_SUFFIXES, Unit, discover

# bytes done, bytes in all (the command line's progress bar)
ProgressHook = Callable[[int, int], None]
BATCH_MESSAGES = 200
BATCH_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class ZipLimits:
    member_bytes: int
    total_bytes: int
    ratio: int


@dataclasses.dataclass
class _Item:
    """One step of a unit: a message (or a problem instead), then the checkpoint after it."""

    checkpoint: dict[str, Any]
    message: FetchedMessage | None = None
    problem: str = ""


def location_name(name: str) -> str:
    """A file or member name as a location (255 characters at most)."""
    return name if len(name) <= 255 else f"sha256:{hashlib.sha256(name.encode()).hexdigest()}"


def _converted(item: outlook.OutlookItem, original: bytes, details: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The generated .eml, with the item's own bytes stored (durable) as its original."""
    blob = storage.put_bytes(original)
    eml = outlook.eml_from_item(item, blob.sha256)
    eml_sha = hashlib.sha256(eml).hexdigest()
    return eml, {
        **details,
        "converted": True,
        "original_sha256": blob.sha256,
        "original_size": blob.size,
        "eml_sha256": eml_sha,
    }


def _mail_file(name: str, data: bytes) -> tuple[bytes, dict[str, Any]] | str:
    """(raw message, details) of a mail file's bytes, or why it is none."""
    suffix = PurePosixPath(name).suffix.lower()
    if not data:
        return "empty file, skipped"
    if suffix == ".msg":
        item = outlook.msg_read(data)
        return _converted(item, data, {"format": "msg", "original_name": name})
    if suffix == ".emlx":
        # Apple Mail: the message's length on the first line, the message, then a plist.
        first, _, rest = data.partition(b"\n")
        if not first.strip().isdigit() or int(first) > len(rest):
            return "not an Apple Mail .emlx file (no message length on its first line), skipped"
        return rest[: int(first)], {"format": "emlx"}
    return data, {"format": "eml"}


class ImportClient:
    """``MailClient`` over the files below ``root``."""

    def __init__(self, root: Path, fmt: str, *, zip_limits: ZipLimits, progress: ProgressHook | None = None) -> None:
        self.root = root
        self.fmt = fmt
        self.zip_limits = zip_limits
        self.progress = progress
        self._units: dict[str, Unit] | None = None
        self._done: dict[str, int] = {}

    # ------------------------------------------------------------------ interface

    def units(self) -> dict[str, Unit]:
        if self._units is None:
            if not self.root.exists():
                raise PermanentSourceError(f"the import path {self.root} does not exist", code="not_found")
            self._units = {unit.name: unit for unit in discover(self.root, self.fmt)}
            if not self._units:
                raise PermanentSourceError(f"no mail files found in {self.root} (format: {self.fmt})", code="empty")
        return self._units

    def test_connection(self) -> ConnectionReport:
        folders = self.list_folders()
        lines = [f"{len(folders)} mail file(s)/folder(s) in {self.root}"]
        return ConnectionReport(lines=lines, folders=folders, newest_subject=None)

    def list_folders(self) -> list[FolderInfo]:
        return [FolderInfo(name) for name in self.units()]

    def check_action_supported(self, action: str) -> None:
        raise PermanentSourceError("an import never moves or deletes the files it reads", code="unsupported")

    def move(self, folder: str, locations: list[str], target_folder: str, *, epoch: str | None = None) -> None:
        self.check_action_supported("move")

    def delete(self, folder: str, locations: list[str], *, epoch: str | None = None) -> None:
        self.check_action_supported("delete")

    def close(self) -> None:
        pass

    def sync_folder(
        self, folder: str, cursor: dict[str, Any] | None, known: KnownFilter, *, min_age_days: int = 0
    ) -> Iterator[FolderBatch]:
        unit = self.units().get(folder)
        if unit is None:
            raise PermanentSourceError(f"{folder}: no longer in {self.root}", code="folder_not_found")
        cursor = dict(cursor or {})
        if cursor.get("done"):
            self._report(unit, unit.size)
            return
        readers = {"mbox": self._mbox_items, "files": self._file_items, "zip": self._zip_items, "pst": self._pst_items}
        yield from self._batches(unit, readers[unit.kind](unit, cursor))

    # ------------------------------------------------------------------ batching

    def _report(self, unit: Unit, done: int) -> None:
        self._done[unit.name] = min(done, unit.size)
        if self.progress is not None:
            self.progress(sum(self._done.values()), sum(u.size for u in self.units().values()))

    def _batches(self, unit: Unit, items: Iterator[_Item]) -> Iterator[FolderBatch]:
        messages: list[FetchedMessage] = []
        problems: list[str] = []
        size = 0
        checkpoint: dict[str, Any] = {}
        for item in items:
            checkpoint = item.checkpoint
            if item.message is not None:
                messages.append(item.message)
                size += len(item.message.raw)
            if item.problem:
                problems.append(item.problem)
            if len(messages) >= BATCH_MESSAGES or size >= BATCH_BYTES or len(problems) >= BATCH_MESSAGES:
                yield FolderBatch(epoch="", messages=messages, cursor=checkpoint, problems=problems)
                self._report(unit, int(checkpoint.get("bytes_done", 0)))
                messages, problems, size = [], [], 0
        yield FolderBatch(epoch="", messages=messages, cursor={**checkpoint, "done": True}, problems=problems)
        self._report(unit, unit.size)

    # ------------------------------------------------------------------ readers

    def _mbox_items(self, unit: Unit, cursor: dict[str, Any]) -> Iterator[_Item]:
        if unit.size == 0:
            raise PermanentSourceError("empty file, nothing to import", code="file_unreadable")
        with open(unit.path, "rb", buffering=1 << 20) as stream:
            chosen = self.fmt if self.fmt in ("mboxo", "mboxrd") else None
            variant = str(cursor.get("variant") or chosen or mbox.detect_variant(stream))
            start = int(cursor.get("offset", 0))
            try:
                for message in mbox.read_messages(stream, start, variant=variant):
                    yield _mbox_item(message, variant)
            except mbox.NotMbox as exc:
                what = "not an MBOX file" if start == 0 else "the file changed since the last checkpoint"
                raise PermanentSourceError(f"{what}: {exc}", code="file_unreadable") from None
            except OSError as exc:
                raise PermanentSourceError(f"cannot be read: {exc}", code="file_unreadable") from None

    def _one_file(self, name: str, data: bytes, checkpoint: dict[str, Any], where: str) -> _Item:
        try:
            found = _mail_file(name, data)
        except PermanentSourceError as exc:
            return _Item(checkpoint, problem=f"{where}: {exc}")
        if isinstance(found, str):
            return _Item(checkpoint, problem=f"{where}: {found}")
        raw, details = found
        return _Item(checkpoint, FetchedMessage(location=location_name(name), raw=raw, details=details))

    def _file_items(self, unit: Unit, cursor: dict[str, Any]) -> Iterator[_Item]:
        if unit.single:
            paths = [unit.path]
        else:
            paths = sorted(p for p in unit.path.iterdir() if p.suffix.lower() in MAIL_FILE_SUFFIXES and p.is_file())
        after = cursor.get("after")
        done = int(cursor.get("bytes_done", 0))
        for path in paths:
            if after is not None and path.name <= after:
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                yield _Item({"after": path.name, "bytes_done": done}, problem=f"{path.name}: cannot be read: {exc}")
                continue
            done += len(data)
            yield self._one_file(path.name, data, {"after": path.name, "bytes_done": done}, path.name)

    def _zip_items(self, unit: Unit, cursor: dict[str, Any]) -> Iterator[_Item]:
        try:
            archive = zipfile.ZipFile(unit.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise PermanentSourceError(f"not a readable ZIP file: {exc}", code="file_unreadable") from None
        limits = self.zip_limits
        with archive:
            members = archive.infolist()
            start = int(cursor.get("index", 0))
            unpacked = int(cursor.get("unpacked", 0))
            for index in range(start, len(members)):
                info = members[index]
                checkpoint = {"index": index + 1, "unpacked": unpacked, "bytes_done": info.header_offset}
                where = f"member {index + 1} ({info.filename!r})"
                problem = _zip_member_problem(info, limits, unpacked)
                if problem:
                    yield _Item(checkpoint, problem=f"{where}: {problem}")
                    if "in all" in problem:
                        return
                    continue
                if info.is_dir():
                    yield _Item(checkpoint)
                    continue
                try:
                    with archive.open(info) as member:
                        data = member.read(limits.member_bytes + 1)
                except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
                    # RuntimeError: an encrypted member; the others may still be readable.
                    yield _Item(checkpoint, problem=f"{where}: cannot be unpacked: {exc}")
                    continue
                if len(data) > limits.member_bytes:
                    yield _Item(checkpoint, problem=f"{where}: larger than its directory entry says, skipped")
                    continue
                unpacked += len(data)
                checkpoint["unpacked"] = unpacked
                yield self._one_file(info.filename, data, checkpoint, where)

    def _pst_items(self, unit: Unit, cursor: dict[str, Any]) -> Iterator[_Item]:
        pst = outlook.pst_open(unit.path)
        try:
            for item in outlook.pst_items(pst, int(cursor.get("index", 0))):
                checkpoint = {"index": item.index + 1, "bytes_done": 0}
                if item.item is None:
                    yield _Item(checkpoint, problem=f"item {item.index + 1} in {item.folder_path or '/'}: {item.error}")
                    continue
                details = {"format": "pst", "folder_path": item.folder_path, "identifier": item.identifier}
                details["original_kind"] = "libpff property records (JSON)"
                raw, details = _converted(item.item, item.original, details)
                yield _Item(checkpoint, FetchedMessage(location=item.identifier, raw=raw, details=details))
        finally:
            pst.close()


def _mbox_item(message: mbox.MboxMessage, variant: str) -> _Item:
    checkpoint = {"offset": message.end, "variant": variant, "bytes_done": message.end}
    if message.internal:
        return _Item(checkpoint)
    details: dict[str, Any] = {"format": "mbox", "variant": variant, "length": message.end - message.offset}
    if message.unquoted:
        details["unquoted_from_lines"] = message.unquoted
    if message.content_length:
        details["content_length"] = True
    problem = ""
    if message.truncated:
        details["truncated"] = True
        problem = f"byte {message.offset}: the file ends inside this message (truncated); archived as it is, flagged"
    return _Item(checkpoint, FetchedMessage(location=str(message.offset), raw=message.raw, details=details), problem)


def _zip_member_problem(info: zipfile.ZipInfo, limits: ZipLimits, unpacked: int) -> str:
    """Why a ZIP member is not read: an unsafe name, no mail, or too big (a ZIP bomb)."""
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        return "unsafe name (an absolute path or '..'), skipped"
    if info.is_dir():
        return ""
    suffix = PurePosixPath(info.filename).suffix.lower()
    if suffix in MBOX_SUFFIXES:
        # Read in place it would be read from the start again after each interruption.
        return "an MBOX inside a ZIP (e.g. a Google Takeout): unpack it and import the .mbox file, skipped"
    if suffix not in MAIL_FILE_SUFFIXES:
        return "not a mail file (.eml, .msg, .emlx), skipped"
    if info.file_size > limits.member_bytes:
        return f"unpacks to {info.file_size} bytes, more than the limit of {limits.member_bytes}, skipped"
    if info.compress_size and info.file_size > 1 << 20 and info.file_size / info.compress_size > limits.ratio:
        return f"compressed {info.file_size // info.compress_size}:1 (a ZIP bomb?), skipped"
    if unpacked + info.file_size > limits.total_bytes:
        return f"the ZIP unpacks to more than the limit of {limits.total_bytes} bytes in all; the rest is not read"
    return ""
