"""What an import path holds: its units, each one "folder" of the pipeline with a
cursor of its own — an MBOX file, a directory of .eml/.msg/.emlx files, a ZIP, a
PST/OST. Thunderbird trees (``Inbox``, ``Inbox.sbd/Projects``, files without an
extension), Apple Mail ``.mbox`` packages (an ``mbox`` file or ``Messages/*.emlx``)
and Google Takeout ``.mbox`` files are walked as they lie."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

MAIL_FILE_SUFFIXES = (".eml", ".msg", ".emlx")
MBOX_SUFFIXES = (".mbox", ".mbx", ".mbs")
PST_SUFFIXES = (".pst", ".ost")
# Files of mail programs that sit beside their mailboxes and are no mail.
_IGNORED_SUFFIXES = (".msf", ".dat", ".json", ".plist", ".sqlite", ".db", ".html", ".txt", ".toc", ".ini")


@dataclasses.dataclass(frozen=True)
class Unit:
    name: str  # the folder name in cursors and locations: the path below the import root
    path: Path
    kind: str  # "mbox", "files" (a directory's mail files, or one mail file), "zip", "pst"
    size: int  # bytes, for progress
    single: bool = False  # "files": just ``path`` itself


def _starts_like_mbox(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(5) == b"From "
    except OSError:
        return False


def _file_kind(path: Path, fmt: str) -> str | None:
    suffix = path.suffix.lower()
    if fmt in ("mbox", "mboxo", "mboxrd"):
        return "mbox" if suffix not in MAIL_FILE_SUFFIXES + PST_SUFFIXES + (".zip",) else None
    if fmt == "pst":
        return "pst" if suffix in PST_SUFFIXES else None
    if suffix == ".zip":
        return "zip" if fmt in ("auto", "eml", "msg") else None
    if suffix in MAIL_FILE_SUFFIXES:
        wanted = {"eml": (".eml", ".emlx"), "msg": (".msg",)}.get(fmt, MAIL_FILE_SUFFIXES)
        return "files" if suffix in wanted else None
    if fmt != "auto":
        return None
    if suffix in PST_SUFFIXES:
        return "pst"
    if suffix in MBOX_SUFFIXES:
        return "mbox"  # even when it turns out not to be one: the run history says so
    if suffix in _IGNORED_SUFFIXES or path.name.startswith("."):
        return None
    # Thunderbird's mailboxes have no extension; Apple Mail's package holds "mbox".
    return "mbox" if _starts_like_mbox(path) else None


def discover(root: Path, fmt: str = "auto") -> list[Unit]:
    """The units below ``root`` (a file or a directory), in a stable order."""
    if root.is_file():
        kind = _file_kind(root, fmt)
        if kind is None and fmt == "auto":
            kind = "mbox"  # one file named by the user: say what it is not, rather than nothing
        if kind is None:
            return []
        return [Unit(root.name, root, kind, root.stat().st_size, single=kind == "files")]
    units: list[Unit] = []
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        here = Path(directory)
        relative = here.relative_to(root).as_posix()
        mail_files = 0
        mail_bytes = 0
        for name in sorted(files):
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue
            kind = _file_kind(path, fmt)
            if kind == "files":
                mail_files += 1
                mail_bytes += path.stat().st_size
            elif kind is not None:
                unit_name = name if relative == "." else f"{relative}/{name}"
                units.append(Unit(unit_name, path, kind, path.stat().st_size))
        if mail_files:
            units.append(Unit(root.name if relative == "." else relative, here, "files", mail_bytes))
    return sorted(units, key=lambda unit: unit.name)
