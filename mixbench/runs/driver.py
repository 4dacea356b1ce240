"""The driver: run a run directory's planned cells through an executor, resumably.

Every command that runs cells (``bench``, ``sweep``) plans its cells and calls `drive`, so
resume, executors, parallelism, interrupts, progress and process repeats live here once:

* **Rows.** Each finished cell's row is appended (fsynced) to ``results.jsonl`` as it
  arrives (a training cell's curves to ``curves/<key>.json``), so a run killed at any
  moment keeps every finished cell. A resumed run runs exactly the cells with no row.
* **Process repeats.** A cell whose settings ask for ``processes`` R > 1 becomes R jobs,
  each run in a fresh worker process, round-robin over the cells in an order shuffled by a
  recorded seed (``mixbench.runs.repeats``). Each process's row goes to ``processes.jsonl``
  when it arrives; when the cell's last process is in, the combined row goes to
  ``results.jsonl``. A resumed run keeps the processes already measured and runs the rest;
  a failed process ends its cell (the rest are not run).
* **Interrupts.** Ctrl-C finishes the cells in flight and starts no more; a second Ctrl-C,
  or SIGTERM, abandons them (exit 130 / 143). The manifest says ``interrupted`` and
  every finished row is kept. ``kill -9`` loses at most the cells in flight.
* **Fairness.** A timing cell runs alone (``mixbench.runs.executors.can_start``).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mixbench.errors import UsageError
from mixbench.runs.cell_kinds import cell_kind
from mixbench.runs.repeats import combine_processes, interleaved, process_key, split_process_key
from mixbench.runs.rows import utc_now
from mixbench.runs.store import RunDir, append_row, read_rows

PROCESSES_FILE = "processes.jsonl"


@dataclass(frozen=True)
class PlannedCell:
    """A cell to run, with how to run it and which part of the plan asked for it."""

    cell: Any  # mixbench.runs.cells.Cell
    settings: Mapping[str, Any]
    timeout: float | None
    origin: str

    @property
    def processes(self) -> int:
        return int(self.settings.get("processes") or 1)


class Tally:
    """Counts by status, and what the progress display shows."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []

    def add(self, row: Mapping[str, Any], label: str) -> None:
        self.done += 1
        status = str(row.get("status"))
        self.counts[status] = self.counts.get(status, 0) + 1
        if status not in ("ok", "skipped"):
            self.failures.append(f"{label}: {status}: {row.get('reason')}")

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.counts.items() if s not in ("ok", "skipped"))


@dataclass
class Outcome:
    """How a drive ended: ``complete``, ``interrupted`` (by which signal) or ``failed``."""

    status: str
    tally: Tally
    signal_name: str | None = None

    @property
    def exit_code(self) -> int:
        if self.status != "interrupted":
            return 0
        return 143 if self.signal_name == "SIGTERM" else 130


def partial_processes(run: RunDir) -> dict[str, dict[int, dict[str, Any]]]:
    """Process rows already measured, by cell key and process index."""
    path = run.path / PROCESSES_FILE
    found: dict[str, dict[int, dict[str, Any]]] = {}
    if path.exists():
        for row in read_rows(path)[0]:
            key, index = split_process_key(str(row.get("key")))
            found.setdefault(key, {})[index] = row
    return found


