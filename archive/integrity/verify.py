"""Verification: re-hash the blobs, recompute each document's metadata hash
against its latest ledger entry, walk both chains and check every anchor.

Each check yields ``Finding``s with a precise ``kind``:

- ``blob_missing`` / ``blob_corrupt``: a file's blob is gone or its bytes no
  longer hash to its name;
- ``metadata_mismatch``: the document now is not what its latest ledger entry
  recorded (a value edited in SQL, a file row pointed at another blob…);
  ``metadata_unrecorded``: a document without any ledger entry;
  ``document_missing``: a document gone without a ``deleted`` entry;
- ``entry_missing`` (a gap in the numbers), ``entry_altered`` (an entry's
  fields no longer give its hash), ``entry_reordered`` (linked to a later
  entry), ``link_broken``, ``head_mismatch`` (entries cut off at the end);
- ``anchor_invalid`` (the token does not verify for its heads),
  ``anchor_mismatch`` (the chain no longer has the entry the anchor covered).

``--sample N`` checks the blobs and metadata of N random documents, ``--since``
those changed since a date (and chain entries and anchors from then on); the
chains are walked in full otherwise."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from archive import storage
from archive.models import Document, DocumentFile

from . import anchoring, chain, ledger, tsa
from .models import Anchor, Chain, ChainEntry, ChainHead, LedgerEntry, LedgerEvent, VerificationRun, VerificationStatus

Progress = Callable[[str, int, int], None]  # stage, done, total (bytes for blobs)


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str
    subject: str  # "blob <sha>", "document 12", "ledger #7", "anchor 3"
    detail: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Report:
    mode: str
    started: dt.datetime
    finished: dt.datetime | None = None
    findings: list[Finding] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "started": chain.format_time(self.started),
            "finished": chain.format_time(self.finished) if self.finished else None,
            "ok": self.ok,
            "counts": self.counts,
            "findings": [f.as_dict() for f in self.findings],
        }


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


# --- blobs -------------------------------------------------------------------


READ_BUFFER = 1 << 20  # one read per MiB: few system calls, the buffer stays in the CPU's cache


class BlobHasher:
    """Re-hashes blobs through one reused buffer (no allocation per blob), read
    with ``os.readv`` straight into it; the kernel is told the reads are
    sequential (a larger read-ahead)."""

    def __init__(self, size: int = READ_BUFFER) -> None:
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)
        # storage.blob_path's layout (<root>/sha256/ab/cd/abcd…) as a string: its
        # Path objects cost more than hashing a small blob.
        self.root = os.fspath(storage.blob_path(_ZERO).parent.parent.parent)

    def path(self, sha: str) -> str | None:
        """The blob's file (``storage.blob_path``), or None for a name that is no digest."""
        if len(sha) != 64 or sha.strip(_HEX) or not sha.isascii():
            return None
        return f"{self.root}/{sha[:2]}/{sha[2:4]}/{sha}"

    def digest(self, sha: str) -> tuple[str | None, int]:
        """The digest of the blob's bytes (None when it is missing) and their number."""
        path = self.path(sha)
        if path is None:  # a name edited into no digest: no such blob
            return None, 0
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None, 0
        try:
            return self._read(fd)
        finally:
            os.close(fd)

    def _read(self, fd: int) -> tuple[str, int]:
        if SEQUENTIAL is not None:
            os.posix_fadvise(fd, 0, 0, SEQUENTIAL)
        digest, size = hashlib.sha256(), 0
        while n := os.readv(fd, [self.buffer]):
            digest.update(self.view[:n])
            size += n
        return digest.hexdigest(), size


_ZERO, _HEX = "0" * 64, "0123456789abcdef"
SEQUENTIAL: int | None = getattr(os, "POSIX_FADV_SEQUENTIAL", None)  # not on every platform


def blob_findings(shas: dict[str, int], progress: Progress = _no_progress) -> tuple[list[Finding], int]:
    """Re-hash each blob (sha → expected size), streaming; the findings and the bytes read.
    One thread: on a busy machine threads only contend (measured: slower)."""
    findings: list[Finding] = []
    total, done = sum(shas.values()), 0
    hasher = BlobHasher()
    for sha in sorted(shas):  # the store's directory order
        digest, size = hasher.digest(sha)
        done += size
        if digest is None:
            findings.append(Finding("blob_missing", f"blob {sha}", "the file is missing from the store"))
        elif digest != sha:
            findings.append(Finding("blob_corrupt", f"blob {sha}", f"its bytes hash to {digest}"))
        progress("blobs", done, total)
    return findings, done


# --- metadata ----------------------------------------------------------------


def latest_entries(numbers: list[int] | None = None) -> dict[int, LedgerEntry]:
    """Each document's latest ledger entry (of ``numbers``, or of all documents)."""
    newest = LedgerEntry.objects.values("document").annotate(seq=Max("seq")).order_by()
    if numbers is None:
        seqs = [row["seq"] for row in newest]
    else:
        seqs = [row["seq"] for part in _chunks(numbers) for row in newest.filter(document__in=part)]
    found: dict[int, LedgerEntry] = {}
    for part in _chunks(seqs):
        for entry in LedgerEntry.objects.filter(seq__in=part).only("seq", "document", "event", "metadata_sha256"):
            found[entry.document] = entry
    return found


