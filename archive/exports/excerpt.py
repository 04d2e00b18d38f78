"""The ledger excerpt of an export and how a partial excerpt verifies.

- ``ledger/entries.jsonl``: every ledger entry of the exported documents, whole
  (the fields its hash covers, ``prev_hash`` and ``entry_hash``): the verifier
  recomputes each entry's hash from its content.
- ``ledger/chain.csv``: ``seq, prev_hash, entry_hash`` of *every* entry from the
  first exported one up to the head of the anchor that covers the last one (or
  the chain's head when no anchor covers it yet). Entries of other documents
  appear only as hashes — they disclose nothing — yet they let the verifier
  check each link, so no exported entry can be altered, removed or reordered
  without breaking the list, and the list cannot be rewritten without
  breaking an anchor.
- ``ledger/anchors.json`` and ``ledger/anchors/<id>.tsr``: the anchors whose
  ledger head lies in that range, with their RFC 3161 tokens. An anchor's
  head entry is in the hash list, so the token ties the whole list to the
  TSA's time."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator

from django.db.models import Max, Min

from archive.integrity.chain import format_time
from archive.integrity.models import Anchor, ChainHead, LedgerEntry

from .sink import Sink, Written

_CHUNK = 2000


def entry_record(entry: LedgerEntry) -> dict[str, object]:
    return {
        "seq": entry.seq,
        "at": format_time(entry.at),
        "actor": entry.actor,
        "event": entry.event,
        "document": entry.document,
        "blobs": entry.blobs,
        "metadata_sha256": entry.metadata_sha256,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }


def json_line(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, ensure_ascii=False).encode() + b"\n"


class Excerpt:
    """Collects the entries' range while documents are written, then writes the files."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.last: int | None = None

    def entries_for(self, numbers: list[int]) -> list[LedgerEntry]:
        entries = list(LedgerEntry.objects.filter(document__in=numbers).order_by("seq"))
        if entries:
            low, high = entries[0].seq, entries[-1].seq
            self.first = low if self.first is None else min(self.first, low)
            self.last = high if self.last is None else max(self.last, high)
        return entries

    def end(self) -> int:
        """The last entry of the hash list: the covering anchor's head, or the chain's head."""
        if self.last is None:
            return 0
        covering = Anchor.objects.filter(ledger_seq__gte=self.last).aggregate(m=Min("ledger_seq"))["m"]
        if covering is not None:
            return int(covering)
        head = ChainHead.objects.filter(chain="ledger").values_list("seq", flat=True).first()
        return int(head or LedgerEntry.objects.aggregate(m=Max("seq"))["m"] or self.last)

    def _chain_rows(self, end: int) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["seq", "prev_hash", "entry_hash"])
        yield buffer.getvalue().encode()
        if self.first is None:
            return
        rows = LedgerEntry.objects.filter(seq__gte=self.first, seq__lte=end).order_by("seq")
        for seq, prev, entry in rows.values_list("seq", "prev_hash", "entry_hash").iterator(chunk_size=_CHUNK):
            yield f"{seq},{prev},{entry}\n".encode("ascii")

    def anchors(self, end: int) -> list[Anchor]:
        if self.first is None:
            return []
        return list(Anchor.objects.filter(ledger_seq__gte=self.first, ledger_seq__lte=end).order_by("ledger_seq"))

    def write(self, sink: Sink, entries_file: Iterable[bytes]) -> list[Written]:
        end = self.end()
        written = [
            sink.write("ledger/entries.jsonl", entries_file),
            sink.write("ledger/chain.csv", self._chain_rows(end)),
        ]
        records = []
        for anchor in self.anchors(end):
            token = f"ledger/anchors/{anchor.pk}.tsr"
            written.append(sink.write(token, [bytes(anchor.token)]))
            records.append(
                {
                    "id": anchor.pk,
                    "created": format_time(anchor.created),
                    "ledger_seq": anchor.ledger_seq,
                    "ledger_hash": anchor.ledger_hash,
                    "audit_seq": anchor.audit_seq,
                    "audit_hash": anchor.audit_hash,
                    "digest": anchor.digest,
                    "tsa_url": anchor.tsa_url,
                    "gen_time": format_time(anchor.gen_time),
                    "token": token,
                }
            )
        written.append(sink.write("ledger/anchors.json", [json.dumps(records, indent=1).encode()]))
        return written