def drive(
    todo: Sequence[PlannedCell],
    run: RunDir,
    *,
    total: int,
    executor_name: str,
    executor_options: Mapping[str, Any],
    max_parallel: int,
    quiet: bool,
    label: str,
    resumed: bool,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    order_seed: int | None = None,
    probe_quick: bool = False,
) -> Outcome:
    """Run ``todo`` (the cells of ``run`` with no row yet; ``total`` cells in all) and record
    this session in the manifest. Raises ``UsageError`` (the run directory removed if it
    holds nothing) when the executor refuses the cells."""
    from rich.console import Console

    from mixbench.runs.executors import Interrupted, StopRequest, create_executor, run_jobs

    console = Console(stderr=True, highlight=False, soft_wrap=True)

    def say(text: str) -> None:
        if not quiet:
            console.print(text, markup=False)

    seed = random.SystemRandom().randrange(2**31) if order_seed is None else order_seed
    manifest = run.read_manifest()
    session = {
        "started_at": utc_now(),
        "command": ["mixbench", *sys.argv[1:]],
        "executor": executor_name,
        "max_parallel": max_parallel,
        "cells": len(todo),
        "order_seed": seed,
        "host": os.uname().nodename if hasattr(os, "uname") else None,
    }
    sessions = [*manifest.get("sessions", []), session]
    manifest = run.update_manifest(status="running", ended_at=None, sessions=sessions)
    tally = Tally(total, total - len(todo))
    outcome = Outcome("failed", tally)
    say(
        f"run directory: {run.path}  ({len(todo)} of {total} cells to run, "
        f"executor {executor_name}, max parallel {max_parallel})"
    )
    executor = None

    def on_stop(stop: StopRequest) -> None:
        if stop.level == 1:
            console.print(
                f"{stop.signal_name}: finishing the cells in flight; press Ctrl-C "
                "again to abandon them",
                markup=False,
            )

    stop = StopRequest(on_stop)
    try:
        with stop.installed():
            if not todo:
                say(f"nothing to run: all {total} cells have rows")
                outcome.status = "complete"
                return outcome
            executor = create_executor(
                executor_name,
                max_parallel=max_parallel,
                run_dir=str(run.path),
                options=executor_options,
            )
            repeated = [p for p in todo if p.processes > 1]
            if repeated and not getattr(executor, "fresh_processes", False):
                raise UsageError(
                    f"executor {executor_name!r} cannot run each repeat in a fresh process; "
                    f"use --processes 1, or {_fresh_process_executors()}"
                )
            check = getattr(executor, "check", None)
            if callable(check):  # cells this executor can never run: refused before any runs
                check([_job(p, run.path.name, {}, 1) for p in todo])
            probes = _probes(todo, executor, manifest.get("probes") or {}, say, probe_quick)
            if probes:
                manifest = run.update_manifest(probes=probes)
            partial = partial_processes(run)
            by_key = {p.cell.key: p for p in todo}
            timed = any(_job(p, run.path.name, {}, 1).exclusive for p in todo)
            order = interleaved(
                {p.cell.key: p.processes for p in todo},
                seed if timed else None,
                {k: set(v) for k, v in partial.items()},
            )
            jobs = [_job(by_key[k], run.path.name, probes, i) for k, i in order]
            collected = {k: dict(partial.get(k, {})) for k in by_key}
            ended: set[str] = set()
            with _progress(console, tally, executor, quiet, label) as refresh:

                def complete(key: str, curves: Any) -> None:
                    """Write the cell's row once its processes are in (or one failed)."""
                    planned, have = by_key[key], collected[key]
                    rows = [have[i] for i in sorted(have)]
                    failed = any(r.get("status") != "ok" for r in rows)
                    if key in ended or (len(rows) < planned.processes and not failed):
                        return
                    if planned.processes > 1:
                        row = {**combine_processes(rows, planned=planned.processes), "key": key}
                    else:
                        row = rows[0]
                    with stop.writing():
                        row = run.append_row(row, curves)
                    ended.add(key)
                    tally.add(row, planned.cell.label())
                    if on_row is not None:
                        on_row(row)
                    refresh()

                for key in list(partial):  # killed after its last process, before its row
                    if key in by_key:
                        complete(key, None)

                def finished(done: Any) -> None:
                    key, index = split_process_key(done.job.key)
                    if by_key[key].processes > 1:
                        with stop.writing():
                            append_row(run.path / PROCESSES_FILE, done.row)
                    collected[key][index] = done.row
                    complete(key, done.curves)

                left = run_jobs(
                    jobs,
                    executor,
                    max_parallel=max_parallel,
                    on_finished=finished,
                    stop=stop,
                    on_submit=lambda _job: refresh(),
                    on_tick=refresh,
                    skip=lambda job: split_process_key(job.key)[0] in ended,
                )
            outcome.status = "interrupted" if left else "complete"
    except Interrupted:
        outcome.status = "interrupted"
    except UsageError:
        if not resumed and not run.results_path.exists():
            import shutil

            shutil.rmtree(run.path)  # refused before any cell ran: leave no empty run behind
        raise
    finally:
        if executor is not None:
            executor.close(cancel=outcome.status != "complete")
        if run.path.exists():
            run.update_manifest(status=outcome.status, ended_at=utc_now(), counts=_all_counts(run))
    outcome.signal_name = stop.signal_name
    return outcome


def _fresh_process_executors() -> str:
    """The registered executors whose factory declares ``fresh_processes``, as advice: the
    driver names no executor of its own."""
    from mixbench.core.plugin_loader import get_registry

    names = [
        entry.name
        for entry in get_registry().entries("executor")
        if getattr(entry.factory, "fresh_processes", False)
    ]
    if not names:
        return "install an executor that can (none registered does)"
    return "an executor that can (--executor " + " or ".join(names) + ")"


def _probe_key(config: Mapping[str, Any]) -> str:
    return f"{config.get('device')}/{config.get('dtype')}/{config.get('threads')}"


