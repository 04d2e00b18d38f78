"""The reusable sandboxed extractor (archive/extraction_pool.py): one child per
worker process serves many files, yet a hostile file costs at most that child —
a timeout or a memory overrun kills and replaces it and the next file is
extracted; the CPU limit holds per file in a reused child; a child is recycled
after N files or M MB; closing the pool leaves no process behind.

The child is the real serve loop (``archive.extractors.serve_main``) with
``extract_text`` replaced for a few file names, so a test can ask it to hang,
burn CPU, eat memory, crash or say which process it is."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from archive import extraction, extraction_pool, search
from archive.models import DocumentFile, ExtractionStatus
from tests.archive.test_extraction import _archive

CHILD = """
import os, resource, sys, time
import archive.extractors as e
real = e.extract_text

def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime

def fake(data, content_type, name, limits=None, **kw):
    if name == "pid.txt":
        return str(os.getpid())
    if name == "hang.txt":
        while True:
            time.sleep(3600)
    if name.startswith("burn-"):  # burn this many CPU seconds
        until = cpu() + float(name[5:-4])
        while cpu() < until:
            pass
        return "burnt"
    if name == "crash.txt":  # as the kernel's OOM killer would
        os.kill(os.getpid(), 9)
    if name == "hog.txt":
        return str(len(bytearray(2 * 1024 ** 3)))
    return real(data, content_type, name, limits, **kw)

e.extract_text = fake
sys.exit(e.serve_main())
"""


@pytest.fixture(autouse=True)
def test_child(monkeypatch, settings):
    monkeypatch.setattr(extraction, "EXTRACTOR_COMMAND", [sys.executable, "-B", "-c", CHILD])
    settings.EXTRACTION_TIMEOUT_SECONDS = 60
    settings.EXTRACTION_CPU_SECONDS = 60
    extraction_pool.pool.close()
    yield
    extraction_pool.pool.close()


def run(tmp_path: Path, name: str, data: bytes = b"x") -> extraction.Outcome:
    path = tmp_path / name
    path.write_bytes(data)
    return extraction.run_sandboxed(str(path), "text/plain", name)


def child_pid(tmp_path: Path) -> int:
    outcome = run(tmp_path, "pid.txt")
    assert outcome.status == ExtractionStatus.DONE, outcome
    return int(outcome.text)


def gone(pid: int) -> bool:
    """Reaped: no longer our child (not even a zombie) and no such process."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not Path(f"/proc/{pid}").exists()
    return False


def test_one_child_serves_many_files(tmp_path):
    first = child_pid(tmp_path)
    for number in range(5):
        outcome = run(tmp_path, f"note-{number}.txt", f"Lieferschein {number}".encode())
        assert (outcome.status, outcome.text) == (ExtractionStatus.DONE, f"Lieferschein {number}")
    assert child_pid(tmp_path) == first


@pytest.mark.django_db(transaction=True)
def test_a_file_that_times_out_kills_only_its_child_and_the_next_file_in_the_batch_is_extracted(
    group_a, alice, settings, monkeypatch
):
    monkeypatch.setattr(extraction, "enqueue_document", lambda number, countdown=None: None)
    settings.EXTRACTION_TIMEOUT_SECONDS = 1
    hang = _archive(group_a, "hang.txt", b"never read")
    after = _archive(group_a, "after.txt", b"Wartungsvertrag Heizung")
    extraction_pool.pool.close()

    counts = extraction.extract_documents([hang.pk, after.pk])

    assert counts == {ExtractionStatus.FAILED: 1, ExtractionStatus.DONE: 1}
    hung = DocumentFile.objects.get(document=hang)
    assert hung.extraction_status == ExtractionStatus.FAILED
    assert hung.extraction_error == "attempt 1 of 3: timed out after 1 s"
    assert DocumentFile.objects.get(document=after).extraction_status == ExtractionStatus.DONE
    assert list(search.search_documents(alice, "wartungsvertrag").documents) == [after]


def test_a_timed_out_child_is_killed_and_reaped(tmp_path, settings):
    first = child_pid(tmp_path)
    settings.EXTRACTION_TIMEOUT_SECONDS = 1
    assert run(tmp_path, "hang.txt").error == "timed out after 1 s"
    assert gone(first)
    assert child_pid(tmp_path) != first


def test_a_child_that_exceeds_memory_is_replaced(tmp_path, settings):
    settings.EXTRACTION_MEMORY_MB = 300
    first = child_pid(tmp_path)
    outcome = run(tmp_path, "hog.txt")
    assert outcome.status == ExtractionStatus.FAILED and "memory limit" in outcome.error
    assert gone(first)
    assert child_pid(tmp_path) != first
    assert run(tmp_path, "after.txt", b"still extracted").text == "still extracted"


def test_a_child_that_crashes_is_replaced_and_the_reason_recorded(tmp_path, monkeypatch):
    first = child_pid(tmp_path)
    outcome = run(tmp_path, "crash.txt")
    assert outcome.status == ExtractionStatus.FAILED and outcome.error == "extractor crashed: killed by SIGKILL"
    assert gone(first)
    assert run(tmp_path, "note.txt", b"after the crash").text == "after the crash"


def test_a_child_is_recycled_after_n_files(tmp_path, settings):
    settings.EXTRACTION_CHILD_MAX_FILES = 2
    pids = [child_pid(tmp_path) for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert gone(pids[0]) and gone(pids[2])


def test_a_child_is_recycled_after_m_megabytes_of_input(tmp_path, settings):
    settings.EXTRACTION_CHILD_MAX_INPUT_MB = 1
    first = child_pid(tmp_path)
    assert run(tmp_path, "big.txt", b"word " * 250_000).status == ExtractionStatus.DONE  # 1.25 MB in all
    assert gone(first)
    assert child_pid(tmp_path) != first


def test_the_cpu_limit_holds_per_file_in_a_reused_child(tmp_path, settings):
    """RLIMIT_CPU counts a whole process: three files of 0.7 CPU seconds under a
    limit of 1 s each pass in one child (2.1 s in all); a file that needs more
    than its own allowance is killed by the kernel, and only that child."""
    settings.EXTRACTION_CPU_SECONDS = 1
    first = child_pid(tmp_path)
    for _ in range(3):
        assert run(tmp_path, "burn-0.7.txt").text == "burnt"
    assert child_pid(tmp_path) == first
    outcome = run(tmp_path, "burn-30.txt")
    assert outcome.error == "extractor crashed: killed by SIGXCPU (CPU time limit)"
    assert gone(first)
    assert child_pid(tmp_path) != first


def test_closing_the_pool_leaves_no_process_and_no_zombie(tmp_path):
    first = child_pid(tmp_path)
    extraction_pool.pool.close()
    assert gone(first) and extraction_pool.pool.pid is None
