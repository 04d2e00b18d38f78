"""Microsoft 365 ingestion benchmark (issue 4, item 7): ``python -m bench.graph_bench``.

1. Starts the local Entra ID + Graph fake (``tests.fakes.graph_fake``) in a process of its own,
   so it does not compete with the client for the GIL, with ``--mailboxes`` mailboxes (default
   1) of ``--mails`` small messages each in their Inbox and the throttling model on, time-scaled:
   Graph's 10,000 requests per 600 s per app + mailbox become ``--window-requests`` per
   ``--window-seconds`` (default 10,000 per 60 s), 4 concurrent requests, per mailbox.
2. Creates a fresh database (MariaDB ``webadmin_bench_graph``, or ``--db sqlite``), migrates it,
   and a Microsoft 365 source with Number of mails = ``--page-size`` (default 1000), configured
   only to talk to the fake (``GRAPH_URL``, ``GRAPH_AUTHORITY_HOST``, ``MAIL_CA_FILE``) and to
   pace itself under the scaled window (``GRAPH_RATE_LIMIT_*``).
3. Runs the real pipeline in this process (``pipeline.source_sync`` with the real client
   factory: delta pages, ``$value`` downloads, store + fsync, documents, ledger), as the sync task
   does; a run that ends throttled is run again, as the task's retry would.
4. Prints mails/s, Graph requests per archived mail, 429 answers received and mails/s as a
   percentage of the throttle ceiling (N mailboxes: N times one mailbox's, as Graph limits each
   mailbox on its own; the mailboxes of the source sync side by side), then the figures of a
   no-change rerun.

Targets (issue 4): <= 1.01 requests per archived mail, >= 95 % of the ceiling, a handful of
429s at most.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.harness import DEFAULT_MARIADB_URL, CpuMeter, _recreate_database, cpu_line, pids_named, say

ALICE = "alice@contoso.com"


def mailbox_names(count: int) -> list[str]:
    return [ALICE] + [f"user{i}@contoso.com" for i in range(2, count + 1)]


DATABASE = "webadmin_bench_graph"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.graph_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=10_000, help="mails per mailbox (default 10000)")
    parser.add_argument(
        "--mailboxes", type=int, default=1, help="mailboxes of the one source, synced side by side (default 1)"
    )
    parser.add_argument("--page-size", type=int, default=1000, help="Number of mails (Office 365), 1-1000")
    parser.add_argument("--window-requests", type=int, default=10_000, help="throttle window: requests")
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=60.0,
        help="throttle window: seconds (Graph: 600; default 60, time-scaled ×10)",
    )
    parser.add_argument("--mail-size", type=int, default=2_000, help="body bytes per mail (default 2000)")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds the fake spends inside every Graph request (default 0)"
    )
    parser.add_argument("--db", choices=["mariadb", "sqlite"], default="mariadb")
    parser.add_argument(
        "--redis-gate",
        metavar="URL",
        nargs="?",
        const="redis://127.0.0.1:6379/12",
        help="also share the limits through the Redis gate, as workers on a Redis "
        "broker do (default URL redis://127.0.0.1:6379/12)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and database")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- the fake, in its own process


def _fake_main(conn: Any, args: dict[str, Any]) -> None:
    """The fake's process: load the mailbox, report the configuration, answer commands."""
    from tests.fakes.graph_fake import GraphFake, iter_mime_batch

    with GraphFake() as fake:
        tenant = fake.add_tenant(domains=["contoso.com"])
        client_id, secret = fake.add_app(tenant, roles=["Mail.Read"])
        started = time.monotonic()
        stored = 0
        boxes = mailbox_names(args["mailboxes"])
        for box in boxes:
            fake.add_mailbox(box, tenant=tenant)
            for raw, received in iter_mime_batch(args["mails"], size=args["mail_size"]):
                fake.add_message(box, "inbox", raw, received)
                stored += len(raw)
        fake.set_throttle(
            max_concurrent=4,
            window_requests=args["window_requests"],
            window_seconds=args["window_seconds"],
            retry_after="float",
        )
        if args["latency"]:
            fake.set_latency(args["latency"])
        conn.send(
            {
                "base_url": fake.base_url,
                "ca_pem": fake.ca_pem,
                "tenant": tenant,
                "client_id": client_id,
                "secret": secret,
                "bytes": stored,
                "load_s": time.monotonic() - started,
            }
        )
        while True:
            command = conn.recv()
            if command == "stats":  # the mailboxes' counters together
                every = fake.stats()
                per_box = [fake.stats(box) for box in boxes]
                conn.send(
                    {
                        **dataclasses.asdict(every),
                        "by_status": dict(every.by_status),
                        "by_kind": dict(every.by_kind),
                        "graph_requests": sum(b.graph_requests for b in per_box),
                        "max_in_flight": max(b.max_in_flight for b in per_box),
                    }
                )
            elif command == "timeline":  # when each Graph request arrived (monotonic seconds)
                conn.send(sorted(r.started for r in fake.requests if r.kind not in {"entra", "token", "discovery"}))
            elif command == "reset_stats":
                fake.reset_stats()
                conn.send(True)
            else:
                conn.send(True)
                return


