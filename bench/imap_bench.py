"""IMAP ingestion benchmark (issue 3, item 8): ``python -m bench.imap_bench``.

1. Generates a deterministic, realistic mailbox (``bench.mailgen``) and loads it
   into a private Dovecot (``tests.imap_server``).
2. Creates a fresh MariaDB database, a MailSource pointing at the Dovecot
   (implicit TLS, all folders), starts real Celery workers on Redis and
   enqueues one ``sync_source`` task, as the scheduler would.
3. Times two moments from the enqueue: **archived** (the sync task finished:
   every raw mail stored and fsynced, committed with its header fields, in
   the table) and **fully processed** (every new document's processing task
   — full MIME parse, attachments stored — finished).
4. Times a rerun on the unchanged mailbox (through Celery, and in-process).
5. Pulls the same mailbox with ``mbsync`` (default settings: fsync on) into a
   maildir, and a no-change rerun of it, as the reference; prints ratios.

The machine's other load is measured and printed: on a shared machine the
numbers only mean something next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.harness import (
    BenchEnv,
    CpuMeter,
    PySpy,
    RssSampler,
    Workers,
    cpu_line,
    pids_named,
    process_tree,
    say,
    summarise_collapsed,
)
from bench.mailgen import FOLDERS, MailGenerator
from bench.searchable import run_searchable

MB = 1_000_000
IMPORT_CHUNK = 2000  # mails per `doveadm import` (it runs under a 30 s timeout)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.imap_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=20000, help="mails in the mailbox (default 20000)")
    parser.add_argument(
        "--workers", type=int, default=2, help="Celery worker processes (prefork concurrency; default 2 = the cores)"
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    parser.add_argument("--skip-mbsync", action="store_true", help="no mbsync reference")
    parser.add_argument(
        "--profile", metavar="DIR", help="record the workers with py-spy (raw collapsed stacks) and summarise"
    )
    parser.add_argument(
        "--phases", action="store_true", help="time the steps inside the tasks (wall clock) and print where time goes"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directory and database")
    return parser.parse_args(argv)


def rate(count: float, seconds: float) -> str:
    return f"{count / seconds:8.0f}" if seconds > 0 else "     inf"


def wire_size(raw: bytes) -> int:
    # Dovecot stores LF and serves CRLF: this is what an IMAP client receives.
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


# --------------------------------------------------------------------------- mailbox


def load_mailbox(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from tests.imap_server import DovecotServer

    t = time.monotonic()
    mails = MailGenerator(args.seed).mailbox(args.mails)
    sizes = sorted(len(m.raw) for m in mails)
    distinct = len({m.raw for m in mails})
    wire = sum(wire_size(m.raw) for m in mails)
    say(
        f"generated {len(mails)} mails ({distinct} distinct) in {time.monotonic() - t:.1f} s: "
        f"median {sizes[len(sizes) // 2] / 1024:.1f} KB, mean {sum(sizes) / len(sizes) / 1024:.1f} KB, "
        f"largest {sizes[-1] / MB:.1f} MB, {wire / MB:.0f} MB as served (CRLF)"
    )
    server = DovecotServer()
    server.start()
    user = server.add_user("benchuser")
    t = time.monotonic()
    by_folder = import_mails(server.mailbox(user), mails)
    counts = ", ".join(f"{f} {len(by_folder.get(f, []))}" for f, _ in FOLDERS)
    say(f"loaded into Dovecot in {time.monotonic() - t:.1f} s: {counts}")
    return server, user, len(mails), distinct, wire


def import_mails(mailbox, mails, raws=None):  # type: ignore[no-untyped-def]
    """Generated mails into their folders of a Dovecot mailbox (``raws``: other
    bytes for the same mails); returns the mails by folder."""
    by_folder = defaultdict(list)
    for mail, raw in zip(mails, raws or [m.raw for m in mails], strict=True):
        by_folder[mail.folder].append((mail, raw))
    for folder, _share in FOLDERS:
        items = by_folder.get(folder, [])
        for i in range(0, len(items), IMPORT_CHUNK):
            chunk = items[i : i + IMPORT_CHUNK]
            raws_here, dates = [raw for _, raw in chunk], [m.internal_date for m, _ in chunk]
            mailbox.import_many(folder, raws_here, internal_dates=dates, seen=folder != "INBOX")
    return by_folder


# --------------------------------------------------------------------------- our ingestion


def create_source(server, user, name: str = "bench"):  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Group

    from archive.models import FieldDefinition
    from mailsources.models import MailSource, Security, SourceKind
    from mailsources.services import source_set_secret

    fields = {f.name: f for f in FieldDefinition.objects.filter(name__in=["from", "to", "cc", "subject"])}
    source = MailSource(
        kind=SourceKind.IMAP,
        name=name,
        folders="",
        owner_group=Group.objects.get_or_create(name="Archive")[0],
        host=server.host,
        port=server.tls_port,
        security=Security.TLS,
        username=user.name,
        ca_file=server.ca_file,
        from_field=fields["from"],
        to_field=fields["to"],
        cc_field=fields["cc"],
        subject_field=fields["subject"],
    )
    source_set_secret(source, user.password)
    source.save()
    return source


def ingest(env: BenchEnv, workers: Workers, source_id: int, server, args, total: int):  # type: ignore[no-untyped-def]
    from archive.models import Document, DocumentKind
    from mailsources.models import SyncRun
    from mailsources.tasks import sync_source

    r = env.redis()
    sampler = RssSampler([workers.pid]).start()
    meter = CpuMeter(
        {
            "workers": lambda: process_tree(workers.pid),
            "dovecot": lambda: process_tree(server._process.pid),
            "mariadb": lambda: pids_named("mariadbd"),
            "redis": lambda: pids_named("redis-server"),
        }
    )
    spy = PySpy(workers.pid, Path(args.profile) / "workers.txt") if args.profile else None
    if spy:
        time.sleep(1)  # let py-spy attach
    meter.start()
    t0 = time.time()
    sync_source.delay(source_id)
    archived_at = processed_at = None
    documents = None
    arch_rss = arch_cpu = None
    last_report = time.monotonic()
    while True:
        if not workers.alive():
            raise SystemExit(f"the worker died; see {workers.log_path}")
        failures = [f.decode() for f in r.lrange("bench:failures", 0, -1)]
        if failures:
            raise SystemExit("task failures:\n" + "\n".join(failures[:10]))
        if archived_at is None:
            for item in r.lrange("bench:sync_done", 0, -1):
                done = json.loads(item)
                if done["state"] == "SUCCESS":
                    archived_at = done["t"]
                elif done["state"] not in ("RETRY",):
                    raise SystemExit(f"the sync task ended in state {done['state']}; see {workers.log_path}")
            if archived_at is not None:
                arch_rss = sampler.snapshot()
                arch_cpu = meter.read()
                documents = Document.objects.filter(kind=DocumentKind.MAIL).count()
        if documents is not None and r.scard("bench:processed") >= documents:
            processed_at = float(r.get("bench:processed_last") or time.time())
            break
        if time.monotonic() - last_report > 10:
            run = SyncRun.objects.order_by("-pk").first()
            say(
                f"  … {time.time() - t0:5.0f} s: archived {run.done if run else 0}/{total}, "
                f"processed {r.scard('bench:processed')}"
            )
            last_report = time.monotonic()
        if time.time() - t0 > args.timeout:
            raise SystemExit(f"timed out after {args.timeout:.0f} s")
        time.sleep(0.05)
    proc_rss = sampler.snapshot()
    proc_cpu = meter.read()
    sampler.stop()
    if spy:
        spy.stop()
    return {
        "archived_s": archived_at - t0,
        "processed_s": processed_at - t0,
        "documents": documents,
        "arch_rss": arch_rss,
        "proc_rss": proc_rss,
        "arch_cpu": arch_cpu,
        "proc_cpu": proc_cpu,
    }


def verify(source_id: int, total: int, distinct: int) -> list[str]:
    from django.db.models import Sum

    from archive.models import Document, DocumentFile, DocumentKind, FileRole
    from mailsources.models import ArchivedMail, MailLocation, SyncRun

    problems = []
    mails = ArchivedMail.objects.filter(source_id=source_id).count()
    locations = MailLocation.objects.filter(source_id=source_id).count()
    documents = Document.objects.filter(kind=DocumentKind.MAIL).count()
    if mails != distinct or documents != distinct:
        problems.append(f"{mails} archived mails / {documents} documents, expected {distinct}")
    if locations != total:
        problems.append(f"{locations} locations, expected {total}")
    run = SyncRun.objects.filter(source_id=source_id).order_by("-pk").first()
    if run is None or run.status != "ok":
        problems.append(f"last run: {run and run.status} {run and run.errors}")
    attachments = DocumentFile.objects.filter(role=FileRole.ATTACHMENT).count()
    stored = ArchivedMail.objects.filter(source_id=source_id).aggregate(s=Sum("size"))["s"] or 0
    say(
        f"check: {mails} archived mails, {locations} locations, {documents} documents, "
        f"{attachments} attachment files, {stored / MB:.0f} MB of distinct raw mail stored"
        + ("" if not problems else " — PROBLEMS: " + "; ".join(problems))
    )
    return problems


def rerun(env: BenchEnv, source_id: int) -> tuple[float, float, float]:
    """(through Celery: enqueue → task done, the run's own duration, in-process)."""
    from mailsources import pipeline, services
    from mailsources.models import SyncRun
    from mailsources.tasks import sync_source

    r = env.redis()
    r.delete("bench:sync_done")
    before = SyncRun.objects.count()
    t0 = time.time()
    sync_source.delay(source_id)
    while not r.llen("bench:sync_done"):
        time.sleep(0.005)
        if time.time() - t0 > 120:
            raise SystemExit("the rerun did not finish within 120 s")
    celery_s = time.time() - t0
    run = SyncRun.objects.order_by("-pk").first()
    assert run is not None and SyncRun.objects.count() == before + 1
    if run.new or run.status != "ok":
        say(f"  rerun: {run.new} new, status {run.status}: the no-change rerun did work!")
    run_s = (run.finished - run.started).total_seconds()
    t = time.monotonic()
    run2 = pipeline.source_sync(source_id, client_factory=services.client_for_source)
    inprocess_s = time.monotonic() - t
    assert run2 is not None and run2.new == 0, "in-process rerun archived something"
    return celery_s, run_s, inprocess_s


# --------------------------------------------------------------------------- mbsync


MBSYNC_CONFIG = """\
IMAPAccount bench
Host {host}
Port {port}
User {user}
Pass {password}
SSLType IMAPS
CertificateFile {ca_file}

IMAPStore bench-remote
Account bench

MaildirStore bench-local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel bench
Far :bench-remote:
Near :bench-local:
Patterns *
Create Near
Sync Pull
SyncState *
"""


def mbsync(env: BenchEnv, server, user) -> tuple[float, float, int, float]:  # type: ignore[no-untyped-def]
    """(seconds, CPU seconds of mbsync, files in the maildir, no-change rerun seconds)."""
    maildir = env.data_dir / "mbsync-maildir"
    maildir.mkdir()
    config = env.data_dir / "mbsyncrc"
    config.write_text(
        MBSYNC_CONFIG.format(
            host=server.host,
            port=server.tls_port,
            user=user.name,
            password=user.password,
            ca_file=server.ca_file,
            maildir=maildir,
        )
    )
    config.chmod(0o600)
    command = ["mbsync", "-c", str(config), "-q", "bench"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"mbsync failed ({result.returncode}): {result.stderr[-2000:]}")
    files = sum(1 for p in maildir.rglob("*") if p.is_file() and p.parent.name in ("cur", "new"))
    t = time.monotonic()
    subprocess.run(command, capture_output=True, check=True)
    rerun_s = time.monotonic() - t
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, files, rerun_s


def print_phases(phases: dict[str, dict[bytes, bytes]]) -> None:
    """Wall-clock seconds per step inside the tasks (steps nest: a batch_ingest
    contains its put_many, parse, inserts and COMMIT); a "cpu: …" line is the
    CPU of the thread that ran that step, as a share of the same wall time."""
    for task, values in phases.items():
        if not values:
            continue
        data = {k.decode(): float(v) for k, v in values.items()}
        total = data.pop("task (total)", 0.0)
        count = int(data.pop("tasks", 0))
        say("")
        say(f"where the time goes in {task} ({count} task(s), {total:.1f} s wall in the tasks):")
        for phase, seconds in sorted(data.items(), key=lambda kv: -kv[1]):
            say(f"  {seconds:7.2f} s {100 * seconds / total if total else 0:5.1f}%  {phase}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()
    say(
        f"IMAP ingestion bench: {args.mails} mails, {args.workers} worker processes, "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    if load[0] > 1.5:
        say("  note: the machine is busy with other work; figures below are lower than on an idle machine")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    server, user, total, distinct, wire = load_mailbox(args)
    env = workers = None
    try:
        env = BenchEnv.create(os.environ.get("BENCH_IMAP_DATABASE", "webadmin_bench"), keep=args.keep)
        source = create_source(server, user)
        if args.phases:
            os.environ["BENCH_PHASES"] = "1"
        workers = Workers(env, concurrency=args.workers, queues="celery,sync,processing").start()
        say("ingesting with Celery …")
        result = ingest(env, workers, source.pk, server, args, total)
        problems = verify(source.pk, total, distinct)
        celery_s, run_s, inprocess_s = rerun(env, source.pk)
        r = env.redis()
        phases = {task: r.hgetall(f"bench:phases:{task}") for task in ("sync_source", "process_mail_documents")}
        workers.stop()
        say("extracting text for search with Celery …")
        found = run_searchable(env, args.workers, args.timeout)
        mb = None if args.skip_mbsync else mbsync(env, server, user)

        say("")
        say(f"{'':34} {'seconds':>8} {'mails/s':>8} {'MB/s':>8} {'RSS peak MB':>22}")
        say(f"{'':34} {'':>8} {'':>8} {'':>8} {'all procs':>11} {'one proc':>10}")
        for label, key, rss in (
            ("archived (stored, fsynced, committed)", "archived_s", "arch_rss"),
            ("fully processed (parsed, attachments)", "processed_s", "proc_rss"),
        ):
            seconds = result[key]
            say(
                f"{label:34.34} {seconds:8.1f} {rate(total, seconds)} {rate(wire / MB, seconds)} "
                f"{result[rss][0]:11.0f} {result[rss][1]:10.0f}"
            )
        say(
            f"{'searchable (extracted, indexed)':34} {found['seconds']:8.1f} {rate(total, found['seconds'])} "
            f"{rate(wire / MB, found['seconds'])} {found['rss'][0]:11.0f} {found['rss'][1]:10.0f}"
        )
        if mb:
            seconds, cpu, files, mb_rerun = mb
            say(
                f"{'mbsync (fsync on, default)':34} {seconds:8.1f} {rate(total, seconds)} "
                f"{rate(wire / MB, seconds)}   ({files} files, mbsync CPU {cpu:.1f} s)"
            )
        say("")
        say(
            f"no-change rerun: {celery_s:.2f} s through Celery (the run itself {run_s:.2f} s), "
            f"{inprocess_s:.2f} s in-process" + (f"; mbsync {mb[3]:.2f} s" if mb else "")
        )
        if mb:
            reference = total / mb[0]
            arch = total / result["archived_s"] / reference
            proc = total / result["processed_s"] / reference
            say(
                f"ratios ours/mbsync (mails/s): archived {arch:.2f}× (target ≥ 1.0), "
                f"fully processed {proc:.2f}× (target ≥ 0.5)"
            )
        searchable_ratio = result["archived_s"] / found["seconds"]
        say(
            f"searchable: {total / found['seconds']:.0f} mails/s (target ≥ 100), {searchable_ratio:.2f}× the archive "
            f"stage's mails/s; from the sync's start {result['processed_s'] + found['seconds']:.1f} s; "
            f"{found['tasks']} extraction tasks; files " + ", ".join(f"{k} {v}" for k, v in found["statuses"].items())
        )
        groups = ["workers", "dovecot", "mariadb", "redis"]
        say("until archived:  " + cpu_line(result["arch_cpu"], groups))
        say("until processed: " + cpu_line(result["proc_cpu"], groups))
        say("searchable stage: " + cpu_line(found["cpu"], ["workers", "mariadb", "redis"]))
        say(
            f"worker CPU per mail: {1000 * result['proc_cpu']['workers'] / total:.2f} ms "
            f"(both stages); searchable stage {1000 * found['cpu']['workers'] / total:.2f} ms"
        )
        if args.phases:
            print_phases(phases)
        if args.profile:
            say("")
            say(summarise_collapsed(Path(args.profile) / "workers.txt"))
        return 1 if problems else 0
    finally:
        if workers is not None:
            workers.stop()
        server.stop()
        if env is not None:
            env.cleanup()


if __name__ == "__main__":
    sys.exit(main())