def metadata_findings(numbers: list[int] | None, progress: Progress = _no_progress) -> tuple[list[Finding], int]:
    """Documents against their latest entries; ``numbers=None``: every document."""
    findings: list[Finding] = []
    entries = latest_entries(numbers)
    everything = Document.objects.order_by("pk")
    seen: set[int] = set()
    batch: list[Document] = []
    total = len(numbers) if numbers is not None else everything.count()

    def check(batch: list[Document]) -> None:
        for number, digest in ledger.metadata_hashes(batch, locking=False).items():
            entry = entries.get(number)
            if entry is None:
                findings.append(Finding("metadata_unrecorded", f"document {number}", "no ledger entry"))
            elif entry.event == LedgerEvent.DELETED:
                findings.append(
                    Finding("metadata_mismatch", f"document {number}", f"present after deletion #{entry.seq}")
                )
            elif entry.metadata_sha256 != digest:
                findings.append(
                    Finding(
                        "metadata_mismatch",
                        f"document {number}",
                        f"now {digest[:16]}…, #{entry.seq} ({entry.event}) recorded {entry.metadata_sha256[:16]}…",
                    )
                )
        progress("documents", len(seen), total)

    if numbers is None:
        documents: Iterator[Document] = everything.iterator(chunk_size=500)
    else:
        documents = (d for part in _chunks(numbers, 500) for d in everything.filter(pk__in=part))
    for document in documents:
        seen.add(document.pk)
        batch.append(document)
        if len(batch) == 500:
            check(batch)
            batch = []
    check(batch)
    for number, entry in sorted(entries.items()):
        if number not in seen and entry.event != LedgerEvent.DELETED:
            findings.append(
                Finding("document_missing", f"document {number}", f"gone without a deleted entry (last #{entry.seq})")
            )
    return findings, len(seen)


# --- chains ------------------------------------------------------------------


def chain_findings(
    name: str, since: dt.datetime | None = None, progress: Progress = _no_progress
) -> tuple[list[Finding], int]:
    """Walk one chain in order: numbering, links, each entry's hash, the head."""
    model = chain.MODELS[name]
    entries = model._default_manager.order_by("seq")
    expected, prev_hash = 1, chain.GENESIS
    before = _last_before(model, since)
    if before is not None:
        expected, prev_hash = before.seq + 1, before.entry_hash
        entries = entries.filter(seq__gt=before.seq)
    findings: list[Finding] = []
    total = entries.count()
    count = 0
    for entry in entries.iterator(chunk_size=2000):
        count += 1
        findings += _entry_findings(name, entry, expected, prev_hash)
        expected, prev_hash = entry.seq + 1, entry.entry_hash
        if count % 2000 == 0:
            progress(name, count, total)
    head = ChainHead.objects.filter(chain=name).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, chain.GENESIS)
    if (head_seq, head_hash) != (expected - 1, prev_hash):
        findings.append(
            Finding("head_mismatch", f"{name} head", f"head is #{head_seq}, the last entry is #{expected - 1}")
        )
    progress(name, count, total)
    return findings, count


def _last_before(model: type[ChainEntry], since: dt.datetime | None) -> ChainEntry | None:
    """The newest entry from before ``since``: found walking the ``seq`` index
    back from the head (entries are numbered in time order), which reads only
    the entries since then; the ledger has no index on its times."""
    if since is None:
        return None
    return model._default_manager.filter(at__lt=since).order_by("-seq").only("seq", "entry_hash").first()


def _entry_findings(name: str, entry: ChainEntry, expected: int, prev_hash: str) -> Iterator[Finding]:
    subject = f"{name} #{entry.seq}"
    recomputed = chain.entry_hash(entry.prev_hash, chain.entry_payload(name, entry))
    if entry.seq != expected:
        gap = f"#{expected}" if entry.seq == expected + 1 else f"#{expected}–#{entry.seq - 1}"
        yield Finding("entry_missing", subject, f"entries {gap} are missing before it")
    elif entry.prev_hash != prev_hash:
        later = chain.MODELS[name]._default_manager.filter(entry_hash=entry.prev_hash).first()
        if later is not None and later.seq > entry.seq:
            yield Finding("entry_reordered", subject, f"it links to #{later.seq}, which comes after it")
            return
        yield Finding("link_broken", subject, "its previous-entry hash is not the hash of the entry before it")
    if recomputed != entry.entry_hash:
        yield Finding("entry_altered", subject, "its fields do not give its stored hash")


# --- anchors -----------------------------------------------------------------


def _entry_hash_at(name: str, seq: int) -> str | None:
    if seq == 0:
        return chain.GENESIS
    return chain.MODELS[name]._default_manager.filter(seq=seq).values_list("entry_hash", flat=True).first()


