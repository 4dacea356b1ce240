"""The ``subprocess`` executor (the default): each cell runs in an isolated worker process.

It reuses ``mixbench.runs.worker.IsolatedRunner``: a persistent spawned worker that imports torch
once and runs cells one by one, replaced when a cell kills or hangs it. A segfault, the
out-of-memory killer or a hang in one cell becomes that cell's row (``error``, ``oom``,
``timeout``) and the sweep goes on; memory figures are not inflated by earlier cells.

``max_parallel`` workers at most, each driven by one thread of the sweep process (a thread
waits on its worker's pipe; the work happens in the worker). Workers start lazily, when a
cell needs one, and write their stdout/stderr to ``worker.log`` in the run directory. A job
marked ``fresh_process`` (a process repeat of a timing cell) gets a worker started for it.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

import mixbench
from mixbench.errors import MixbenchError
from mixbench.executors import Finished, Job, failure_row, finished_from

LOG_FILE = "worker.log"


class _Stop:
    """Sentinel on the job queue: the thread closes its worker and ends."""


class SubprocessExecutor:
    """A pool of isolated worker processes, one thread each, fed from one job queue."""

    name = "subprocess"
    fresh_processes = True  # a job marked fresh_process gets a newly started worker

    def __init__(self, max_parallel: int = 1, run_dir: str | None = None) -> None:
        self.slots = max(1, int(max_parallel))
        self._log_path = str(Path(run_dir) / LOG_FILE) if run_dir else None
        self._jobs: queue.Queue[Job | _Stop] = queue.Queue()
        self._results: queue.Queue[Finished | BaseException] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._runners: list[Any] = []
        self._busy: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._closing = False
        self._done = 0

    def submit(self, job: Job) -> None:
        with self._lock:
            idle = len(self._threads) - len(self._busy) - self._jobs.qsize()
        if idle <= 0 and len(self._threads) < self.slots:
            self._start_thread()
        self._jobs.put(job)

    def _start_thread(self) -> None:
        from mixbench.runs.worker import IsolatedRunner

        runner = IsolatedRunner(timeout_s=None, log_path=self._log_path)
        index = len(self._threads)
        thread = threading.Thread(
            target=self._serve, args=(index, runner), name=f"mixbench-executor-{index}", daemon=True
        )
        self._runners.append(runner)
        self._threads.append(thread)
        thread.start()

    def _serve(self, index: int, runner: Any) -> None:
        """One thread: take a job, run it in this thread's worker, report, repeat."""
        from mixbench.runs.worker import WorkerError

        try:
            while True:
                job = self._jobs.get()
                if isinstance(job, _Stop):
                    return
                with self._lock:
                    self._busy[index] = job
                try:
                    self._results.put(self._run(runner, job))
                except WorkerError as exc:
                    if not self._closing:
                        self._results.put(MixbenchError(f"could not start a worker process: {exc}"))
                    return
                finally:
                    with self._lock:
                        self._busy.pop(index, None)
        finally:
            runner.close()

    def _run(self, runner: Any, job: Job) -> Finished:
        from mixbench.runs.worker import describe_exit

        if job.fresh_process:
            runner.close()  # the next exchange starts a worker that has run nothing yet
        # ``exchange`` rather than ``call``: ``call`` folds the outcomes (raised, died, timed
        # out) into one exception, and each becomes a different row here.
        outcome, value = runner.exchange(
            "mixbench.executors:call_runner",
            {"runner": job.runner, "payload": job.payload()},
            job.timeout,
        )
        if outcome == "ok":
            return finished_from(job, value)
        if outcome == "timeout":
            reason = f"no result within the {job.timeout:g} s timeout (worker killed)"
            return Finished(job, failure_row(job, "timeout", reason, executor=self.name))
        if outcome == "died":
            status, reason = describe_exit(value)
            return Finished(job, failure_row(job, status, reason, executor=self.name), lost=True)
        reason = str(value).splitlines()[0]
        return Finished(job, failure_row(job, "error", reason, executor=self.name))

    def wait(self, timeout: float) -> list[Finished]:
        try:
            first = self._results.get(timeout=timeout)
        except queue.Empty:
            return []
        items = [first]
        while True:
            try:
                items.append(self._results.get_nowait())
            except queue.Empty:
                break
        for item in items:
            if isinstance(item, BaseException):
                raise item
        self._done += len(items)
        return items  # type: ignore[return-value]

    def status(self) -> str:
        with self._lock:
            busy = len(self._busy)
        restarts = sum(r.restarts for r in self._runners)
        text = (
            f"subprocess: {len(self._threads)}/{self.slots} workers, {busy} busy, {self._done} done"
        )
        return text + (f", {restarts} restarted" if restarts else "")

    def close(self, *, cancel: bool) -> None:
        self._closing = True
        if cancel:
            _drain(self._jobs)
            # A worker is mid-cell; killing it makes its thread's exchange return "died",
            # which the driver, stopping, drops rather than records.
            for runner in self._runners:
                runner.kill()
        for _ in self._threads:
            self._jobs.put(_Stop())
        for thread in self._threads:
            thread.join(timeout=30)


def _drain(jobs: queue.Queue[Job | _Stop]) -> None:
    while True:
        try:
            jobs.get_nowait()
        except queue.Empty:
            return


@mixbench.hookimpl
def register_executors(register):  # type: ignore[no-untyped-def]
    register(
        "subprocess",
        SubprocessExecutor,
        description="each cell in an isolated worker process (default); crashes become rows",
        isolation="process per worker, replaced after a crash or timeout",
        default_for=("bench",),  # timing cells run isolated unless asked otherwise
    )
