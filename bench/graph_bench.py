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
429s at most. Issue 18 item 3: 4 mailboxes at >= 3.6x one mailbox's ceiling with 0 x 429,
<= 1.01 requests per mail at Number of mails = 1000 and <= 1.05 at the default 25.

Without any of ``--mails --mailboxes --page-size --window-requests --window-seconds`` (as
``make bench`` runs it) the bench runs the issue's scenarios one after another (:data:`SUITE`),
each in a process, database and fake of its own, then prints them side by side with the targets
and the load average. Why 4 mailboxes at 1,000 requests per 60 s: that is Graph's own rate per
mailbox (10,000 per 600 s), the window only shortened so that a run takes minutes; at the
time-scaled 10,000 per 60 s four mailboxes would need ~670 mails/s, more than 2 cores archive
(~7 ms of CPU per mail), so the figure would measure the CPU, not the pacing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
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


# The options that shape one scenario, and their defaults when one is run on its own.
SCENARIO_DEFAULTS: dict[str, Any] = {
    "mails": 10_000,
    "mailboxes": 1,
    "page_size": 1000,
    "window_requests": 10_000,
    "window_seconds": 60.0,
}

# What `make bench` runs (issue 18 item 3): (name, scenario options).
SUITE: list[tuple[str, dict[str, Any]]] = [
    (
        "1 mailbox at the time-scaled ceiling, Number of mails = 1000",
        {"mails": 10_000, "mailboxes": 1, "page_size": 1000, "window_requests": 10_000, "window_seconds": 60.0},
    ),
    (
        "4 mailboxes at Graph's rate per mailbox (1,000 / 60 s), Number of mails = 1000",
        {"mails": 2_000, "mailboxes": 4, "page_size": 1000, "window_requests": 1_000, "window_seconds": 60.0},
    ),
    (
        "1 mailbox, Number of mails = 25 (the default)",
        {"mails": 5_000, "mailboxes": 1, "page_size": 25, "window_requests": 10_000, "window_seconds": 60.0},
    ),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.graph_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, help="mails per mailbox (default 10000)")
    parser.add_argument("--mailboxes", type=int, help="mailboxes of the one source, synced side by side (default 1)")
    parser.add_argument("--page-size", type=int, help="Number of mails (Office 365), 1-1000 (default 1000)")
    parser.add_argument("--window-requests", type=int, help="throttle window: requests (default 10000)")
    parser.add_argument(
        "--window-seconds",
        type=float,
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
    parser.add_argument("--json-out", metavar="FILE", help=argparse.SUPPRESS)  # the suite's figures
    args = parser.parse_args(argv)
    args.suite = all(getattr(args, name) is None for name in SCENARIO_DEFAULTS)
    for name, default in SCENARIO_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


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
            elif command == "timeline":  # when each Graph request arrived (monotonic seconds), and its kind
                graph = [r for r in fake.requests if r.kind not in {"entra", "token", "discovery"}]
                conn.send(sorted((r.started, r.kind) for r in graph))
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


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def steady_rate(arrivals: list[float]) -> float | None:
    """Graph requests/s over the middle 90 % of them: the pace once every mailbox is going,
    without the run's start (token, folder, first delta page) and end (the last commit)."""
    if len(arrivals) < 100:
        return None
    low, high = arrivals[len(arrivals) // 20], arrivals[-len(arrivals) // 20]
    return (len(arrivals) * 0.9) / (high - low) if high > low else None


def per_mail_target(page_size: int) -> float:
    """The issue's ceilings for requests per archived mail: 1.01 at 1000, 1.05 at 25; in
    between and below, one delta page per ``page_size`` mails and 1 % besides."""
    if page_size >= 1000:
        return 1.01
    if page_size == 25:
        return 1.05
    return 1 + 1 / page_size + 0.01


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.suite:
        return run_suite(sys.argv[1:] if argv is None else argv)
    return run_scenario(args)


def run_scenario(args: argparse.Namespace) -> int:
    if not 1 <= args.page_size <= 1000:
        raise SystemExit("--page-size must be 1-1000")
    data_dir = Path(tempfile.mkdtemp(prefix="webadmin-bench-graph-", dir=os.environ.get("BENCH_TMPDIR")))
    say(
        f"Microsoft 365 bench: {args.mailboxes} mailbox(es) of {args.mails} mails, Number of mails = "
        f"{args.page_size}, throttle {args.window_requests} requests / {args.window_seconds:g} s and 4 "
        "concurrent per mailbox, "
        f"{args.db}{', Redis gate' if args.redis_gate else ''}; {load_average()}"
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
        # As in a worker that has synced before: O365 and msal (~0.5 s of CPU) are imported once
        # per process, on its first Microsoft 365 run, not by every run.
        import mailsources.clients.graph  # noqa: F401

        fake.call("reset_stats")

        meter = CpuMeter(
            {
                "client+pipeline": lambda: [os.getpid()],
                "fake": lambda: [fake.process.pid] if fake.process.pid else [],
                "mariadb": lambda: pids_named("mariadbd"),
            }
        ).start()
        load_before = os.getloadavg()
        began = time.monotonic()  # CLOCK_MONOTONIC: the fake's request times are on it too
        seconds, runs = run_until_done(source_id, args.timeout)
        ended = time.monotonic()
        cpu = meter.read()
        load_after = os.getloadavg()
        stats = fake.call("stats")
        timeline = fake.call("timeline")
        steady = steady_rate([t for t, _ in timeline])
        downloads = [t for t, kind in timeline if kind == "value"]
        problems = verify(source_id, total)

        # requests (≈ mails) per second: each mailbox has a window of its own
        one_ceiling = args.window_requests / args.window_seconds
        ceiling = args.mailboxes * one_ceiling
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
        say(f"  throttle ceiling:             {ceiling:8.1f} requests/s ({one_ceiling:.1f} per mailbox)")
        say(
            f"  mails/s of the ceiling:       {100 * mails_per_s / ceiling:8.1f} %   "
            f"(requests/s: {100 * request_rate / ceiling:.1f} %)"
        )
        say(f"  × one mailbox's ceiling:      {mails_per_s / one_ceiling:8.2f}")
        if steady is not None:
            say(
                f"  steady requests/s:            {steady:8.1f}   ({100 * steady / ceiling:.1f} % of the ceiling; "
                "the middle 90 % of the requests, without the run's start and end)"
            )
        if timeline and downloads:
            say(
                f"  start and end:                first Graph request {timeline[0][0] - began:.2f} s, first "
                f"download {downloads[0] - began:.2f} s after the run began; the run ended "
                f"{ended - downloads[-1]:.2f} s after the last download"
            )
        say(f"  tokens issued:                {stats['tokens_issued']:8d}")
        say("  " + cpu_line(cpu, ["client+pipeline", "fake", "mariadb"]))
        say(
            "  load average (1 min) before/after: "
            f"{load_before[0]:.2f} / {load_after[0]:.2f} (5 min {load_after[1]:.2f})"
        )

        fake.call("reset_stats")
        rerun_s, _ = run_until_done(source_id, args.timeout)
        again = fake.call("stats")
        say(
            f"no-change rerun: {rerun_s:.2f} s, {again['graph_requests']} Graph requests, "
            f"{again['by_kind'].get('value', 0)} message bodies downloaded"
        )

        per_mail_max = per_mail_target(args.page_size)
        targets = [(f"≤ {per_mail_max:g} requests per archived mail", per_mail <= per_mail_max)]
        if args.mailboxes == 1:
            targets += [
                # requests, not mails: at Number of mails = 25 every 25th request is a delta page
                ("≥ 95 % of the throttle ceiling (requests/s)", request_rate >= 0.95 * ceiling),
                ("at most a handful (≤ 5) of 429s", stats["throttled"] <= 5),
            ]
        else:
            times = 0.9 * args.mailboxes  # issue 18: 3.6× at 4 mailboxes
            targets += [
                (f"≥ {times:g}× one mailbox's ceiling", mails_per_s >= times * one_ceiling),
                ("0 × 429", stats["throttled"] == 0),
            ]
        for name, ok in targets:
            say(f"  target {name}: {'met' if ok else 'MISSED'}")
        if args.json_out:
            Path(args.json_out).write_text(
                json.dumps(
                    {
                        "mails_per_s": mails_per_s,
                        "times_one_ceiling": mails_per_s / one_ceiling,
                        "of_ceiling": mails_per_s / ceiling,
                        "steady_of_ceiling": steady / ceiling if steady is not None else None,
                        "per_mail": per_mail,
                        "throttled": stats["throttled"],
                        "seconds": seconds,
                        "load": [load_before[0], load_after[0]],
                        "targets": [[name, ok] for name, ok in targets],
                        "problems": problems,
                    }
                )
            )
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


def run_suite(argv: list[str]) -> int:
    """The scenarios of :data:`SUITE`, each in a process of its own (Django is set up once per
    process, against that scenario's fresh database), then side by side."""
    say(f"Microsoft 365 bench, issue 18 item 3: {len(SUITE)} scenarios; {load_average()}")
    results: list[tuple[str, dict[str, Any] | None]] = []
    status = 0
    for name, options in SUITE:
        scenario = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
        with tempfile.NamedTemporaryFile(prefix="graph-bench-", suffix=".json") as out:
            say(f"\n==> {name}")
            command = [sys.executable, "-m", "bench.graph_bench", *scenario, *argv, "--json-out", out.name]
            code = subprocess.call(command)
            text = Path(out.name).read_text()
        status = status or code
        results.append((name, json.loads(text) if text else None))
    say(f"\nMicrosoft 365, side by side ({load_average()} now):")
    say(f"  {'scenario':<80} {'mails/s':>8} {'× 1 box':>8} {'ceiling':>8} {'steady':>7} {'req/mail':>9} {'429s':>5}")
    for name, result in results:
        if result is None:
            say(f"  {name:<80} (failed)")
            continue
        steady = result["steady_of_ceiling"]
        say(
            f"  {name:<80} {result['mails_per_s']:8.1f} {result['times_one_ceiling']:8.2f} "
            f"{100 * result['of_ceiling']:7.1f}% {'' if steady is None else f'{100 * steady:6.1f}%':>7} "
            f"{result['per_mail']:9.4f} {result['throttled']:5d}"
        )
    for name, result in results:
        for target, ok in (result or {}).get("targets", []):
            say(f"  target {target} ({name}): {'met' if ok else 'MISSED'}")
    return status


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
