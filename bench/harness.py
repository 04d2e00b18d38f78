"""What every benchmark needs: a throwaway MariaDB database and data directory,
Django set up against them, real Celery workers on Redis, and measurements of
the worker processes (peak RSS, CPU) and of the machine (load from others).

Use in this order, before importing any model::

    env = BenchEnv.create("webadmin_bench")   # env vars, fresh database, migrate
    workers = Workers(env, concurrency=2).start()
    ...
    workers.stop(); env.cleanup()
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MARIADB_URL = "mysql://root@127.0.0.1:3306/webadmin_bench"
# Not /15 (the test suite's): a bench and `make test` may run side by side.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
# Text extraction's queue in the benches (bench/celery_app.py routes it there).
EXTRACTION_QUEUE = "bench-extraction"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def say(text: str = "") -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- environment


@dataclasses.dataclass
class BenchEnv:
    database_url: str
    redis_url: str
    data_dir: Path
    keep: bool = False

    @classmethod
    def create(cls, database: str, *, keep: bool = False) -> BenchEnv:
        """Point Django at a fresh database and data directory, then migrate."""
        base = os.environ.get("BENCH_MARIADB_URL", DEFAULT_MARIADB_URL)
        parts = urlsplit(base)
        database_url = parts._replace(path=f"/{database}").geturl()
        redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
        data_dir = Path(tempfile.mkdtemp(prefix=f"{database}-", dir=os.environ.get("BENCH_TMPDIR")))
        env = cls(database_url, redis_url, data_dir, keep)
        os.environ.update(env.variables())
        _recreate_database(database_url)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        env.flush_redis()
        return env

    def variables(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.redis_url,
            "DATA_DIR": str(self.data_dir),
            "SECRET_KEY": "bench-only-secret-key",
            "SOURCE_SECRET_KEY": "bench-only-source-secret-key",
            "DJANGO_SETTINGS_MODULE": "webadmin.settings",
            "DEBUG": "false",  # DEBUG keeps every query in memory
            "HTTPS": "false",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        }

    def redis(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.redis_url)

    def flush_redis(self) -> None:
        self.redis().flushdb()  # our own db number only

    def cleanup(self) -> None:
        if self.keep:
            say(f"kept: data in {self.data_dir}, database {self.database_url}")
            return
        with contextlib.suppress(Exception):
            self.flush_redis()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _recreate_database(url: str) -> None:
    import MySQLdb

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum() or "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: a bench database has 'bench' in its name")
    conn = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        passwd=parts.password or "",
    )
    try:
        cursor = conn.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    finally:
        conn.close()


# --------------------------------------------------------------------------- processes


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    children = _children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def pids_named(name: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as fh:
                if fh.read().strip() == name:
                    pids.append(int(entry))
    return pids


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
            # utime + stime, + cutime + cstime: children that ended (Dovecot's
            # imap process per connection, extractor subprocesses) count too.
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


class RssSampler:
    """Samples the RSS of process trees every ``interval`` seconds in a thread.

    ``peak_total_mb``: the highest sum over all their processes at one moment;
    ``peak_process_mb``: the highest single process (kernel's VmHWM, so no
    spike between samples is missed)."""

    def __init__(self, roots: list[int], interval: float = 0.1) -> None:
        self.roots = roots
        self.interval = interval
        self.peak_total_kb = 0
        self.peak_process_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def pids(self) -> list[int]:
        return [pid for root in self.roots for pid in process_tree(root)]

    def sample(self) -> None:
        pids = self.pids()
        total = sum(_status_kb(pid, "VmRSS:") for pid in pids)
        self.peak_total_kb = max(self.peak_total_kb, total)
        self.peak_process_kb = max([self.peak_process_kb] + [_status_kb(pid, "VmHWM:") for pid in pids])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def snapshot(self) -> tuple[float, float]:
        self.sample()
        return self.peak_total_kb / 1024, self.peak_process_kb / 1024

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class CpuMeter:
    """CPU seconds used by named groups of processes and by the whole machine
    between ``start()`` and ``read()``: the rest of the machine's busy time is
    other work (on a shared machine, other people's tests)."""

    def __init__(self, groups: dict[str, callable]) -> None:  # type: ignore[valid-type]
        self.groups = groups  # name -> () -> list of pids

    def start(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.machine0 = machine_cpu_seconds()
        self.group0 = {name: cpu_seconds(pids()) for name, pids in self.groups.items()}
        return self

    def read(self) -> dict[str, float]:
        busy, total = machine_cpu_seconds()
        out = {name: cpu_seconds(pids()) - self.group0[name] for name, pids in self.groups.items()}
        out["machine busy"] = busy - self.machine0[0]
        out["machine total"] = total - self.machine0[1]
        out["wall"] = time.monotonic() - self.t0
        out["others"] = max(0.0, out["machine busy"] - sum(v for k, v in out.items() if k in self.groups))
        return out


def cpu_line(cpu: dict[str, float], groups: list[str]) -> str:
    cores = cpu["machine total"] / cpu["wall"] if cpu["wall"] else 0
    parts = [f"{name} {cpu[name]:.1f}" for name in groups] + [f"others {cpu['others']:.1f}"]
    return (
        f"CPU s: {', '.join(parts)} (machine: {cpu['machine busy']:.1f} busy of "
        f"{cpu['machine total']:.1f} = {cores:.0f} cores × {cpu['wall']:.1f} s)"
    )


class Workers:
    """Real Celery workers (prefork) on the bench broker, in their own process group."""

    def __init__(
        self,
        env: BenchEnv,
        *,
        concurrency: int,
        app: str = "bench.celery_app",
        queues: str = "celery",
        name: str = "bench",
    ) -> None:
        self.env = env
        self.concurrency = concurrency
        self.app = app
        self.queues = queues
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = env.data_dir / f"{name}-worker.log"

    def start(self, timeout: float = 60) -> Workers:
        redis = self.env.redis()
        redis.delete("bench:ready")
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the worker
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                self.app,
                "worker",
                "-Q",
                self.queues,
                "--pool",
                "prefork",
                "--concurrency",
                str(self.concurrency),
                "-n",
                f"{self.name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "warning",
            ],
            cwd=ROOT,
            env={**os.environ, **self.env.variables()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"the Celery worker exited at start; see {self.log_path}:\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            if redis.get("bench:ready"):
                return self
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"the Celery worker was not ready within {timeout:.0f} s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # warm shutdown of the whole pool
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class PySpy:
    """Optional sampling profile of a process tree (``py-spy record``, raw
    collapsed stacks), summarised as the functions where samples fall."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not os.access(exe, os.X_OK):
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.output = output
        self.process = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                str(rate),
                "--nonblocking",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def summarise_collapsed(
    path: Path, top: int = 25, include: tuple[str, ...] = ("/work/", "site-packages", "lib/python")
) -> str:
    """Self and inclusive sample shares per function from py-spy's raw output."""
    if not path.exists():
        return "(no profile written)"
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if f]
        if frames and frames[0].startswith("process"):
            frames = frames[1:]
        seen = set()
        for frame in frames:
            name = (
                frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                if " (" in frame
                else frame
            )
            if name not in seen:
                inclusive[name] = inclusive.get(name, 0) + count
                seen.add(name)
        if frames:
            leaf = frames[-1]
            name = (
                leaf.split(" (")[0] + " (" + leaf.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                if " (" in leaf
                else leaf
            )
            own[name] = own.get(name, 0) + count
    if not total:
        return "(empty profile)"
    lines = [f"{total} samples; self time (leaf frames):"]
    for name, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    lines.append("inclusive (on the stack):")
    for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[: top * 2]:
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)
