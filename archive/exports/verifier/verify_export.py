#!/usr/bin/env python3
"""Verify an export of the WebAdmin archive without the application.

Usage: python3 verify_export.py [EXPORT_DIR_OR_ZIP] [--json]

Standard library only (Python 3.8 or newer). Checks, and reports every finding:

1. every file listed in manifest.json exists with the listed size and SHA-256,
   and no file is present that the manifest does not list;
2. manifest.csv says the same as manifest.json (number, path, size, SHA-256,
   metadata hash of every file row);
3. each document's metadata hashes to its metadata_sha256, which is the one the
   newest ledger entry of that document recorded; every file's SHA-256 is among
   the blobs the document's ledger entries recorded;
4. each ledger entry's hash is recomputed from its content and its prev_hash,
   and matches the hash list of the chain (ledger/chain.csv), whose links are
   checked from the first exported entry to the anchor that covers the last;
5. each anchor's digest is recomputed from the chain heads it names, its head
   entry is in the hash list with that hash, and its timestamp token file has
   the listed SHA-256 and carries that digest (the TSA's signature itself is
   checked with OpenSSL, see README.md).

Exit code 0: no finding; 1: findings (listed); 2: not an export.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Any

FORMAT = "webadmin-export/1"
GENESIS = "0" * 64
LEDGER_FIELDS = ("seq", "at", "actor", "event", "document", "blobs", "metadata_sha256", "details")
# Files that cannot list themselves: the manifest, and the verifier with its README
# (they are listed too, but a verifier that checks itself proves nothing: compare it
# with the published copy).
UNLISTED = {"manifest.json"}


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(prev_hash: str, payload: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(payload)).hexdigest()


def anchor_digest(anchor: dict[str, Any]) -> str:
    message = canonical(
        {"audit": [anchor["audit_seq"], anchor["audit_hash"]], "ledger": [anchor["ledger_seq"], anchor["ledger_hash"]]}
    )
    return hashlib.sha256(message).hexdigest()


def file_digest(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class Report:
    def __init__(self) -> None:
        self.findings: list[dict[str, str]] = []
        self.notes: list[str] = []
        self.checked: dict[str, int] = {"files": 0, "documents": 0, "ledger_entries": 0, "chain_links": 0, "anchors": 0}

    def finding(self, kind: str, where: str, text: str) -> None:
        self.findings.append({"kind": kind, "where": where, "text": text})


def all_files(root: str) -> set[str]:
    found = set()
    for folder, _dirs, names in os.walk(root):
        for name in names:
            found.add(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return found


def check_files(root: str, listed: list[dict[str, Any]], report: Report) -> None:
    present = all_files(root)
    for entry in listed:
        path = entry["path"]
        full = os.path.join(root, *path.split("/"))
        if path not in present:
            report.finding("file_missing", path, "listed in the manifest, not in the export")
            continue
        sha, size = file_digest(full)
        report.checked["files"] += 1
        if size != entry["size"] or sha != entry["sha256"]:
            report.finding(
                "file_changed",
                path,
                f"size {size} sha256 {sha}, manifest: size {entry['size']} sha256 {entry['sha256']}",
            )
    for path in sorted(present - {e["path"] for e in listed} - UNLISTED):
        report.finding("file_unlisted", path, "in the export, not in the manifest")


def manifest_rows(manifest: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for document in manifest["documents"]:
        for f in document["files"]:
            yield document, f


def check_csv(root: str, manifest: dict[str, Any], report: Report) -> None:
    path = os.path.join(root, "manifest.csv")
    if not os.path.isfile(path):
        report.finding("file_missing", "manifest.csv", "the CSV manifest is missing")
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    expected = [
        {
            "number": str(d["number"]),
            "kind": d["kind"],
            "archived": d["archived"],
            "file_id": str(f["id"]),
            "role": f["role"],
            "version": str(f["version"]),
            "part": f["part"],
            "name": f["name"],
            "content_type": f["content_type"],
            "path": f["path"],
            "size": str(f["size"]),
            "sha256": f["sha256"],
            "metadata_sha256": d["metadata_sha256"],
        }
        for d, f in manifest_rows(manifest)
    ]
    if len(rows) != len(expected):
        report.finding("csv_mismatch", "manifest.csv", f"{len(rows)} rows, manifest.json lists {len(expected)} files")
    for number, (row, want) in enumerate(zip(rows, expected), start=2):  # noqa: B905 (Python 3.8)
        got = {key: row.get(key, "") for key in want}
        if got != want:
            report.finding("csv_mismatch", f"manifest.csv line {number}", f"{got} differs from manifest.json {want}")


def read_entries(root: str, report: Report) -> dict[int, dict[str, Any]]:
    entries: dict[int, dict[str, Any]] = {}
    path = os.path.join(root, "ledger", "entries.jsonl")
    if not os.path.isfile(path):
        report.finding("file_missing", "ledger/entries.jsonl", "the ledger excerpt is missing")
        return entries
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                entries[entry["seq"]] = entry
            except (ValueError, KeyError, TypeError):
                report.finding("ledger_unreadable", f"ledger/entries.jsonl line {line_no}", "not a ledger entry")
    return entries


def read_chain(root: str, report: Report) -> dict[int, tuple[str, str]]:
    chain: dict[int, tuple[str, str]] = {}
    path = os.path.join(root, "ledger", "chain.csv")
    if not os.path.isfile(path):
        report.finding("file_missing", "ledger/chain.csv", "the chain's hash list is missing")
        return chain
    with open(path, newline="", encoding="ascii") as fh:
        for row in csv.DictReader(fh):
            chain[int(row["seq"])] = (row["prev_hash"], row["entry_hash"])
    return chain


def check_chain(chain: dict[int, tuple[str, str]], report: Report) -> None:
    seqs = sorted(chain)
    for previous, seq in zip(seqs, seqs[1:]):  # noqa: B905 (Python 3.8)
        where = f"ledger #{seq}"
        if seq != previous + 1:
            report.finding("chain_gap", where, f"the hash list jumps from #{previous} to #{seq}")
        elif chain[seq][0] != chain[previous][1]:
            report.finding("chain_broken", where, f"prev_hash {chain[seq][0]} is not #{previous}'s hash")
        else:
            report.checked["chain_links"] += 1
    if seqs and seqs[0] == 1 and chain[1][0] != GENESIS:
        report.finding("chain_broken", "ledger #1", "the first entry does not start from the genesis hash")


def check_entries(entries: dict[int, dict[str, Any]], chain: dict[int, tuple[str, str]], report: Report) -> None:
    for seq, entry in sorted(entries.items()):
        where = f"ledger #{seq}"
        payload = {name: entry.get(name) for name in LEDGER_FIELDS}
        recomputed = entry_hash(entry.get("prev_hash", ""), payload)
        report.checked["ledger_entries"] += 1
        if recomputed != entry.get("entry_hash"):
            report.finding(
                "ledger_entry_altered", where, f"content hashes to {recomputed}, entry says {entry.get('entry_hash')}"
            )
        if seq not in chain:
            report.finding("ledger_entry_unlinked", where, "not in the chain's hash list")
        elif chain[seq] != (entry.get("prev_hash"), entry.get("entry_hash")):
            report.finding("ledger_entry_altered", where, "its hashes differ from the chain's hash list")


def check_documents(manifest: dict[str, Any], entries: dict[int, dict[str, Any]], report: Report) -> None:
    by_document: dict[int, list[dict[str, Any]]] = {}
    for entry in entries.values():
        by_document.setdefault(entry["document"], []).append(entry)
    for document in manifest["documents"]:
        number = document["number"]
        where = f"document {number}"
        report.checked["documents"] += 1
        recomputed = hashlib.sha256(canonical(document["metadata"])).hexdigest()
        if recomputed != document["metadata_sha256"]:
            report.finding(
                "metadata_altered",
                where,
                f"metadata hashes to {recomputed}, manifest says {document['metadata_sha256']}",
            )
        own = sorted(by_document.get(number, []), key=lambda e: e["seq"])
        if not own:
            report.finding("ledger_missing", where, "no ledger entry for this document in the excerpt")
            continue
        recorded = [e for e in own if e.get("metadata_sha256")]
        if recorded and recorded[-1]["metadata_sha256"] != document["metadata_sha256"]:
            report.finding(
                "metadata_not_in_ledger",
                where,
                f"newest ledger entry #{recorded[-1]['seq']} recorded {recorded[-1]['metadata_sha256']}",
            )
        blobs = {sha for e in own for sha in e.get("blobs", [])}
        listed = {f["sha256"] for f in document["metadata"].get("files", [])}
        for f in document["files"]:
            if f["sha256"] not in blobs:
                report.finding("file_not_in_ledger", f["path"], "its SHA-256 is in no ledger entry of the document")
            if f["sha256"] not in listed:
                report.finding("file_not_in_metadata", f["path"], "its SHA-256 is not among the document's files")


def check_anchors(
    root: str, chain: dict[int, tuple[str, str]], entries: dict[int, dict[str, Any]], report: Report
) -> None:
    path = os.path.join(root, "ledger", "anchors.json")
    if not os.path.isfile(path):
        report.finding("file_missing", "ledger/anchors.json", "the anchor list is missing")
        return
    with open(path, encoding="utf-8") as fh:
        anchors = json.load(fh)
    for anchor in anchors:
        where = f"anchor {anchor['id']}"
        report.checked["anchors"] += 1
        digest = anchor_digest(anchor)
        if digest != anchor["digest"]:
            report.finding("anchor_altered", where, f"its heads hash to {digest}, anchor says {anchor['digest']}")
        head = chain.get(anchor["ledger_seq"])
        if head is not None and head[1] != anchor["ledger_hash"]:
            report.finding("anchor_mismatch", where, f"ledger #{anchor['ledger_seq']} has hash {head[1]}")
        token = os.path.join(root, *anchor["token"].split("/"))
        if not os.path.isfile(token):
            report.finding("file_missing", anchor["token"], "the timestamp token is missing")
            continue
        with open(token, "rb") as fh:
            data = fh.read()
        if bytes.fromhex(anchor["digest"]) not in data:
            report.finding("token_mismatch", anchor["token"], "the token does not carry the anchor's digest")
    covered = max((a["ledger_seq"] for a in anchors if a["ledger_seq"] in chain), default=0)
    later = [seq for seq in entries if seq > covered]
    if later:
        report.notes.append(f"{len(later)} ledger entries are newer than the newest anchor (not timestamped yet)")


def verify(root: str) -> Report:
    report = Report()
    try:
        with open(os.path.join(root, "manifest.json"), encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        report.finding("not_an_export", "manifest.json", str(exc))
        return report
    if manifest.get("format") != FORMAT:
        report.finding("not_an_export", "manifest.json", f"format {manifest.get('format')!r}, expected {FORMAT}")
        return report
    listed = [f for _d, f in manifest_rows(manifest)] + manifest["files"]
    check_files(root, listed, report)
    check_csv(root, manifest, report)
    entries = read_entries(root, report)
    chain = read_chain(root, report)
    check_chain(chain, report)
    check_entries(entries, chain, report)
    check_documents(manifest, entries, report)
    check_anchors(root, chain, entries, report)
    return report


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    target = args[0] if args else os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as scratch:
        if os.path.isfile(target) and zipfile.is_zipfile(target):
            with zipfile.ZipFile(target) as zf:
                zf.extractall(scratch)  # member names were checked by the writer; extractall strips ".."
            target = scratch
        if not os.path.isfile(os.path.join(target, "manifest.json")):
            print(f"{target}: not an export (no manifest.json)", file=sys.stderr)
            return 2
        report = verify(target)
    if "--json" in argv:
        json.dump(
            {"ok": not report.findings, "findings": report.findings, "notes": report.notes, "checked": report.checked},
            sys.stdout,
            indent=2,
        )
        print()
    else:
        for finding in report.findings:
            print(f"FINDING {finding['kind']}: {finding['where']}: {finding['text']}")
        for note in report.notes:
            print(f"note: {note}")
        counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in report.checked.items())
        print(("OK" if not report.findings else f"{len(report.findings)} FINDING(S)") + f" — checked {counts}")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
