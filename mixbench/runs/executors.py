"""Executors: where a sweep's cells run, behind one small protocol.

A sweep is a list of `Job`s (a cell plus how to run it). The driver, `run_jobs`, hands jobs
to an executor, takes rows back as cells finish, and enforces the two rules that no executor
can be trusted to keep on its own:

* never more than ``max_parallel`` cells in flight (nor more than the executor's ``slots``);
* a timing cell (``bench``) runs alone: it is submitted only when nothing else is running,
  and nothing is submitted while it runs. A latency measured beside another busy cell
  measures the neighbour, not the mixer. Training cells may run side by side.

Executors are plugins (hook ``register_executors``): ``inline``, ``subprocess`` and ``ray``
ship with mixbench, and a third party adds, say, a Slurm executor by implementing `Executor`
in its own package. An executor never writes results: it returns one `Finished` per job, and
the driver appends the row (and training curves) to the run directory, so rows stream into
one place whether the cell ran in this process, in a child process or on another machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol, runtime_checkable

from mixbench.runs.rows import row_skeleton

DEFAULT_RUNNER = "mixbench.runs.executors:run_job"
POLL_S = 0.2  # how long the driver waits for a result before it looks at signals again


@dataclass(frozen=True)
class Job:
    """One cell to run, as plain data an executor can ship to another process or machine.

    ``config`` is what is measured (it makes ``key``); ``settings`` is how (a bench cell's
    timing budget), outside the key. ``runner`` names the function that runs the payload,
    ``module:function``, so an executor needs nothing but an import to run any kind of cell.
    ``fresh_process`` asks for a process that has run no other job (a process repeat of a
    timing cell); only executors whose ``fresh_processes`` attribute is true are given such
    jobs.
    """

    key: str
    kind: str
    config: Mapping[str, Any]
    settings: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    timeout: float | None = None
    label: str = ""
    runner: str = DEFAULT_RUNNER
    fresh_process: bool = False  # run in a process that has run nothing else (see below)

    @property
    def exclusive(self) -> bool:
        """Timing cells must have the machine (and device) to themselves."""
        from mixbench.runs.cell_kinds import runs_alone

        return runs_alone(self.kind)

    @property
    def device(self) -> str:
        return str(self.config.get("device") or "cpu")

    @property
    def threads(self) -> int:
        """CPU threads the cell uses: its ``threads`` setting, else one."""
        value = self.config.get("threads")
        return int(value) if isinstance(value, int) and value > 0 else 1

    def payload(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "config": dict(self.config),
            "settings": dict(self.settings),
            "run_id": self.run_id,
        }


@dataclass
class Finished:
    """What came back for one job: its row, a training cell's curves, and whether the
    executor *lost* the cell (worker died, cancelled) rather than the cell failing."""

    job: Job
    row: dict[str, Any]
    curves: dict[str, Any] | None = None
    lost: bool = False


@runtime_checkable
class Executor(Protocol):
    """What the driver needs from an executor.

    A factory registered with ``register_executors`` is called as ``factory(max_parallel=N,
    run_dir=PATH, **options)`` (``run_dir`` is where logs may go; results are the driver's
    to write). An executor may also offer ``check(jobs)``, raising ``UsageError`` for cells
    it can never run, before anything runs, and a true ``fresh_processes`` attribute to say
    it runs each ``fresh_process`` job in a process that has run nothing else (without it,
    process repeats are refused). The driver calls `submit` for at most
    ``min(max_parallel, slots)`` jobs at a time; `wait` returns the jobs that finished (each
    submitted job exactly once, a failure as a row with a status); `close` ends everything,
    cancelling jobs in flight if asked.
    """

    name: str
    slots: int

    def submit(self, job: Job) -> None: ...

    def wait(self, timeout: float) -> list[Finished]: ...

    def status(self) -> str: ...

    def close(self, *, cancel: bool) -> None: ...


# -- running one cell, wherever it runs ------------------------------------------------------


def run_job(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run one cell in this process and return ``{"row", "curves"}``.

    The runners turn every failure of the cell itself into a row with a status, so this
    raises only when the harness is broken (which the executor reports as an error row).
    """
    from mixbench.core.plugin_loader import import_string
    from mixbench.runs.cell_kinds import cell_kinds

    kind = cell_kinds().get(payload["kind"])
    if kind is None:
        raise ValueError(f"no runner for cells of kind {payload['kind']!r}")
    result: dict[str, Any] = import_string(kind.runner)(payload)
    return result