def _probes(
    todo: Sequence[PlannedCell],
    executor: Any,
    recorded: Mapping[str, Any],
    say: Callable[[str], None],
    quick: bool,
) -> dict[str, Any]:
    """The machine's matmul and bandwidth probes, once per (device, dtype, threads) of the
    bench cells; kept in the manifest so a resumed run reuses the first session's numbers.
    Cells on a remote cluster get none (a probe of this machine would not describe theirs)."""
    probes = dict(recorded)
    timed = [p for p in todo if cell_kind(p.cell.kind).timing]
    wanted = {_probe_key(p.cell.config): p.cell.config for p in timed}
    missing = {k: c for k, c in wanted.items() if k not in probes}
    if not missing or not getattr(executor, "local", True):
        return probes
    from mixbench.measure.probes import run_probes

    for key, config in missing.items():
        say(f"probing this machine's matmul peak and bandwidth ({key})...")
        probes[key] = run_probes(
            str(config.get("device")), str(config.get("dtype")), config.get("threads"), quick
        )
    return probes


def _job(planned: PlannedCell, run_id: str, probes: Mapping[str, Any], index: int) -> Any:
    from mixbench.runs.executors import Job

    settings = dict(planned.settings)
    kind = cell_kind(planned.cell.kind)
    if kind.timing:
        settings["probe"] = probes.get(_probe_key(planned.cell.config))
    repeated = planned.processes > 1
    label = planned.cell.label()
    return Job(
        key=process_key(planned.cell.key, index) if repeated else planned.cell.key,
        kind=planned.cell.kind,
        config=dict(planned.cell.config),
        settings={**settings, "process": index} if repeated else settings,
        run_id=run_id,
        timeout=planned.timeout,
        label=f"{label} process {index}/{planned.processes}" if repeated else label,
        runner=kind.runner,
        fresh_process=repeated,
    )


def _all_counts(run: RunDir) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in run.rows():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


@contextlib.contextmanager
def _progress(
    console: Any, tally: Tally, executor: Any, quiet: bool, label: str
) -> Iterator[Callable[[], None]]:
    """One bar for the whole run (done/total, failures, ETA) and the executor's status."""
    if quiet:
        yield lambda: None
        return
    from rich.console import Group
    from rich.live import Live
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task(label, total=tally.total, completed=tally.done, failed=0)
    status = Text("")
    with Live(Group(progress, status), console=console, refresh_per_second=4, transient=True):

        def refresh() -> None:
            progress.update(task, completed=tally.done, failed=tally.failed)
            status.plain = f"  {executor.status()}"

        refresh()
        yield refresh


def resume_hint(outcome: Outcome, run: RunDir, command: str) -> str:
    """What an interrupted run prints: how far it got and the command that resumes it."""
    return (
        f"interrupted ({outcome.signal_name}): {outcome.tally.done} of {outcome.tally.total} "
        f"cells have rows in {run.path}. Resume with:\n  {command}"
    )


# -- what every command that runs cells shares before it drives -----------------------------

LOCK_FILE = ".mixbench.lock"
RESERVED_EXECUTOR_OPTIONS = ("max_parallel", "run_dir")


def executor_options(
    items: Sequence[str] | None, name: str, *, address: str | None = None
) -> dict[str, str]:
    """``--executor-option KEY=VALUE`` items, checked against executor ``name``'s accepted
    options (from the name cache: before anything is planned). ``address`` is the
    ``--ray-address`` alias of ``--executor-option address=...``."""
    from mixbench.core.namecache import NameCheck, known_names
    from mixbench.core.registry import parse_key_values
    from mixbench.errors import suggest

    options = parse_key_values(items, "--executor-option")
    if address is not None:
        if "address" in options:
            raise UsageError("give --ray-address or --executor-option address=..., not both")
        options["address"] = address
    for reserved in RESERVED_EXECUTOR_OPTIONS:
        if reserved in options:
            raise UsageError(f"--executor-option {reserved}: use the command's own option")
    try:
        accepted, var_kwargs = NameCheck(known_names()).require("executor", name)
    except ValueError as exc:
        raise UsageError(f"--executor: {exc}") from None
    own = [key for key in accepted if key not in RESERVED_EXECUTOR_OPTIONS]
    for key in options:
        if key not in accepted and not var_kwargs:
            close = suggest(key, own)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(
                f"--executor-option {key}: executor {name!r} has no such option.{hint} "
                f"Accepted: {', '.join(own) or '(none)'}."
            )
    return options


@contextlib.contextmanager
def locked(path: Any) -> Iterator[None]:
    """Hold an exclusive lock on a run directory (released by the OS even on kill -9), so
    two commands never write one run directory."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, one run per directory by hand
        yield
        return
    handle = open(path / LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"{path} is being written by another mixbench command; wait for it or stop it"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()
