"""Import benchmark (issue 14): ``python -m bench.import_bench`` (``BENCH=import make bench``).

1. Generates an MBOX of ``--gigabytes`` (default 1.5) of realistic mails
   (``bench.mailgen``) into a temporary directory, streamed to the file, and a
   second one of a tenth of its size.
2. Imports each with ``manage.py import`` in a process of its own, as an
   administrator would, against a fresh MariaDB database, sampling its RSS.
3. Prints mails/s and MB/s, the peak RSS of both runs and their ratio (flat
   memory: the ratio stays near 1 while the file grows ten times), and checks
   that every mail of the file was archived once.
4. The bench mailbox (``--imap-mails`` of ``bench.mailgen``, as ``bench.imap_bench``
   makes it) archived from a private Dovecot by an IMAP source (one run, in
   process) and imported as one MBOX (``manage.py import``): both rates, side by side.

The machine's other load is printed: on a shared machine the numbers only mean
something next to it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import ROOT, BenchEnv, RssSampler, machine_cpu_seconds, say
from bench.mailgen import KINDS, MailGenerator

MB = 1_000_000
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.5, help="size of the big MBOX")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--database", default="webadmin_bench_import")
    parser.add_argument("--imap-mails", type=int, default=3000, help="the mailbox archived both ways (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the database and files")
    return parser.parse_args(argv)


def write_mbox(path: Path, target_bytes: int, seed: int) -> int:
    """Mails (LF line ends, mboxo quoting) until the file has ``target_bytes``; their number."""
    generator = MailGenerator(seed)
    rng = generator.rng
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    date = datetime(2022, 1, 1, tzinfo=UTC)
    count = 0
    written = 0
    with open(path, "wb", buffering=1 << 20) as out:
        while written < target_bytes:
            date += timedelta(seconds=rng.randint(30, 3600))
            block = _mbox_block(generator.mail(rng.choices(kinds, weights)[0], date), date)
            out.write(block)
            written += len(block)
            count += 1
    return count


def _mbox_block(raw: bytes, date: datetime) -> bytes:
    raw = raw.replace(b"\r\n", b"\n")
    return (
        f"From sender@example.com {date:%a %b %d %H:%M:%S %Y}\n".encode()
        + _FROM_LINE.sub(rb">\1", raw)
        + (b"" if raw.endswith(b"\n") else b"\n")
        + b"\n"
    )


def imap_versus_import(env: BenchEnv, args: argparse.Namespace, folder: Path) -> None:
    """The same generated mailbox: archived over IMAP, then imported as one MBOX."""
    from bench.imap_bench import create_source, load_mailbox
    from mailsources import pipeline, services

    server, user, total, distinct, _ = load_mailbox(argparse.Namespace(mails=args.imap_mails, seed=args.seed))
    try:
        source = create_source(server, user)
        started = time.monotonic()
        run = pipeline.source_sync(source.pk, client_factory=services.client_for_source)
        imap_seconds = time.monotonic() - started
        assert run is not None and run.new == distinct, (run and run.errors, distinct)
    finally:
        server.stop()
    path = folder / "bench-mailbox.mbox"
    with open(path, "wb", buffering=1 << 20) as out:
        for mail in MailGenerator(args.seed).mailbox(args.imap_mails):
            out.write(_mbox_block(mail.raw, mail.internal_date))
    # In process too (as the IMAP run above), so that neither pays for starting Django.
    from django.contrib.auth.models import Group

    from mailsources.imports import import_client, import_source_create

    imported = import_source_create(path, "mbox@bench.example", Group.objects.get(name="Bench"))
    started = time.monotonic()
    run = pipeline.source_sync(imported.pk, client_factory=lambda s, a: import_client(s))
    import_seconds = time.monotonic() - started
    assert run is not None and run.new == distinct, (run and run.errors, distinct)
    say(
        f"the bench mailbox ({total} mails, {distinct} distinct), one run each in process: "
        f"IMAP archive {total / imap_seconds:.0f} mails/s, MBOX import {total / import_seconds:.0f} mails/s — "
        f"import/IMAP {imap_seconds / import_seconds:.2f}× (target: at least 1)"
    )


def import_once(env: BenchEnv, path: Path, mailbox: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of ``manage.py import PATH`` in a process of its own."""
    command = [
        sys.executable,
        "manage.py",
        "import",
        str(path),
        "--mailbox",
        mailbox,
        "--owner",
        "Bench",
        "--no-progress",
    ]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env.variables()}, stdout=subprocess.PIPE)
    sampler = RssSampler([process.pid]).start()
    output, _ = process.communicate()
    seconds = time.monotonic() - started
    sampler.stop()
    _, peak = sampler.snapshot()
    if process.returncode != 0:
        raise SystemExit(f"the import failed: {output.decode(errors='replace')}")
    say(f"  {output.decode(errors='replace').strip()}")
    return seconds, peak


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = BenchEnv.create(args.database, keep=args.keep)
    from django.contrib.auth.models import Group

    from mailsources.models import ArchivedMail, MailSource

    Group.objects.get_or_create(name="Bench")
    files = env.data_dir / "mbox"
    files.mkdir()
    results = {}
    say(f"load average at the start: {_load()}")
    busy_before, total_before = machine_cpu_seconds()
    try:
        for label, size in (("small", int(args.gigabytes * 100 * MB)), ("big", int(args.gigabytes * 1000 * MB))):
            path = files / f"{label}.mbox"
            t = time.monotonic()
            mails = write_mbox(path, size, args.seed if label == "big" else args.seed + 1)
            say(
                f"generated {label}.mbox: {path.stat().st_size / MB:.0f} MB, {mails} mails "
                f"in {time.monotonic() - t:.0f} s"
            )
            seconds, peak = import_once(env, path, f"{label}@bench.example")
            source = MailSource.objects.get(import_path=str(path))
            archived = ArchivedMail.objects.filter(source=source).count()
            ok = "all archived once" if archived == mails else f"ARCHIVED {archived} OF {mails}"
            say(
                f"imported {label}: {mails / seconds:.0f} mails/s, {path.stat().st_size / MB / seconds:.1f} MB/s, "
                f"{seconds:.0f} s, peak RSS {peak:.0f} MB — {ok}"
            )
            results[label] = (peak, path.stat().st_size)
            if not args.keep:
                path.unlink()
        if args.imap_mails:
            imap_versus_import(env, args, files)
    finally:
        busy_after, total_after = machine_cpu_seconds()
        env.cleanup()
    busy = (busy_after - busy_before) / max(total_after - total_before, 1e-9)
    (small_rss, small_size), (big_rss, big_size) = results["small"], results["big"]
    say(
        f"RSS big/small: {big_rss / small_rss:.2f} for a file {big_size / small_size:.0f}× as large "
        f"(flat memory: close to 1); machine busy {busy:.0%} during the run (all processes); "
        f"load average at the end: {_load()}"
    )
    return 0


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg()) + f" (1/5/15 min, {os.cpu_count()} cores)"


if __name__ == "__main__":
    raise SystemExit(main())
