"""Integrity ledger benchmark (issue 12, item 6): ``python -m bench.integrity_bench``.

1. **Archive stage with and without the ledger, same run**: generated mails
   (``bench.mailgen``) go through the pipeline's archive step
   (``mailsources.pipeline.batch_ingest``: raw bytes stored and fsynced, then
   documents, dedup rows, locations and cursor committed) in batches of
   ``--batch``; batches alternate ledger on / off (ABBA order, so drift of the
   machine's load hits both alike; ``settings.INTEGRITY_LEDGER``). Prints the
   time of each side, store and commit apart, and the ratio (target ≤ 5 %).
2. **verify --full**: the whole verification over what was archived; prints
   the blob re-hashing in MB/s (target ≥ 200 MB/s) and the total.

The machine's load (``uptime``) and the CPU others used are printed with the
figures: on a shared machine they only mean something next to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.harness import BenchEnv, CpuMeter, cpu_line, pids_named, say
from bench.mailgen import MailGenerator

MB = 1_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.integrity_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=4000, help="mails archived (default 4000, ~200 MB)")
    parser.add_argument("--batch", type=int, default=100, help="mails per batch (the IMAP client's default: 100)")
    parser.add_argument("--seed", type=int, default=20240612)
    parser.add_argument("--database", default="webadmin_bench_integrity", help="bench database (dropped first)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and database")
    return parser.parse_args(argv)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def make_source():  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Group

    from archive.models import FieldDefinition
    from mailsources.models import MailSource, SourceKind

    fields = {f.name: f for f in FieldDefinition.objects.filter(name__in=["from", "to", "cc", "subject"])}
    return MailSource.objects.create(
        kind=SourceKind.IMAP,
        name="bench",
        owner_group=Group.objects.get_or_create(name="Archive")[0],
        host="127.0.0.1",
        username="bench",
        from_field=fields["from"],
        to_field=fields["to"],
        cc_field=fields["cc"],
        subject_field=fields["subject"],
    )


def archive_stage(args: argparse.Namespace) -> dict[bool, dict[str, float]]:
    from django.conf import settings

    from mailsources.clients.base import FetchedMessage, FolderBatch
    from mailsources.models import SyncRun
    from mailsources.pipeline import batch_ingest, batch_store

    mails = MailGenerator(args.seed).mailbox(args.mails)
    source = make_source()
    run = SyncRun.objects.create(source=source)
    batches = [mails[i : i + args.batch] for i in range(0, len(mails), args.batch)]
    times = {on: {"store": 0.0, "commit": 0.0, "mails": 0.0, "bytes": 0.0} for on in (True, False)}
    per_batch: dict[bool, list[float]] = {True: [], False: []}
    for number, chunk in enumerate(batches):
        # ABBA: on, off, off, on, on, off…
        on = (number % 4) in (0, 3)
        settings.INTEGRITY_LEDGER = on
        batch = FolderBatch(
            epoch="1",
            messages=[FetchedMessage(f"{number}-{i}", m.raw, m.internal_date) for i, m in enumerate(chunk)],
            cursor={"uid": number},
        )
        t0 = time.perf_counter()
        blobs = batch_store(batch)
        t1 = time.perf_counter()
        batch_ingest(source, "", f"folder-{number % 5}", batch, run, blobs)
        t2 = time.perf_counter()
        times[on]["store"] += t1 - t0
        times[on]["commit"] += t2 - t1
        times[on]["mails"] += len(chunk)
        times[on]["bytes"] += sum(len(m.raw) for m in chunk)
        per_batch[on].append((t2 - t0) / len(chunk))
    settings.INTEGRITY_LEDGER = True
    for on in (True, False):
        times[on]["median"] = statistics.median(per_batch[on])
    return times


def report_archive(times: dict[bool, dict[str, float]]) -> None:
    say("archive stage (store + commit of each batch), ledger on vs off in alternating batches:")
    per_mail = {}
    for on in (True, False):
        t = times[on]
        total = t["store"] + t["commit"]
        per_mail[on] = total / t["mails"]
        say(
            f"  ledger {'on ' if on else 'off'}: {t['mails']:6.0f} mails, {t['bytes'] / MB:7.1f} MB, "
            f"store {t['store']:6.2f} s + commit {t['commit']:6.2f} s = {total:6.2f} s, "
            f"{per_mail[on] * 1000:6.3f} ms/mail (commit {t['commit'] / t['mails'] * 1000:6.3f} ms/mail)"
        )
    extra = per_mail[True] / per_mail[False] - 1
    commit = (times[True]["commit"] / times[True]["mails"]) / (times[False]["commit"] / times[False]["mails"]) - 1
    say(f"  ledger cost: {extra * 100:+.1f} % of the archive stage per mail (target ≤ 5 %)")
    say(f"  of the commit step alone: {commit * 100:+.1f} %")
    median = times[True]["median"] / times[False]["median"] - 1
    on_ms, off_ms = times[True]["median"] * 1000, times[False]["median"] * 1000
    say(f"  median batch, ms per mail: on {on_ms:.3f}, off {off_ms:.3f}: {median * 100:+.1f} %")


def report_verify() -> None:
    from archive.integrity import verify
    from archive.models import DocumentFile

    shas = dict(DocumentFile.objects.values_list("sha256", "size").distinct())
    t0 = time.perf_counter()
    findings, done = verify.blob_findings(shas)
    blob_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = verify.run()
    total = time.perf_counter() - t0
    say(
        f"verify --full: blobs {done / MB:.1f} MB in {blob_seconds:.2f} s = {done / MB / blob_seconds:.0f} MB/s "
        f"(target ≥ 200 MB/s; page cache warm, {len(shas)} blobs, {len(findings)} findings)"
    )
    say(
        f"  whole run: {total:.2f} s = {report.counts['blob_bytes'] / MB / total:.0f} MB/s with metadata of "
        f"{report.counts['documents']} documents and {report.counts['ledger_entries']} ledger entries; "
        f"{len(report.findings)} findings"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = BenchEnv.create(args.database, keep=args.keep)
    try:
        say(f"before: {load()}")
        cpu = CpuMeter({"bench": lambda: [os.getpid()], "mariadb": lambda: pids_named("mariadbd")}).start()
        times = archive_stage(args)
        report_archive(times)
        report_verify()
        say(cpu_line(cpu.read(), ["bench", "mariadb"]))
        say(f"after: {load()}")
    finally:
        env.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
