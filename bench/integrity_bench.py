"""Integrity ledger benchmark (issue 12, item 6): ``python -m bench.integrity_bench``.

1. **Archive stage with and without the ledger, same run**: generated mails
   (``bench.mailgen``) go through the pipeline's archive step
   (``mailsources.pipeline.batch_ingest``: raw bytes stored and fsynced, then
   documents, dedup rows, locations and cursor committed) in batches of
   ``--batch``. Each chunk of mail is archived twice, ledger on and off
   (``settings.INTEGRITY_LEDGER``; the second time as twins with one more
   header), so both sides get the same mails, in ABBA order so that drift of
   the machine's load hits both alike. Prints the time of each side, store and
   commit apart, and the ledger's cost: the median over the chunks of (time
   with the ledger / time without) — a pair is the same mails, seconds apart,
   so a burst of the machine's load spoils one pair, not the total — next to
   the ratios of the totals (target ≤ 5 %); ``--runs`` times, then the median
   and the range of the runs, and the median over the pairs of all runs.
   Besides that difference, the time spent *inside* the ledger's calls
   (``ledger.record_many`` and ``chain.append_many``, timed by a wrapper that
   calls through) as a share of the rest of the same batches: the same
   batches on both sides of the ratio, so the machine's load scales both
   alike (it misses what the ledger costs outside its calls: the larger
   commit). And the bench process's CPU per mail on both sides.
2. **The IMAP bench's archive stage with and without the ledger**
   (``--imap-mails``, 0 to skip): what ``bench.imap_bench`` times as
   "archived" — a sync through real Celery workers from a private Dovecot:
   fetch, store and fsync, commit — for ``--imap-rounds`` rounds of four
   syncs, ledger on, off, off, on (the workers started again for each with
   ``INTEGRITY_LEDGER``), each of a mailbox of its own holding the same
   generated mails with one more header (as many bytes, new blobs). The
   processing queue is not consumed, so only the archive stage runs. A first
   sync warms up and is not counted; after each sync the archive is emptied
   again (documents, mails, locations, the ledger), so that every sync starts
   from the same database — this stage runs first, before the others fill it. Prints
   both sides' time and CPU per mail (workers and MariaDB) and the ledger's
   cost in both (target ≤ 5 %): of the totals, and the median over the pairs.
   With ``BENCH_PHASES=1`` each sync's steps are printed too (``bench.celery_app``:
   wall and thread CPU of the fetch, the store, the commit and the ledger's calls).
3. **verify --full**: the blob re-hashing of the verification over what was
   archived, ``--runs`` times: MB/s of blob data (target ≥ 200 MB/s), median
   and range, next to MB per CPU second of the bench process (what one idle
   core would give); then the whole verification once.

The machine's load (``uptime``) and the CPU others used are printed with the
figures: on a shared machine they only mean something next to it.
"""

from __future__ import annotations

import argparse
import functools
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
    parser.add_argument("--runs", type=int, default=3, help="archive stage and blob re-hashing runs (default 3)")
    parser.add_argument("--seed", type=int, default=20240612)
    parser.add_argument("--database", default="webadmin_bench_integrity", help="bench database (dropped first)")
    parser.add_argument("--imap-mails", type=int, default=2000, help="mails per sync of the IMAP stage (0: skip it)")
    parser.add_argument("--imap-rounds", type=int, default=6, help="rounds of four syncs (on, off, off, on)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and database")
    return parser.parse_args(argv)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def make_source(number: int = 0):  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Group

    from archive.models import FieldDefinition
    from mailsources.models import MailSource, SourceKind

    fields = {f.name: f for f in FieldDefinition.objects.filter(name__in=["from", "to", "cc", "subject"])}
    return MailSource.objects.create(
        kind=SourceKind.IMAP,
        name=f"bench {number}",
        owner_group=Group.objects.get_or_create(name="Archive")[0],
        host="127.0.0.1",
        username=f"bench{number}",
        from_field=fields["from"],
        to_field=fields["to"],
        cc_field=fields["cc"],
        subject_field=fields["subject"],
    )


def twin(raw: bytes, header: bytes = b"X-Bench-Twin: 1") -> bytes:
    """The same mail with one more header: as many more bytes for every ``header``
    of one length, another SHA-256."""
    return header + (b"\r\n" if b"\r\n" in raw[:2000] else b"\n") + raw