def call_runner(runner: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Import ``module:function`` and call it on the payload (used in workers too)."""
    from mixbench.core.plugin_loader import import_string

    result = import_string(runner)(payload)
    if not isinstance(result, Mapping) or not isinstance(result.get("row"), Mapping):
        raise TypeError(f"runner {runner} returned {type(result).__name__}, not {{'row': ...}}")
    if not (payload.get("settings") or {}).get("process"):
        return dict(result)
    row = dict(result["row"])  # a process repeat: record which process measured it
    row["runtime"] = {**(row.get("runtime") or {}), "pid": os.getpid()}
    return {**result, "row": row}


def finished_from(job: Job, result: Mapping[str, Any]) -> Finished:
    """A runner's result as a `Finished`, the row's key pinned to the job's key."""
    row = dict(result["row"])
    row["key"] = job.key  # resume skips by key: a row must never carry another cell's key
    row.setdefault("run_id", job.run_id)
    return Finished(job, row, result.get("curves") or None)


def failure_row(
    job: Job, status: str, reason: str, *, executor: str, duration_s: float | None = None
) -> dict[str, Any]:
    """The row of a cell that produced none itself (its worker died, it timed out)."""
    row = row_skeleton(job.kind, job.key, job.config, job.run_id)
    row.update(
        status=status,
        reason=reason,
        runtime={"executor": executor},
        duration_s=None if duration_s is None else round(duration_s, 3),
    )
    return row


def create_executor(
    name: str, *, max_parallel: int, run_dir: str | None, options: Mapping[str, Any]
) -> Executor:
    """A registered executor, its options validated against the factory's signature."""
    from mixbench.core.plugin_loader import get_registry

    entry = get_registry().get("executor", name)
    validated = entry.validate_options(
        {"max_parallel": max_parallel, "run_dir": run_dir, **options}
    )
    executor = entry.factory(**validated)
    if not isinstance(executor, Executor):
        from mixbench.errors import UsageError

        raise UsageError(
            f"executor {name!r} (plugin {entry.plugin!r}) returned {type(executor).__name__}, "
            "which lacks the mixbench.runs.executors.Executor methods"
        )
    return executor


# -- interruption ----------------------------------------------------------------------------


class Interrupted(BaseException):
    """Raised in the driver to abandon the cells in flight (second Ctrl-C, or SIGTERM).

    A BaseException, so the runners' ``except Exception`` (which turns a cell's failure
    into a row) cannot swallow it when a cell runs in this process.
    """


class StopRequest:
    """What Ctrl-C and SIGTERM asked for.

    Level 1 (the first Ctrl-C): submit nothing more, let the cells in flight finish.
    Level 2 (a second Ctrl-C, or SIGTERM as sent by schedulers before a kill): abandon the
    cells in flight now. The raise is held back while a row is being written, so a signal
    never tears a line of the results file.
    """

    def __init__(self, on_request: Callable[[StopRequest], None] | None = None) -> None:
        self.level = 0
        self.signal_name: str | None = None
        self._on_request = on_request
        self._writing = 0
        self._deferred = False

    @property
    def requested(self) -> bool:
        return self.level > 0

    def request(self, signal_name: str, *, abandon: bool) -> None:
        self.signal_name = signal_name
        self.level = 2 if abandon else self.level + 1
        if self._on_request is not None:
            self._on_request(self)
        if self.level >= 2:
            if self._writing:
                self._deferred = True
            else:
                raise Interrupted(signal_name)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.request(signal.Signals(signum).name, abandon=signum == signal.SIGTERM)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold an abandoning signal back until the block (a row being written) is done."""
        self._writing += 1
        try:
            yield
        finally:
            self._writing -= 1
            if not self._writing and self._deferred:
                self._deferred = False
                raise Interrupted(self.signal_name or "signal")

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Route SIGINT and SIGTERM here for the duration (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# -- the driver ------------------------------------------------------------------------------


def can_start(job: Job, running: Mapping[str, Job], limit: int) -> bool:
    """The fairness rule: a timing cell starts only on an idle executor and runs alone."""
    if job.exclusive:
        return not running
    return len(running) < limit and not any(other.exclusive for other in running.values())


def run_jobs(
    jobs: Sequence[Job],
    executor: Executor,
    *,
    max_parallel: int,
    on_finished: Callable[[Finished], None],
    stop: StopRequest,
    on_submit: Callable[[Job], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    skip: Callable[[Job], bool] | None = None,
) -> list[Job]:
    """Run ``jobs`` in order under the fairness rule; return the jobs never finished.

    Jobs start in the order given; a timing job waits until the executor is idle. After a
    stop request nothing new starts; the cells in flight either finish (level 1) or, when
    `Interrupted` is raised, are abandoned by the caller closing the executor. A lost cell
    (its worker died) during a stop is dropped, not recorded: the stop killed it, not the
    cell, so a resume runs it again. A job for which ``skip`` says true when its turn comes
    is dropped (the rest of a cell whose first process failed).
    """
    limit = max(1, min(max_parallel, executor.slots))
    pending: deque[Job] = deque(jobs)
    running: dict[str, Job] = {}
    while pending or running:
        while not stop.requested and pending and can_start(pending[0], running, limit):
            job = pending.popleft()
            if skip is not None and skip(job):
                continue
            executor.submit(job)
            running[job.key] = job
            if on_submit is not None:
                on_submit(job)
        if not running:
            break  # stopped with nothing in flight
        for done in executor.wait(POLL_S):
            if running.pop(done.job.key, None) is None:
                continue  # not ours, or already reported: never record a cell twice
            if done.lost and stop.requested:
                pending.appendleft(done.job)
                continue
            on_finished(done)
        if on_tick is not None:
            on_tick()
    return list(pending) + list(running.values())
