"""Files for the import tests, written the way mail programs write them: MBOX by the
standard library's ``mailbox`` (an independent writer and reader), mboxrd and
mboxcl2 by hand after their specifications, .eml trees and ZIPs."""

from __future__ import annotations

import mailbox
import zipfile
from pathlib import Path

from tests.mailsources.imap_pipeline import mail


def lf(raw: bytes) -> bytes:
    """A message with the Unix line ends mail programs store in MBOX files."""
    return raw.replace(b"\r\n", b"\n")


def write_mbox(path: Path, raws: list[bytes]) -> list[bytes]:
    """``raws`` as an mboxo file written by ``mailbox.mbox``; returns what its own
    reader gives back for each message (the bytes an import must archive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    box = mailbox.mbox(str(path), create=True)
    try:
        box.lock()
        for raw in raws:
            box.add(raw)
        box.flush()
    finally:
        box.unlock()
        box.close()
    box = mailbox.mbox(str(path), create=False)
    try:
        return [box.get_bytes(key) for key in box.keys()]
    finally:
        box.close()


def thunderbird_tree(root: Path) -> dict[str, list[bytes]]:
    """A Thunderbird profile's Local Folders: mailboxes without an extension, their
    subfolders in ``.sbd`` directories, ``.msf`` index files beside them. Returns
    {unit name: messages}."""
    layout = {
        "Inbox": [lf(mail(f"inbox {i}")) for i in range(3)],
        "Inbox.sbd/Projects": [lf(mail(f"project {i}")) for i in range(2)],
        "Inbox.sbd/Projects.sbd/2024": [lf(mail("old project"))],
        "Sent": [lf(mail("sent one", sender="alice@example.com"))],
    }
    expected = {}
    for name, raws in layout.items():
        expected[name] = write_mbox(root / name, raws)
        (root / f"{name}.msf").write_bytes(b'// <!-- <mdb:mork:z v="1.4"/> -->\n')
    (root / "msgFilterRules.dat").write_text('version="9"\n')
    return expected


def mboxrd_file(path: Path) -> tuple[list[bytes], bytes]:
    """An mboxrd file (each ``>*From `` body line quoted by one more ``>``) of three
    messages; returns the messages as they were before quoting, and the file."""
    originals = [
        b"From: a@example.com\nSubject: one\n\nFrom the start\n>From quoted once\nend\n",
        b"From: b@example.com\nSubject: two\n\n>>From quoted twice\nplain\n",
        b"From: c@example.com\nSubject: three\n\nno quoting here\n",
    ]
    data = b""
    for raw in originals:
        quoted = b"".join(
            b">" + line if line.lstrip(b">").startswith(b"From ") else line for line in raw.splitlines(keepends=True)
        )
        data += b"From MAILER-DAEMON Mon Jan  6 09:00:00 2025\n" + quoted + b"\n"
    path.write_bytes(data)
    return originals, data


def mboxcl2_file(path: Path) -> list[bytes]:
    """mboxcl2: no quoting, each message's body length in Content-Length, so a
    ``From `` line in a body is no separator."""
    bodies = [b"line\n\nFrom here it is still the body\n", b"second body\n"]
    messages = []
    data = b""
    for i, body in enumerate(bodies):
        message = f"From: x{i}@example.com\nSubject: cl {i}\nContent-Length: {len(body)}\n\n".encode() + body
        messages.append(message)
        data += b"From x@example.com Mon Jan  6 09:00:00 2025\n" + message + b"\n"
    path.write_bytes(data)
    return messages


def eml_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
