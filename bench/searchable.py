"""The search stage of the IMAP bench: after ingestion, real Celery workers of
the extraction queue (``archive.tasks.extract_documents``, the reusable
sandboxed extractor of ``archive.extraction_pool``) extract every mail's body
and attachments and index them. Timed from the workers' ready signal to the
last extraction task's end; a mail is searchable when none of its files waits."""

from __future__ import annotations

import time

from bench.harness import EXTRACTION_QUEUE, BenchEnv, CpuMeter, RssSampler, Workers, pids_named, process_tree, say


def run_searchable(env: BenchEnv, concurrency: int, timeout: float) -> dict[str, object]:
    from archive.models import DocumentFile, ExtractionStatus

    r = env.redis()
    queued = r.llen(EXTRACTION_QUEUE)
    r.delete("bench:extracted_last")
    workers = Workers(env, concurrency=concurrency, queues=EXTRACTION_QUEUE, name="bench-extraction")
    try:
        workers.start()
        t0 = float(r.get("bench:ready") or time.time())
        sampler = RssSampler([workers.pid]).start()
        meter = CpuMeter(
            {
                "workers": lambda: process_tree(workers.pid),
                "mariadb": lambda: pids_named("mariadbd"),
                "redis": lambda: pids_named("redis-server"),
            }
        ).start()
        waiting = DocumentFile.objects.filter(extraction_status=ExtractionStatus.PENDING)
        last_report = time.monotonic()
        while waiting.exists() or r.llen(EXTRACTION_QUEUE):
            if not workers.alive():
                raise SystemExit(f"the extraction worker died; see {workers.log_path}")
            if time.time() - t0 > timeout:
                raise SystemExit(f"extraction timed out after {timeout:.0f} s")
            if time.monotonic() - last_report > 10:
                say(f"  … {time.time() - t0:5.0f} s: {waiting.count()} files wait for extraction")
                last_report = time.monotonic()
            time.sleep(0.1)
        cpu = meter.read()
        rss = sampler.snapshot()
        sampler.stop()
        ended = float(r.get("bench:extracted_last") or time.time())
    finally:
        workers.stop()
    statuses = dict.fromkeys(ExtractionStatus.values, 0)
    for status in DocumentFile.objects.values_list("extraction_status", flat=True):
        statuses[status] += 1
    return {"seconds": ended - t0, "tasks": queued, "statuses": statuses, "cpu": cpu, "rss": rss}
