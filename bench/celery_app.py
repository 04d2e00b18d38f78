"""The product's Celery app as the bench workers run it, plus instrumentation.

- Text extraction tasks (``archive.tasks``, the search stage) go to a queue of
  their own, consumed only by the "searchable" stage's workers
  (``bench/searchable.py``) once ingestion is measured, so they neither steal
  the two cores from it nor count as "processed".
- Signals record, in the bench's Redis db, when a sync run ended and which
  documents the processing tasks finished, so the bench can time both moments
  without polling Celery.
"""

from __future__ import annotations

import json
import os
import time

from celery.signals import task_failure, task_postrun, worker_ready

from bench.harness import EXTRACTION_QUEUE
from webadmin.celery import app

app.conf.task_routes = {"archive.tasks.*": {"queue": EXTRACTION_QUEUE}}

_redis = None


def _r():  # type: ignore[no-untyped-def]
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    return _redis


@worker_ready.connect
def _ready(**_: object) -> None:
    _r().set("bench:ready", time.time())


@task_postrun.connect
def _done(sender=None, task_id=None, args=None, state=None, **_: object) -> None:  # type: ignore[no-untyped-def]
    name = getattr(sender, "name", "")
    if name == "mailsources.tasks.sync_source":
        _r().rpush("bench:sync_done", json.dumps({"t": time.time(), "state": state}))
    elif name.startswith("archive.tasks.extract_document"):
        _r().set("bench:extracted_last", time.time())
    elif name == "mailsources.tasks.process_mail_documents" and args and args[0] and state == "SUCCESS":
        pipe = _r().pipeline()
        pipe.sadd("bench:processed", *args[0])
        pipe.set("bench:processed_last", time.time())
        pipe.execute()


@task_failure.connect
def _failed(sender=None, exception=None, **_: object) -> None:  # type: ignore[no-untyped-def]
    _r().rpush("bench:failures", f"{getattr(sender, 'name', '?')}: {exception!r}")


# --------------------------------------------------------------------------- phases

# With BENCH_PHASES=1 the workers time the steps of each task (wall clock, and
# the CPU of the thread that ran the step as "cpu: …"; the ledger's calls and
# the garbage collector's runs too) and add them up per task name in Redis:
# where the archiving and the processing time goes, without a profiler's overhead.
_current_task = ""
_phase_totals: dict[str, float] = {}


def _timed(owner: object, attribute: str, phase: str) -> None:
    import functools

    original = getattr(owner, attribute)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            _phase_totals[phase] = _phase_totals.get(phase, 0.0) + time.perf_counter() - start
            key = f"cpu: {phase}"
            _phase_totals[key] = _phase_totals.get(key, 0.0) + time.thread_time() - cpu

    setattr(owner, attribute, wrapper)


def _install_phase_timers() -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from archive import extraction, processing, search, services
    from mailsources import pipeline
    from mailsources.clients import imap

    _timed(imap.ImapClient, "_fetch", "imap: UID FETCH (list sizes + download)")
    _timed(imap.ImapClient, "_search_uids", "imap: UID SEARCH")
    _timed(imap.ImapClient, "_select", "imap: SELECT/EXAMINE")
    _timed(pipeline.storage, "put_many", "store: put_many (write + fsync)")
    _timed(pipeline, "parse_headers", "parse: headers")
    _timed(pipeline, "documents_create_many", "db: documents_create_many (incl. search index)")
    _timed(services.search, "index_documents", "db: search.index_documents")
    _timed(pipeline, "batch_ingest", "batch_ingest (total)")
    _timed(processing, "_parse", "parse: full MIME (compat32)")
    _timed(storage_module(), "read_bytes", "store: read_bytes")
    _timed(extraction, "enqueue_document", "broker: enqueue extraction (per document)")
    _timed(BaseDatabaseWrapper, "commit", "db: COMMIT")
    from archive.integrity import chain, ledger

    _timed(ledger, "record_many", "ledger: record_many")
    _timed(chain, "append_many", "ledger: append_many")
    import gc

    gc_start: list[float] = []

    def gc_timer(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[:] = [time.perf_counter()]
        elif gc_start:
            key = f"gc: generation {info.get('generation')}"
            _phase_totals[key] = _phase_totals.get(key, 0.0) + time.perf_counter() - gc_start[0]

    gc.callbacks.append(gc_timer)
    del search


def storage_module():  # type: ignore[no-untyped-def]
    from archive import storage

    return storage


if os.environ.get("BENCH_PHASES"):
    from celery.signals import task_prerun, worker_process_init

    @worker_process_init.connect
    def _init_phases(**_: object) -> None:
        _install_phase_timers()

    @task_prerun.connect
    def _phase_start(sender=None, **_: object) -> None:  # type: ignore[no-untyped-def]
        global _current_task
        _current_task = getattr(sender, "name", "?").rsplit(".", 1)[-1]
        _phase_totals.clear()
        _phase_totals["__start"] = time.perf_counter()

    @task_postrun.connect
    def _phase_end(**_: object) -> None:
        start = _phase_totals.pop("__start", None)
        if start is None:
            return
        pipe = _r().pipeline()
        pipe.hincrbyfloat(f"bench:phases:{_current_task}", "task (total)", time.perf_counter() - start)
        pipe.hincrby(f"bench:phases:{_current_task}", "tasks", 1)
        for phase, seconds in _phase_totals.items():
            pipe.hincrbyfloat(f"bench:phases:{_current_task}", phase, seconds)
        pipe.execute()
