"""Big and hostile mail (issue 10, requirement 9): what one 100 MB mail costs
the fetch, the archive step, processing and the View tab (peak RSS growth of
each, in a child process of its own), and the server time of viewing a mail of
10,000 parts after processing.

    BENCH=bigmail make bench
    BENCH=bigmail bash scripts/bench.sh --megabytes 100 --parts 10000 --views 5

Each step runs in a fresh child (``python -m bench.bigmail_bench --step …``)
that first does the same step on a tiny mail (imports, connections, compiled
templates), then reads ``ru_maxrss``, does the step on the big mail and reads it
again: the growth is what the big mail costs. The archive step is what
ingestion does after the fetch (store the raw stream, read the header block,
create the document). The fetch step is one sync of a private Dovecot's INBOX
holding the 100 MB mail through the real pipeline (IMAP client over TLS, then
the same archive step), warmed up by a sync of a tiny mail from another user;
it runs twice: as configured (the mail streamed from the socket into the store)
and, for comparison, with the client reading the mail into memory (no raw sink:
imaplib's one bytes object per literal, as before streaming).
Targets: ≤ 64 MB growth each, ≤ 100 ms per view.

    BENCH=bigmail bash scripts/bench.sh --steps fetch   # only the fetch, both ways
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.harness import ROOT, BenchEnv, say

if TYPE_CHECKING:
    from tests.imap_server import DovecotServer

DATABASE = "webadmin_bench_bigmail"
LIMIT_RSS_MB = 64
LIMIT_VIEW_MS = 100
STEPS = ("fetch", "archive", "processing", "view")


# --------------------------------------------------------------------------- the mails


def write_big_mail(path: Path, megabytes: int) -> int:
    """A mail of about ``megabytes`` MB: text and HTML bodies, an inline image,
    one base64 attachment making up the rest. Written in pieces."""
    boundary, related = "bench-outer-boundary", "bench-related-boundary"
    head = (
        "From: Bench Sender <sender@example.com>\r\nTo: alice@example.com\r\n"
        "Subject: A very big mail\r\nDate: Tue, 01 Dec 2026 12:00:00 +0000\r\n"
        "Message-ID: <big-bench@example.com>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\n"
        f'Content-Type: multipart/related; boundary="{related}"\r\n\r\n'
        f"--{related}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        '<h1>Big</h1><p>See the attachment.</p><img src="cid:logo@bench"><img src="https://tracker.example/t.gif">\r\n'
        f"--{related}\r\nContent-Type: image/png\r\nContent-ID: <logo@bench>\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode().replace("\n", "\r\n")
        + f"\r\n--{related}--\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
        'Content-Disposition: attachment; filename="big.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    target = megabytes * 1000 * 1000
    line = 57  # bytes per base64 line of 76 characters
    block = os.urandom(line * 1000)
    encoded = b"".join(base64.b64encode(block[i : i + line]) + b"\r\n" for i in range(0, len(block), line))
    with open(path, "wb") as out:
        out.write(head)
        size = len(head)
        while size + len(encoded) + len(tail) <= target:
            out.write(encoded)
            size += len(encoded)
        out.write(tail)
        size += len(tail)
    return size


def write_many_parts_mail(path: Path, parts: int) -> int:
    data = many_parts_mail(parts)
    path.write_bytes(data)
    return len(data)


def many_parts_mail(parts: int) -> bytes:
    """A text body and ``parts - 1`` named text attachments (also the tests' mail)."""
    boundary = "bench-many-parts"
    pieces = [
        "From: sender@example.com\r\nTo: alice@example.com\r\nSubject: Many parts\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nA mail of {parts} parts.\r\n"
    ]
    pieces += [
        f"--{boundary}\r\nContent-Type: text/plain\r\n"
        f'Content-Disposition: attachment; filename="part-{n}.txt"\r\n\r\npart {n} of the many\r\n'
        for n in range(1, parts)
    ]
    pieces.append(f"--{boundary}--\r\n")
    return "".join(pieces).encode()


# --------------------------------------------------------------------------- the steps (children)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _archive(path: Path) -> int:
    from django.contrib.auth.models import Group
    from django.db import transaction

    from archive import services, storage
    from archive.mail import parse_headers
    from archive.models import DocumentKind, FileRole

    with open(path, "rb") as fh:
        blob = storage.put_stream(fh)
        fh.seek(0)
        headers = parse_headers(fh.read(1024 * 1024))
    spec = services.NewDocument(
        owner_group=Group.objects.get(name="bench"),
        values={"title": headers.subject or path.name, "date": "2026-12-01"},
        kind=DocumentKind.MAIL,
        files=[services.NewFile(name=path.name, blob=blob, content_type="message/rfc822", role=FileRole.ORIGINAL)],
    )
    with transaction.atomic():
        [document] = services.documents_create_many([spec], schedule_extraction=False)
    return document.pk


def _process(document_id: int) -> None:
    from archive import processing

    processing.mail_documents_process([document_id])


def _fetch(source_id: int, *, in_memory: bool = False) -> int:
    """One sync of the source, as the sync task runs it; returns the new mails.
    ``in_memory``: the IMAP client without its raw sink (nothing streamed)."""
    from mailsources import pipeline, services

    def in_memory_client(source, mailbox=""):  # type: ignore[no-untyped-def]
        client = services.client_for_source(source, mailbox)
        client.raw_sink = None
        return client

    factory = in_memory_client if in_memory else services.client_for_source
    run = pipeline.source_sync(source_id, client_factory=factory)
    if run is None or run.status != "ok":
        raise SystemExit(f"the sync of source {source_id} did not succeed: {run and (run.status, run.errors)}")
    return int(run.new)


def _view(client, document_id: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Wall and CPU time (this thread: the test client runs the view in it) of
    the document page, the body frame and the page listing every part
    (``?parts=all``: what the page showed before it listed the first few)."""
    from django.urls import reverse

    page = reverse("archive:document", args=[document_id])
    timings = {}
    for name, url in (
        ("page", page),
        ("body", reverse("archive:mail_body", args=[document_id])),
        ("all", f"{page}?parts=all"),
    ):
        start, cpu = time.perf_counter(), time.thread_time()
        response = client.get(url)
        timings[name] = (time.perf_counter() - start) * 1000
        timings[f"{name}_cpu"] = (time.thread_time() - cpu) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}")
    return timings


def child(args: argparse.Namespace) -> None:
    import django

    django.setup()
    out: dict[str, object] = {}
    if args.step == "archive":
        _archive(Path(args.warmup))
        base = _maxrss_mb()
        out["document"] = _archive(Path(args.target))
    elif args.step in ("fetch", "fetch-in-memory"):
        in_memory = args.step == "fetch-in-memory"
        out["rss_before_warmup_mb"] = _maxrss_mb()
        _fetch(int(args.warmup), in_memory=in_memory)
        base = _maxrss_mb()
        out["new"] = _fetch(int(args.target), in_memory=in_memory)
    elif args.step == "process":
        _process(int(args.warmup))
        base = _maxrss_mb()
        _process(int(args.target))
    else:
        from django.contrib.auth.models import User
        from django.test import Client

        client = Client(HTTP_HOST="localhost")
        client.force_login(User.objects.get(username="bench"))
        _view(client, int(args.warmup))
        base = _maxrss_mb()
        runs = [_view(client, int(args.target)) for _ in range(args.views)]
        for key in runs[0]:
            out[f"{key}_ms"] = statistics.median(r[key] for r in runs)
        # The same page of the warm-up mail (3 parts): what a page costs on this machine now.
        small = [_view(client, int(args.warmup)) for _ in range(args.views)]
        for key in ("page", "page_cpu", "body", "body_cpu"):
            out[f"small_{key}_ms"] = statistics.median(r[key] for r in small)
        out["first_page_ms"] = runs[0]["page"]
    out["rss_growth_mb"] = _maxrss_mb() - base
    out["rss_peak_mb"] = _maxrss_mb()
    print("RESULT " + json.dumps(out), flush=True)


def run_step(step: str, warmup: object, target: object, views: int = 1) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.bigmail_bench", "--step", step, "--warmup", str(warmup)]
    command += ["--target", str(target), "--views", str(views)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, float] = json.loads(line[len("RESULT ") :])
            return result
    raise SystemExit(f"step {step} failed:\n{done.stdout}\n{done.stderr}")


# --------------------------------------------------------------------------- the fetch


def import_file(server: DovecotServer, user: str, path: Path) -> None:
    """``doveadm import`` of one mail file into the user's INBOX, copied, never
    read into this process: a child inherits its parent's peak RSS (ru_maxrss
    survives fork and exec), and the parent's must stay below the fetch's."""
    source = Path(tempfile.mkdtemp(prefix="import-", dir=server.root))
    try:
        for part in ("cur", "new", "tmp"):
            (source / part).mkdir()
        shutil.copyfile(path, source / "cur" / f"{int(time.time())}.M0P{os.getpid()}.import:2,")
        if os.geteuid() == 0:  # doveadm reads it as the mail user
            mail_uid = (server.root / "mail").stat().st_uid
            for item in [source, *source.rglob("*")]:
                os.chown(item, mail_uid, -1)
        server.doveadm_run("import", "-u", user, f"maildir:{source}", "", "all")
    finally:
        shutil.rmtree(source, ignore_errors=True)


def fetch_steps(tiny: Path, big: Path) -> dict[str, dict[str, float]]:
    """A private Dovecot: per way of fetching, one user holding the tiny mail (the
    warm-up), one the big mail; a child syncs both, in that order.
    -> {"fetch": streamed, "fetch-in-memory": read into memory}."""
    from bench.imap_bench import create_source
    from tests.imap_server import DovecotServer

    results = {}
    with DovecotServer() as server:
        for step in ("fetch", "fetch-in-memory"):
            sources = []
            for name, path in (("warmup", tiny), ("bigmail", big)):
                user = server.add_user(f"bench-{step}-{name}")
                import_file(server, user.name, path)
                source = create_source(server, user)
                source.name = f"bench {step} {name}"
                source.save(update_fields=["name"])
                sources.append(source.pk)
            results[step] = run_step(step, sources[0], sources[1])
            if results[step]["new"] != 1:
                raise SystemExit(f"the {step} step archived {results[step]['new']} mails, not the one big mail")
    return results


# --------------------------------------------------------------------------- main


def verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else f"OVER the target of {limit:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--parts", type=int, default=10_000)
    parser.add_argument("--views", type=int, default=5, help="views of the many-parts mail (the median is shown)")
    parser.add_argument("--keep", action="store_true", help="keep the database and data directory")
    parser.add_argument("--steps", default="fetch,archive,processing,view", help="which steps (comma separated)")
    parser.add_argument("--database", default=DATABASE, help="the bench database's name (dropped and created)")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        child(args)
        return 0

    steps = set(args.steps.split(","))
    unknown = steps - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; choose from {', '.join(STEPS)}")
    env = BenchEnv.create(args.database, keep=args.keep)
    try:
        from django.contrib.auth.models import Group, User

        from archive.defaults import ensure_defaults
        from archive.models import ArchiveSettings, FieldDefinition

        ensure_defaults(FieldDefinition, ArchiveSettings, Group)
        group = Group.objects.create(name="bench")
        User.objects.create_user("bench", password="bench-only-password").groups.add(group)

        mails = env.data_dir / "mails"
        mails.mkdir()
        tiny = mails / "tiny.eml"
        write_many_parts_mail(tiny, 3)
        big = mails / "big.eml"
        many = mails / "many.eml"
        big_size = write_big_mail(big, args.megabytes)
        many_size = write_many_parts_mail(many, args.parts)
        say(f"mails: {big_size / 1e6:.1f} MB (one base64 attachment), {args.parts} parts in {many_size / 1e6:.2f} MB")
        results = archive_steps(args, tiny, big, many) if steps - {"fetch"} else {}
        if "fetch" in steps:
            results.update(fetch_steps(tiny, big))
        report(args, results)
    finally:
        env.cleanup()
    return 0


def archive_steps(args: argparse.Namespace, tiny: Path, big: Path, many: Path) -> dict[str, dict[str, float]]:
    """Archive, processing and view of the big and the many-parts mail."""
    results = {"archive": run_step("archive", tiny, big)}
    tiny_id = int(run_step("archive", tiny, tiny)["document"])
    big_id = int(results["archive"]["document"])
    many_id = int(run_step("archive", tiny, many)["document"])
    run_step("process", tiny_id, tiny_id)  # the warm-up mail itself, processed
    results["processing"] = run_step("process", tiny_id, big_id)
    results["many-processing"] = run_step("process", tiny_id, many_id)
    from archive.models import DocumentFile, FileRole

    for label, number in ((f"{args.megabytes} MB mail", big_id), ("many-parts mail", many_id)):
        sizes = list(
            DocumentFile.objects.filter(document_id=number, role=FileRole.ATTACHMENT).values_list("size", flat=True)
        )
        say(f"processing the {label} stored {len(sizes)} parts, the largest {max(sizes, default=0) / 1e6:.1f} MB")
    results["view"] = run_step("view", tiny_id, big_id)
    results["many-view"] = run_step("view", tiny_id, many_id, views=args.views)
    return results


def report(args: argparse.Namespace, results: dict[str, dict[str, float]]) -> None:
    say()
    say(f"{args.megabytes} MB mail, peak RSS growth of the step's process (target ≤ {LIMIT_RSS_MB} MB):")
    for name in STEPS:
        if name not in results:
            continue
        growth, peak = results[name]["rss_growth_mb"], results[name]["rss_peak_mb"]
        say(f"  {name:<11} +{growth:7.1f} MB (peak {peak:.0f} MB)  {verdict(growth, LIMIT_RSS_MB)}")
    if "fetch" in results:
        say("  (fetch: one IMAP sync of the mail through the pipeline, its archive step included; the mail")
        say("   streamed from the socket into the store)")
        memory, streamed = results["fetch-in-memory"]["rss_growth_mb"], results["fetch"]["rss_growth_mb"]
        ratio = f", {memory / streamed:.0f}× the streamed" if streamed >= 1 else ""
        say(f"  (the same fetch read into memory, as imaplib does without streaming: +{memory:.1f} MB{ratio})")
    if "view" in results:
        view = results["view"]
        say(f"  (view: document page {view['page_ms']:.0f} ms, body frame {view['body_ms']:.0f} ms)")
    if "many-view" in results:
        from archive.mailview import PARTS_SHOWN

        many_view = results["many-view"]
        say()
        say(f"{args.parts}-part mail after processing, server time, median of {args.views}:")
        say(f"  (target ≤ {LIMIT_VIEW_MS} ms)")
        for label, key in (("document page", "page"), ("body frame", "body")):
            wall, cpu = many_view[f"{key}_ms"], many_view[f"{key}_cpu_ms"]
            small, small_cpu = many_view[f"small_{key}_ms"], many_view[f"small_{key}_cpu_ms"]
            say(
                f"  {label:<13} {wall:7.1f} ms (CPU {cpu:5.1f} ms)  {verdict(wall, LIMIT_VIEW_MS)};"
                f" a 3-part mail's: {small:.1f} ms (CPU {small_cpu:.1f} ms), ratio {wall / small:.2f}"
            )
        wall, cpu, page = many_view["all_ms"], many_view["all_cpu_ms"], many_view["page_ms"]
        say(
            f"  (the page listing all parts, ?parts=all, as before it listed the first {PARTS_SHOWN}: {wall:.1f} ms, "
            f"CPU {cpu:.1f} ms, {wall / page:.1f}× the page)"
        )
        say(f"  (load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
        say(
            f"  (processing it: +{results['many-processing']['rss_growth_mb']:.1f} MB; "
            f"view RSS growth +{many_view['rss_growth_mb']:.1f} MB)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
