"""The ``inline`` executor: cells run one after another in the sweep's own process.

For developing a plugin or debugging a cell: a breakpoint in a mixer works, and nothing is
spawned. It isolates nothing, which is why it is not the default: a hard crash in a cell
ends the sweep, and memory a cell measures can include what earlier cells left behind. A
per-cell timeout is enforced with SIGALRM when the sweep runs in the main thread of a POSIX
process (elsewhere it is not enforced, and ``status`` says so).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from types import FrameType

import mixbench
from mixbench.executors import Finished, Job, call_runner, failure_row, finished_from


class CellTimeout(BaseException):
    """Raised by SIGALRM inside a cell; a BaseException so the runner cannot swallow it."""


def _can_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    if not seconds or not _can_alarm():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise CellTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class InlineExecutor:
    """Runs each submitted cell, in order, when the driver waits for results."""

    name = "inline"
    slots = 1  # one process, one cell: --max-parallel has no effect here

    def __init__(self, max_parallel: int = 1, run_dir: str | None = None) -> None:
        self._queue: deque[Job] = deque()
        self._current: Job | None = None
        self._done = 0

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def wait(self, timeout: float) -> list[Finished]:
        if not self._queue:
            time.sleep(min(timeout, 0.05))
            return []
        job = self._queue.popleft()
        self._current = job
        start = time.monotonic()
        try:
            with _alarm(job.timeout):
                result = call_runner(job.runner, job.payload())
            finished = finished_from(job, result)
        except CellTimeout:
            reason = f"no result within the {job.timeout:g} s timeout"
            finished = Finished(job, self._failure(job, "timeout", reason, start))
        except Exception as exc:  # the harness itself failed on this cell
            finished = Finished(
                job, self._failure(job, "error", f"{type(exc).__name__}: {exc}", start)
            )
        finally:
            self._current = None
        self._done += 1
        return [finished]

    def _failure(self, job: Job, status: str, reason: str, start: float) -> dict[str, object]:
        return failure_row(
            job, status, reason, executor=self.name, duration_s=time.monotonic() - start
        )

    def status(self) -> str:
        note = "" if _can_alarm() else " (timeouts not enforced)"
        if self._current is not None:
            return f"inline: running {self._current.label or self._current.key}{note}"
        return f"inline: {self._done} done{note}"

    def close(self, *, cancel: bool) -> None:
        self._queue.clear()


@mixbench.hookimpl
def register_executors(register):  # type: ignore[no-untyped-def]
    register(
        "inline",
        InlineExecutor,
        description="in the sweep's own process, one cell at a time (development, debugging)",
        isolation="none",
    )