class FakeProcess:
    def __init__(self, args: argparse.Namespace) -> None:
        context = multiprocessing.get_context("spawn")  # nothing of this process (Django) inherited
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_fake_main,
            name="graph-fake",
            daemon=True,
            args=(
                child,
                {
                    "mails": args.mails,
                    "mailboxes": args.mailboxes,
                    "mail_size": args.mail_size,
                    "window_requests": args.window_requests,
                    "window_seconds": args.window_seconds,
                    "latency": args.latency,
                },
            ),
        )
        self.process.start()
        if not self.conn.poll(600):
            raise SystemExit("the Graph fake did not start within 600 s")
        self.config: dict[str, Any] = self.conn.recv()

    def call(self, command: str) -> Any:
        self.conn.send(command)
        return self.conn.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.call("stop")
            except (BrokenPipeError, EOFError):
                pass
            self.process.join(timeout=10)
            if self.process.is_alive():
                self.process.kill()


# --------------------------------------------------------------------------- environment


def configure(args: argparse.Namespace, fake: dict[str, Any], data_dir: Path) -> str:
    """Environment for Django, before django.setup(); returns the database URL."""
    if args.db == "mariadb":
        base = os.environ.get("BENCH_MARIADB_URL", DEFAULT_MARIADB_URL)
        database_url = urlsplit(base)._replace(path=f"/{DATABASE}").geturl()
        _recreate_database(database_url)
    else:
        database_url = f"sqlite:///{data_dir / 'bench.sqlite3'}"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "webadmin.settings",
            "DATABASE_URL": database_url,
            "DATA_DIR": str(data_dir),
            "SECRET_KEY": "bench-only-secret-key",
            "SOURCE_SECRET_KEY": "bench-only-source-secret-key",
            "DEBUG": "false",
            "HTTPS": "false",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            "CELERY_BROKER_URL": args.redis_gate or "filesystem://",
            # Configuration only: where Entra and Graph are, whom to trust, the window to pace under.
            "GRAPH_AUTHORITY_HOST": fake["base_url"],
            "GRAPH_URL": fake["base_url"],
            "MAIL_CA_FILE": fake["ca_pem"],
            "GRAPH_RATE_LIMIT_REQUESTS": str(args.window_requests),
            "GRAPH_RATE_LIMIT_SECONDS": str(max(1, round(args.window_seconds))),
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return database_url


def create_source(args: argparse.Namespace, fake: dict[str, Any]) -> int:
    from django.contrib.auth.models import Group

    from archive.models import FieldDefinition
    from mailsources.models import MailSource, SourceKind
    from mailsources.services import source_set_secret

    fields = {f.name: f for f in FieldDefinition.objects.filter(name__in=["from", "to", "cc", "subject"])}
    source = MailSource(
        kind=SourceKind.M365,
        name="bench m365",
        tenant=fake["tenant"],
        client_id=fake["client_id"],
        mailboxes="\n".join(mailbox_names(args.mailboxes)),
        folders="Inbox",
        page_size=args.page_size,
        owner_group=Group.objects.get_or_create(name="Archive")[0],
        from_field=fields["from"],
        to_field=fields["to"],
        cc_field=fields["cc"],
        subject_field=fields["subject"],
    )
    source_set_secret(source, fake["secret"])
    source.save()
    return source.pk


def run_until_done(source_id: int, timeout: float) -> tuple[float, int]:
    """(seconds, runs): the real pipeline, rerun after a throttled end as the task would."""
    from mailsources import pipeline, services
    from mailsources.clients.base import TransientSourceError
    from mailsources.tasks import retry_countdown

    started = time.monotonic()
    runs = 0
    waiting: list[str] | None = None  # the mailboxes a retry is for
    while True:
        runs += 1
        try:
            run = pipeline.source_sync(source_id, client_factory=services.client_for_source, only_mailboxes=waiting)
        except TransientSourceError as exc:
            waiting = exc.mailboxes
            wait = max(retry_countdown(0, exc.retry_after, jitter=0.5), exc.min_wait or 0)
            say(f"  run {runs} ended transiently ({exc.code}): {exc}; again in {wait:.0f} s")
            time.sleep(wait)
        else:
            assert run is not None, "the source's lease is held by someone else"
            if run.status not in ("ok",):
                raise SystemExit(f"the run ended {run.status}: {run.errors}")
            return time.monotonic() - started, runs
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s")


