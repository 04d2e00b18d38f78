"""Exports with proof (issue 13): the build's throughput and that its memory does
not grow with the export's size.

    BENCH=export make bench
    BENCH=export bash scripts/bench.sh --files 40 --megabytes 1 --factor 4

Two exports in one process, of N and factor × N documents of one file each
(random bytes, so the ZIP's deflate works for its money), every document with
its ledger entry: the build's peak of Python heap (tracemalloc) for each, their
ratio (target ≤ 1.5: independent of size; the manifest is spooled to disk and
the files are streamed), and the MB/s of the bigger build (ZIP written, then its
SHA-256 read back). Machine load from others is printed with it.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

from bench.harness import BenchEnv, say

DATABASE = "webadmin_bench_export"
LIMIT_RATIO = 1.5


def make_documents(count: int, size: int, group) -> None:  # type: ignore[no-untyped-def]
    from archive import services, storage
    from archive.integrity import ledger
    from archive.integrity.models import LedgerEvent

    for i in range(count):
        blob = storage.put_bytes(os.urandom(size))
        document, _ = services.document_create_from_upload(
            name=f"bench-{i}.bin", blob=blob, content_type="application/octet-stream", owner_group=group
        )
        ledger.record(LedgerEvent.ARCHIVED, document, "bench", blobs=[blob.sha256])


def build(user, numbers: tuple[int, int]) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    """(seconds, peak heap bytes, bytes of files) of one export of the documents numbered in ``numbers``."""
    from archive.exports import builder
    from archive.exports.models import Export

    export = Export.objects.create(created_by=user, query=f"number:{numbers[0]}..{numbers[1]}", with_z3=True)
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    built = builder.export_build(export.pk)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert built is not None and built.status == "done", built and built.error
    return seconds, peak, built.bytes


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--megabytes", type=float, default=1.0)
    parser.add_argument("--factor", type=int, default=4)
    args = parser.parse_args()
    env = BenchEnv.create(DATABASE)
    try:
        from django.contrib.auth.models import Group, User

        load_before = os.getloadavg()[0]
        group = Group.objects.create(name="bench")
        admin = User.objects.create_superuser("bench-admin", password="x")
        size = int(args.megabytes * 1024 * 1024)
        make_documents(args.files, size, group)
        small_last = group.documents.order_by("-pk").values_list("pk", flat=True).first()
        make_documents(args.files * (args.factor - 1), size, group)
        large_last = group.documents.order_by("-pk").values_list("pk", flat=True).first()
        first = group.documents.order_by("pk").values_list("pk", flat=True).first()
        small = build(admin, (first, small_last))
        large = build(admin, (first, large_last))
        ratio = large[1] / max(small[1], 1)
        say(
            f"export of {args.files} files ({small[2] / 1e6:.0f} MB): {small[0]:.2f} s, "
            f"heap peak {small[1] / 1e6:.1f} MB"
        )
        say(
            f"export of {args.files * args.factor} files ({large[2] / 1e6:.0f} MB): {large[0]:.2f} s, "
            f"heap peak {large[1] / 1e6:.1f} MB, {large[2] / 1e6 / large[0]:.1f} MB/s (ZIP deflated, hashed)"
        )
        say(f"heap peak ratio for {args.factor}x the size: {ratio:.2f} (target <= {LIMIT_RATIO})")
        say(
            f"machine load (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
        )
        return 0 if ratio <= LIMIT_RATIO else 1
    finally:
        env.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