class LedgerTimer:
    """Wall time inside the ledger's calls (outermost only: ``record_many``
    appends through ``append_many``), by wrappers that call through."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.depth = 0

    def install(self) -> None:
        from archive.integrity import chain, ledger

        ledger.record_many = self.wrap(ledger.record_many)  # type: ignore[method-assign]
        chain.append_many = self.wrap(chain.append_many)  # type: ignore[method-assign]

    def wrap(self, function):  # type: ignore[no-untyped-def]
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.seconds += time.perf_counter() - t0

        return timed


TIMER = LedgerTimer()


def archive_stage(args: argparse.Namespace, run_number: int) -> dict[bool, dict[str, float]]:
    """Each chunk of generated mail is archived twice, once with the ledger and
    once without (the second time as twins): both sides get the same mails, in
    ABBA order (on off, off on, …) against drift of the machine's load."""
    from django.conf import settings

    from mailsources.clients.base import FetchedMessage, FolderBatch
    from mailsources.models import SyncRun
    from mailsources.pipeline import batch_ingest, batch_store

    mails = MailGenerator(args.seed + run_number).mailbox(args.mails // 2)
    source = make_source(run_number)
    run = SyncRun.objects.create(source=source)
    chunks = [mails[i : i + args.batch] for i in range(0, len(mails), args.batch)]
    times = {on: {"store": 0.0, "commit": 0.0, "mails": 0.0, "bytes": 0.0, "cpu": 0.0} for on in (True, False)}
    inside = 0.0  # ledger on: seconds inside the ledger's calls
    per_batch: dict[bool, list[float]] = {True: [], False: []}
    pairs: list[float] = []  # each chunk: its time with the ledger / without
    for number, chunk in enumerate(chunks):
        pair: dict[bool, float] = {}
        for side, on in enumerate((True, False) if number % 2 == 0 else (False, True)):
            settings.INTEGRITY_LEDGER = on
            raws = [m.raw if side == 0 else twin(m.raw) for m in chunk]
            batch = FolderBatch(
                epoch="1",
                messages=[
                    FetchedMessage(f"{number}-{side}-{i}", raw, m.internal_date)
                    for i, (raw, m) in enumerate(zip(raws, chunk, strict=True))
                ],
                cursor={"uid": number},
            )
            c0, ledger0 = time.process_time(), TIMER.seconds
            t0 = time.perf_counter()
            blobs = batch_store(batch)
            t1 = time.perf_counter()
            batch_ingest(source, "", f"folder-{number % 5}-{side}", batch, run, blobs)
            t2 = time.perf_counter()
            times[on]["cpu"] += time.process_time() - c0
            inside += TIMER.seconds - ledger0
            times[on]["store"] += t1 - t0
            times[on]["commit"] += t2 - t1
            times[on]["mails"] += len(chunk)
            times[on]["bytes"] += sum(len(raw) for raw in raws)
            per_batch[on].append((t2 - t0) / len(chunk))
            pair[on] = t2 - t0
        pairs.append(pair[True] / pair[False])
    settings.INTEGRITY_LEDGER = True
    for on in (True, False):
        times[on]["median"] = statistics.median(per_batch[on])
    times[True]["paired"] = statistics.median(pairs)
    times[True]["pairs"] = pairs  # type: ignore[assignment]
    times[True]["inside"] = inside
    return times


def report_archive(times: dict[bool, dict[str, float]]) -> tuple[float, float]:
    """Prints one run's figures; returns the ledger's share of the archive stage
    (paired on / off) and the share of the time inside its calls."""
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
    median = times[True]["median"] / times[False]["median"] - 1
    paired = times[True]["paired"] - 1
    say(
        f"  ledger cost: {paired * 100:+.1f} % of the archive stage (median over the chunks of on / off, "
        f"same mails back to back; target ≤ 5 %); of the totals {extra * 100:+.1f} %, of the commit step alone "
        f"{commit * 100:+.1f} %, of the median batches {median * 100:+.1f} %"
    )
    on = times[True]
    total_on = on["store"] + on["commit"]
    inside = on["inside"] / (total_on - on["inside"])
    cpu_on, cpu_off = on["cpu"] / on["mails"], times[False]["cpu"] / times[False]["mails"]
    say(
        f"  inside the ledger's calls: {on['inside'] / on['mails'] * 1000:.3f} ms/mail = {inside * 100:+.1f} % "
        f"of the rest of the same batches; bench process CPU {cpu_on * 1000:.3f} ms/mail on, "
        f"{cpu_off * 1000:.3f} off ({(cpu_on / cpu_off - 1) * 100:+.1f} %)"
    )
    return paired, inside


def spread(values: list[float], unit: str, scale: float = 1.0) -> str:
    """Median and range of a figure over the runs."""
    low, mid, high = min(values) * scale, statistics.median(values) * scale, max(values) * scale
    return f"median {mid:+.1f}{unit} (min {low:+.1f}{unit}, max {high:+.1f}{unit}, {len(values)} runs)"


def report_verify(runs: int) -> None:
    from archive.integrity import verify
    from archive.models import DocumentFile

    shas = dict(DocumentFile.objects.values_list("sha256", "size").distinct())
    rates, cpu_rates, done, findings = [], [], 0, []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        findings, done = verify.blob_findings(shas)
        rates.append(done / MB / (time.perf_counter() - t0))
        cpu_rates.append(done / MB / (time.process_time() - c0))
        say(
            f"  verify blobs: {done / MB:.1f} MB of {len(shas)} blobs at {rates[-1]:.0f} MB/s, "
            f"{cpu_rates[-1]:.0f} MB per CPU second  ({load()})"
        )
    low, mid, high = min(rates), statistics.median(rates), max(rates)
    say(
        f"verify --full: blob data {done / MB:.1f} MB ({len(shas)} blobs, page cache warm, {len(findings)} findings): "
        f"median {mid:.0f} MB/s (min {low:.0f}, max {high:.0f}, {runs} runs; target ≥ 200 MB/s); "
        f"{statistics.median(cpu_rates):.0f} MB per CPU second of the bench process (one idle core)"
    )
    t0 = time.perf_counter()
    report = verify.run()
    total = time.perf_counter() - t0
    say(
        f"  whole run: {total:.2f} s = {report.counts['blob_bytes'] / MB / total:.0f} MB/s with metadata of "
        f"{report.counts['documents']} documents and {report.counts['ledger_entries']} ledger entries; "
        f"{len(report.findings)} findings (the documents archived with the ledger off are unrecorded)"
    )


def imap_stage(args: argparse.Namespace, env: BenchEnv) -> None:
    """The IMAP bench's archive stage, ledger on and off in ABBA order (see the module's docstring)."""
    from archive.integrity.models import LedgerEntry
    from bench.harness import Workers, process_tree
    from bench.imap_bench import create_source, import_mails
    from mailsources.tasks import sync_source
    from tests.imap_server import DovecotServer

    mails = MailGenerator(args.seed + 100).mailbox(args.imap_mails)
    # A first sync to warm up (not counted: the first of a series is slower), then the pairs.
    order = [True] + [True, False, False, True] * args.imap_rounds
    sequence = " ".join("on" if o else "off" for o in order[1:])
    say(
        f"IMAP archive stage: one sync to warm up, then {len(order) - 1} syncs of {len(mails)} mails, ledger "
        f"{sequence}; the archive emptied after each (every sync starts from the same database)"
    )
    server = DovecotServer()
    server.start()
    r = env.redis()
    sides: dict[bool, dict[str, float]] = {on: {"seconds": 0.0, "cpu": 0.0, "mails": 0.0} for on in (True, False)}
    pairs: list[float] = []  # each (on, off) neighbour pair: time on / time off
    cpu_pairs: list[float] = []  # and CPU per mail on / off
    try:
        sources = []
        for number in range(len(order)):
            user = server.add_user(f"ledger{number}")
            header = b"X-Bench-Twin: %02d" % number
            import_mails(server.mailbox(user), mails, [twin(m.raw, header) for m in mails])
            sources.append(create_source(server, user, name=f"bench ledger {number}"))
        previous: float | None = None
        previous_cpu = 0.0
        for number, (on, source) in enumerate(zip(order, sources, strict=True)):
            os.environ["INTEGRITY_LEDGER"] = "true" if on else "false"
            workers = Workers(env, concurrency=2, queues="celery,sync", name=f"bench-ledger-{number}").start()
            try:
                r.delete("bench:sync_done")
                entries = LedgerEntry.objects.count()
                meter = CpuMeter(
                    {"workers": functools.partial(process_tree, workers.pid), "mariadb": lambda: pids_named("mariadbd")}
                ).start()
                t0 = time.time()
                sync_source.delay(source.pk)
                done = wait_for_sync(r, workers, t0)
                cpu = meter.read()
            finally:
                workers.stop()
            seconds = done - t0
            written = LedgerEntry.objects.count() - entries
            if (written > 0) != on:
                raise SystemExit(f"sync {number}: ledger {'on' if on else 'off'} but {written} entries written")
            forget_sync()
            if os.environ.get("BENCH_PHASES"):
                phases = {k.decode(): float(v) for k, v in r.hgetall("bench:phases:sync_source").items()}
                r.delete("bench:phases:sync_source")
                say("    phases: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(phases.items())))
            if number == 0:
                say(f"  warm-up sync, ledger on: {seconds:6.2f} s, {len(mails) / seconds:5.0f} mails/s  ({load()})")
                continue
            side = sides[on]
            side["seconds"] += seconds
            side["cpu"] += cpu["workers"] + cpu["mariadb"]
            side["mails"] += len(mails)
            say(
                f"  sync {number}, ledger {'on ' if on else 'off'}: {seconds:6.2f} s, "
                f"{len(mails) / seconds:5.0f} mails/s, CPU workers {cpu['workers']:5.2f} + MariaDB "
                f"{cpu['mariadb']:5.2f} s, {written} ledger entries  ({load()})"
            )
            used = cpu["workers"] + cpu["mariadb"]
            if number % 2 == 0:
                pairs.append(seconds / previous if on else previous / seconds)  # type: ignore[operator]
                cpu_pairs.append(used / previous_cpu if on else previous_cpu / used)
            previous, previous_cpu = seconds, used
    finally:
        os.environ.pop("INTEGRITY_LEDGER", None)
        server.stop()
    on, off = sides[True], sides[False]
    wall = on["seconds"] / off["seconds"] - 1
    cpu_cost = (on["cpu"] / on["mails"]) / (off["cpu"] / off["mails"]) - 1
    say(
        f"IMAP archive stage: ledger on {on['mails'] / on['seconds']:.0f} mails/s, "
        f"{on['cpu'] / on['mails'] * 1000:.2f} ms CPU per mail (workers + MariaDB); off "
        f"{off['mails'] / off['seconds']:.0f} mails/s, {off['cpu'] / off['mails'] * 1000:.2f} ms"
    )
    say(
        f"  ledger cost in the IMAP archive stage: time {wall * 100:+.1f} % (the totals; {paired(pairs)}), "
        f"CPU per mail {cpu_cost * 100:+.1f} % (the totals; {paired(cpu_pairs)}) (target ≤ 5 %)"
    )


def forget_sync() -> None:
    """Empty the archive again after a sync (documents and their rows, mails,
    locations, the ledger and its head), so that the next sync starts from the
    same database: otherwise MariaDB's work per sync grows with the tables, in
    steps, and a step lands on one side of a pair. TRUNCATE, not DELETE: deleted
    rows leave InnoDB purge work behind, which the next sync would pay for."""
    from django.db import connection

    from archive.integrity.models import ChainHead, LedgerEntry
    from archive.models import Document, DocumentFile, MailView, PublicAccess, SearchEntry
    from mailsources.models import ArchivedMail, MailLocation

    models = (MailLocation, ArchivedMail, MailView, PublicAccess, SearchEntry, DocumentFile, Document, LedgerEntry)
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION foreign_key_checks = 0")
        try:
            for model in (*models, ChainHead):
                cursor.execute(f"TRUNCATE TABLE {connection.ops.quote_name(model._meta.db_table)}")
        finally:
            cursor.execute("SET SESSION foreign_key_checks = 1")


def paired(ratios: list[float]) -> str:
    """Each neighbour pair's on / off as a cost, and their median."""
    each = ", ".join(f"{(r - 1) * 100:+.1f}" for r in ratios)
    return f"pairs {each} %, median {(statistics.median(ratios) - 1) * 100:+.1f} %"


def wait_for_sync(r, workers, t0: float, timeout: float = 900) -> float:  # type: ignore[no-untyped-def]
    """The time the sync task ended (``bench.celery_app`` records it)."""
    import json

    while True:
        for item in r.lrange("bench:sync_done", 0, -1):
            done = json.loads(item)
            if done["state"] == "SUCCESS":
                return float(done["t"])
            if done["state"] != "RETRY":
                raise SystemExit(f"the sync task ended in state {done['state']}; see {workers.log_path}")
        if not workers.alive():
            raise SystemExit(f"the worker died; see {workers.log_path}")
        if time.time() - t0 > timeout:
            raise SystemExit(f"the sync timed out after {timeout:.0f} s")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = BenchEnv.create(args.database, keep=args.keep)
    try:
        say(f"before: {load()}")
        cpu = CpuMeter({"bench": lambda: [os.getpid()], "mariadb": lambda: pids_named("mariadbd")}).start()
        if args.imap_mails:  # first: it empties the archive after each of its syncs
            imap_stage(args, env)
        TIMER.install()
        costs, insides, pairs = [], [], []
        for number in range(args.runs):
            say(f"archive stage, run {number + 1} of {args.runs} ({load()}):")
            times = archive_stage(args, number)
            pairs += times[True]["pairs"]  # type: ignore[arg-type]
            cost, inside = report_archive(times)
            costs.append(cost)
            insides.append(inside)
        say(f"ledger cost over the runs: {spread(costs, ' %', 100)} (target ≤ 5 %)")
        say(
            f"  over all {len(pairs)} pairs of the runs: median {(statistics.median(pairs) - 1) * 100:+.1f} %; "
            f"inside the ledger's calls: {spread(insides, ' %', 100)}"
        )
        report_verify(args.runs)
        say(cpu_line(cpu.read(), ["bench", "mariadb"]))
        say(f"after: {load()}")
    finally:
        env.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