def anchor_findings(since: dt.datetime | None = None) -> tuple[list[Finding], int]:
    findings: list[Finding] = []
    anchors = Anchor.objects.order_by("created")
    if since is not None:
        anchors = anchors.filter(created__gte=since)
    count = 0
    for anchor in anchors.iterator(chunk_size=200):
        count += 1
        subject = f"anchor {anchor.pk} ({chain.format_time(anchor.created)})"
        message = anchoring.message_for((anchor.ledger_seq, anchor.ledger_hash), (anchor.audit_seq, anchor.audit_hash))
        if hashlib.sha256(message).hexdigest() != anchor.digest:
            findings.append(Finding("anchor_invalid", subject, "its digest is not that of its heads"))
            continue
        try:
            tsa.verify_response(bytes(anchor.token), message)
        except tsa.TsaInvalid as exc:
            findings.append(Finding("anchor_invalid", subject, str(exc)))
            continue
        for name, seq, digest in (
            (Chain.LEDGER, anchor.ledger_seq, anchor.ledger_hash),
            (Chain.AUDIT, anchor.audit_seq, anchor.audit_hash),
        ):
            if _entry_hash_at(name, seq) != digest:
                findings.append(Finding("anchor_mismatch", subject, f"{name} #{seq} is not the entry it timestamped"))
    return findings, count


# --- the run -----------------------------------------------------------------


def _selection(sample: int | None, since: dt.datetime | None) -> list[int] | None:
    """The document numbers to check, or None for all of them."""
    if since is not None:
        before = _last_before(LedgerEntry, since)
        changed = set(
            LedgerEntry.objects.filter(seq__gt=before.seq if before else 0).values_list("document", flat=True)
        )
        created = set(Document.objects.filter(created__gte=since).values_list("pk", flat=True))
        return sorted(changed | created)
    if sample is not None:
        numbers = list(Document.objects.values_list("pk", flat=True))
        return sorted(random.sample(numbers, min(sample, len(numbers))))
    return None


def _chunks(numbers: list[int], size: int = 1000) -> Iterator[list[int]]:
    for i in range(0, len(numbers), size):
        yield numbers[i : i + size]


def _blobs_of(numbers: list[int] | None) -> dict[str, int]:
    """Each blob's expected size, read as plain tuples, streamed (one query, or one per 1000 documents)."""
    files = DocumentFile.objects.values_list("sha256", "size").order_by()
    if numbers is None:
        return dict(files.distinct().iterator(chunk_size=5000))
    return {sha: size for part in _chunks(numbers) for sha, size in files.filter(document_id__in=part)}


def run(*, sample: int | None = None, since: dt.datetime | None = None, progress: Progress = _no_progress) -> Report:
    """Verify (everything by default) and return the report."""
    mode = "since" if since is not None else "sample" if sample is not None else "full"
    report = Report(mode=mode, started=timezone.now())
    numbers = _selection(sample, since)
    blob_list, done = blob_findings(_blobs_of(numbers), progress)
    report.findings += blob_list
    report.counts["blob_bytes"] = done
    found, report.counts["documents"] = metadata_findings(numbers, progress)
    report.findings += found
    for name in (Chain.LEDGER, Chain.AUDIT):
        found, report.counts[f"{name}_entries"] = chain_findings(name, since, progress)
        report.findings += found
    found, report.counts["anchors"] = anchor_findings(since)
    report.findings += found
    report.finished = timezone.now()
    report.seconds = (report.finished - report.started).total_seconds()
    return report


def run_stored(
    *, sample: int | None = None, since: dt.datetime | None = None, progress: Progress = _no_progress
) -> VerificationRun:
    """``run``, its result kept as a ``VerificationRun`` (also when it cannot complete)."""
    mode = "since" if since is not None else "sample" if sample is not None else "full"
    record = VerificationRun.objects.create(started=timezone.now(), mode=mode)
    try:
        report = run(sample=sample, since=since, progress=progress)
    except Exception as exc:
        VerificationRun.objects.filter(pk=record.pk).update(
            status=VerificationStatus.FAILED, finished=timezone.now(), error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    record.finished = report.finished
    record.counts = report.counts
    record.findings = [f.as_dict() for f in report.findings]
    record.status = VerificationStatus.OK if report.ok else VerificationStatus.FINDINGS
    record.save(update_fields=["finished", "counts", "findings", "status"])
    return record


def full_due(now: dt.datetime | None = None) -> bool:
    """Whether the scheduled verification is a full one: none for VERIFY_FULL_INTERVAL_DAYS."""
    last = (
        VerificationRun.objects.filter(mode="full")
        .exclude(status__in=[VerificationStatus.RUNNING, VerificationStatus.FAILED])
        .order_by("-started")
        .first()
    )
    limit = dt.timedelta(days=settings.VERIFY_FULL_INTERVAL_DAYS)
    return last is None or (now or timezone.now()) - last.started >= limit


def scheduled(now: dt.datetime | None = None) -> VerificationRun:
    """The daily verification: full when due, a sample of VERIFY_SAMPLE_SIZE documents otherwise."""
    if full_due(now):
        return run_stored()
    return run_stored(sample=settings.VERIFY_SAMPLE_SIZE)