def verify(source_id: int, mails: int) -> list[str]:
    from archive.models import Document
    from mailsources.models import ArchivedMail, MailLocation

    problems = []
    archived = ArchivedMail.objects.filter(source_id=source_id).count()
    locations = MailLocation.objects.filter(source_id=source_id).count()
    documents = Document.objects.count()
    if not archived == locations == documents == mails:
        problems.append(
            f"{archived} archived mails, {locations} locations, {documents} documents; expected {mails} of each"
        )
    return problems


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 1 <= args.page_size <= 1000:
        raise SystemExit("--page-size must be 1-1000")
    data_dir = Path(tempfile.mkdtemp(prefix="webadmin-bench-graph-", dir=os.environ.get("BENCH_TMPDIR")))
    say(
        f"Microsoft 365 bench: {args.mailboxes} mailbox(es) of {args.mails} mails, Number of mails = "
        f"{args.page_size}, throttle {args.window_requests} requests / {args.window_seconds:g} s and 4 "
        "concurrent per mailbox, "
        f"{args.db}{', Redis gate' if args.redis_gate else ''}"
    )
    if args.mailboxes < 1:
        raise SystemExit("--mailboxes must be at least 1")
    total = args.mails * args.mailboxes
    fake = FakeProcess(args)
    database_url = ""
    try:
        config = fake.config
        say(
            f"fake (own process) loaded {total} mails, {config['bytes'] / 1e6:.1f} MB, in "
            f"{config['load_s']:.1f} s at {config['base_url']}"
        )
        database_url = configure(args, config, data_dir)
        source_id = create_source(args, config)
        fake.call("reset_stats")

        meter = CpuMeter(
            {
                "client+pipeline": lambda: [os.getpid()],
                "fake": lambda: [fake.process.pid] if fake.process.pid else [],
                "mariadb": lambda: pids_named("mariadbd"),
            }
        ).start()
        seconds, runs = run_until_done(source_id, args.timeout)
        cpu = meter.read()
        stats = fake.call("stats")
        problems = verify(source_id, total)

        # requests (≈ mails) per second: each mailbox has a window of its own
        ceiling = args.mailboxes * args.window_requests / args.window_seconds
        mails_per_s = total / seconds
        per_mail = stats["graph_requests"] / total
        request_rate = stats["graph_requests"] / seconds
        say(f"first sync: {total} mails in {seconds:.1f} s ({runs} run{'s' if runs > 1 else ''})")
        say(f"  mails/s:                      {mails_per_s:8.1f}")
        say(
            f"  Graph requests per mail:      {per_mail:8.4f}   ({stats['graph_requests']} requests: "
            + ", ".join(f"{k} {v}" for k, v in sorted(stats["by_kind"].items()))
            + ")"
        )
        say(
            f"  429 responses received:       {stats['throttled']:8d}   (window {stats['window_rejections']}, "
            f"concurrency {stats['concurrency_rejections']}); max in flight {stats['max_in_flight']} per "
            f"mailbox, {stats['max_mailboxes_in_flight']} mailbox(es) at once"
        )
        say(f"  throttle ceiling:             {ceiling:8.1f} requests/s")
        say(
            f"  mails/s of the ceiling:       {100 * mails_per_s / ceiling:8.1f} %   "
            f"(requests/s: {100 * request_rate / ceiling:.1f} %)"
        )
        say(f"  tokens issued:                {stats['tokens_issued']:8d}")
        say("  " + cpu_line(cpu, ["client+pipeline", "fake", "mariadb"]))

        fake.call("reset_stats")
        rerun_s, _ = run_until_done(source_id, args.timeout)
        again = fake.call("stats")
        say(
            f"no-change rerun: {rerun_s:.2f} s, {again['graph_requests']} Graph requests, "
            f"{again['by_kind'].get('value', 0)} message bodies downloaded"
        )

        targets = [
            ("≤ 1.01 requests per archived mail", per_mail <= 1.01),
            ("≥ 95 % of the throttle ceiling", mails_per_s >= 0.95 * ceiling),
            ("at most a handful (≤ 5) of 429s", stats["throttled"] <= 5),
        ]
        for name, ok in targets:
            say(f"  target {name}: {'met' if ok else 'MISSED'}")
        if problems:
            say("PROBLEMS: " + "; ".join(problems))
            return 1
        return 0
    finally:
        fake.stop()
        if args.keep:
            say(f"kept: {data_dir}, database {database_url}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
            if args.db == "mariadb" and database_url:
                _drop_database(database_url)


def _drop_database(url: str) -> None:
    import MySQLdb
    from django.db import connections

    connections.close_all()
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    assert "bench" in name
    conn = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        passwd=parts.password or "",
    )
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
