"""Reusable sandboxed extractor processes: one long-lived child per worker
process instead of a process per file (``archive.extraction`` uses it).

The child (``python -m archive.extractors --serve``) sets its memory limit
(RLIMIT_AS) once and, before each file, its CPU limit to the CPU it has used so
far plus the per-file allowance, so the limit is per file although RLIMIT_CPU
counts per process. Requests and answers are framed on the child's stdin and
stdout: a 4-byte big-endian length, then JSON. The file is passed by path (the
store is content-addressed files); the child reads it itself.

The parent enforces the per-file wall-clock deadline and the answer's size.
A child is killed and replaced on a timeout, a crash, an answer too large or
malformed, after a file that exhausted its memory, after ``max_files`` files or
``max_input_bytes`` of input — so a hostile file costs at most one child.
The child exits by itself when its stdin closes (the worker ended), and
``close()`` (also at interpreter exit) reaps it: no zombies.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import struct
import subprocess
import time
from typing import Any

_HEADER = struct.Struct(">I")
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_STDERR_TAIL = 4096
# A new child's start (the interpreter, the extractors' imports) is not the first file's time.
START_SECONDS = 10


class ChildFailed(Exception):
    """The child gave no usable answer; the message says why (for the file's error)."""


def encode_frame(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode()
    return _HEADER.pack(len(body)) + body


class Child:
    """One extractor process and its pipes."""

    def __init__(self, key: tuple[tuple[str, ...], int], env: dict[str, str], cwd: str) -> None:
        self.key = key  # the command, and the memory limit it was started for
        self.proc = subprocess.Popen(
            list(key[0]), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
        )
        self.files = 0
        self.input_bytes = 0
        self.stderr_tail = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request, wait for its answer until the deadline."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(encode_frame(request))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ChildFailed(self._crash_reason()) from None
        deadline = time.monotonic() + timeout + (START_SECONDS if self.files <= 1 else 0)
        header = self._read(_HEADER.size, deadline, timeout)
        (length,) = _HEADER.unpack(header)
        if length > MAX_ANSWER_BYTES:
            self.kill()
            raise ChildFailed(f"extractor answered {length} bytes, more than the limit")
        try:
            answer = json.loads(self._read(length, deadline, timeout))
        except ValueError:
            self.kill()
            raise ChildFailed("extractor returned no result") from None
        if not isinstance(answer, dict) or "status" not in answer:
            self.kill()
            raise ChildFailed("extractor returned no result")
        return answer

    def _read(self, size: int, deadline: float, timeout: float) -> bytes:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out, err = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        data = bytearray()
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise ChildFailed(f"timed out after {timeout:g} s")
            ready, _, _ = select.select([out, err], [], [], left)
            if err in ready:
                self.stderr_tail = (self.stderr_tail + os.read(err, 65536))[-_STDERR_TAIL:]
            if out in ready:
                chunk = os.read(out, min(size - len(data), 1 << 20))
                if not chunk:
                    raise ChildFailed(self._crash_reason())
                data += chunk
        return bytes(data)

    def _crash_reason(self) -> str:
        assert self.proc.stderr is not None
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        self.stderr_tail = (self.stderr_tail + self.proc.stderr.read())[-_STDERR_TAIL:]
        return f"extractor crashed: {exit_reason(self.proc.returncode, self.stderr_tail)}"[:1000]

    def kill(self) -> None:
        """SIGKILL and reap (nothing lingers, no zombie)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def close(self) -> None:
        """End politely (stdin closed: the child's loop ends), then kill if it hangs."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


def exit_reason(returncode: int | None, stderr: bytes) -> str:
    if returncode is not None and returncode < 0:
        reason = f"killed by {signal.Signals(-returncode).name}"
        if -returncode == signal.SIGXCPU:
            reason += " (CPU time limit)"
        return reason
    tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
    reason = f"exit status {returncode}: {tail[0]}"
    if "MemoryError" in reason:
        reason += " (memory limit)"
    return reason


class ExtractorPool:
    """The extractor child of this worker process, reused until it must go."""

    def __init__(self) -> None:
        self.child: Child | None = None
        self.owner = os.getpid()

    def run(
        self,
        request: dict[str, Any],
        *,
        command: list[str],
        env: dict[str, str],
        cwd: str,
        timeout: float,
        max_files: int,
        max_input_bytes: int,
    ) -> dict[str, Any]:
        """The child's answer to one request, or ``{"status": "failed", ...}``."""
        # The memory limit is set once per child: a changed one needs a new child.
        child = self._child((tuple(command), int(request["memory_bytes"])), env, cwd)
        child.files += 1
        child.input_bytes += _size(request.get("path"))
        try:
            answer = child.ask(request, timeout)
        except ChildFailed as exc:
            child.kill()
            self.child = None
            return {"status": "failed", "error": str(exc)}
        if answer.pop("recycle", False) or child.files >= max_files or child.input_bytes >= max_input_bytes:
            self.close()
        return answer

    def _child(self, key: tuple[tuple[str, ...], int], env: dict[str, str], cwd: str) -> Child:
        if self.owner != os.getpid():  # a forked worker process: the child is its parent's
            self.child, self.owner = None, os.getpid()
        if self.child is not None and (self.child.proc.poll() is not None or self.child.key != key):
            self.close()
        if self.child is None:
            self.child = Child(key, env, cwd)
        return self.child

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def close(self) -> None:
        child, self.child = self.child, None
        if child is not None and self.owner == os.getpid():
            child.close()


def _size(path: object) -> int:
    try:
        return os.stat(str(path)).st_size
    except OSError:
        return 0


pool = ExtractorPool()
atexit.register(pool.close)
