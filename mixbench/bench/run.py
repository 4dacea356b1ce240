"""A bench run: a run directory for a bench plan, driven by ``mixbench.runs.driver``.

``start_bench`` creates the run directory (or, resuming, checks that the recorded options
still plan the same cells) and returns what `drive` needs; the cells then run like any
other command's, with resume, executors, interrupts and process repeats. The manifest
records the typed options (``bench_options``), so ``--resume RUN_DIR`` replans the very
cells of the first session without the user repeating the command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixbench.bench.options import BenchOptions, BenchPlan, plan_bench
from mixbench.errors import UsageError
from mixbench.runs.store import check_writable

LOAD_WINDOW_S = 1.0


@dataclass
class BenchRun:
    """A run directory ready to drive: its plan and the cells that still have no row."""

    run: Any  # mixbench.runs.store.RunDir
    plan: BenchPlan
    todo: list[Any]  # mixbench.runs.driver.PlannedCell
    resumed: bool
    busy_cores: float | None  # sampled just before the run (None: not measurable here)
    cores: int


def cells_hash(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def recorded_options(run_dir: Path) -> BenchOptions:
    """The options a bench run directory was started with."""
    from mixbench.runs.store import recorded_options as recorded

    values = dict(recorded(run_dir, "bench"))
    for name in ("mixers", "optimizers", "tokens", "image_sizes"):
        values[name] = tuple(values.get(name) or ())
    return BenchOptions(**values)


def start_bench(options: BenchOptions, *, out: Path, resume: Path | None) -> BenchRun:
    """Plan the cells and create (or reopen) the run directory; run nothing."""
    from mixbench.runs.driver import PlannedCell
    from mixbench.runs.environment import busy_cores, collect_environment, usable_cores
    from mixbench.runs.rows import SCHEMA_VERSION, utc_now
    from mixbench.runs.store import RunDir

    if resume is not None:
        options = recorded_options(resume)
    plan = plan_bench(options)  # every option and name checked before anything is created
    keys = [cell.key for cell in plan.cells]
    if resume is not None:
        run = RunDir(resume)
        if run.read_manifest().get("cells_hash") != cells_hash(keys):
            raise UsageError(
                f"--resume {resume}: its recorded options now plan other cells (a plugin, "
                "an option default or the device changed); start a new run"
            )
        done = run.done_keys()
    else:
        check_writable(out)
        run = RunDir.create(out, "bench")
        done = set()
        run.write_manifest(
            {
                "schema": SCHEMA_VERSION,
                "kind": "bench",
                "run_id": run.path.name,
                "command": ["mixbench", *sys.argv[1:]],
                "config": plan.options,
                "bench_options": dataclasses.asdict(options),
                "environment": collect_environment(plan.fixed["device"]),
                "cells": len(plan.cells),
                "cells_hash": cells_hash(keys),
                "started_at": utc_now(),
                "ended_at": None,
                "status": "running",
                "sessions": [],
            }
        )
    busy = busy_cores(LOAD_WINDOW_S)
    environment = dict(run.read_manifest().get("environment") or {})
    environment["busy_cores_at_start"] = busy
    run.update_manifest(environment=environment)
    todo = [
        PlannedCell(cell, dict(plan.settings), options.timeout, "bench")
        for cell in plan.cells
        if cell.key not in done
    ]
    return BenchRun(run, plan, todo, resume is not None, busy, usable_cores())


def load_warning(bench: BenchRun) -> str | None:
    """A warning when other processes keep a core or more busy right now, saying what was
    measured (or that the 1-minute load average was all there was to go on)."""
    if bench.busy_cores is not None:
        if bench.busy_cores < 0.5:
            return None
        return (
            f"other processes kept {bench.busy_cores:.1f} of {bench.cores} cores busy over "
            f"the last {LOAD_WINDOW_S:g} s: latencies will be inflated and noisy. Compare "
            "cells within one run, or rerun on a quiet machine."
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is None or load < 1.0:
        return None
    return (
        f"1-minute load average {load:.2f} on {bench.cores} cores (recent work, possibly "
        "finished already; this system offers no instantaneous measure): latencies may be "
        "inflated."
    )


def run_bench(
    options: BenchOptions,
    *,
    out: Path,
    resume: Path | None = None,
    executor: str | None = None,
    executor_options: Mapping[str, Any] | None = None,
    max_parallel: int = 1,
    quiet: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[BenchRun], None] | None = None,
) -> tuple[BenchRun, Any]:
    """Plan, create (or reopen, ``resume``) the run directory and drive the cells; returns
    the run and the driver's `Outcome` (``status`` says whether it was interrupted).
    ``on_start`` sees the run before the first cell (the command prints its warnings).
    ``executor`` defaults to the one registered as bench's default (``default_for``)."""
    from mixbench.core.plugin_loader import get_registry
    from mixbench.runs.driver import drive, locked

    if executor is None:
        executor = get_registry().default("executor", "bench", "--executor")

    with contextlib.ExitStack() as stack:
        if resume is not None:  # no other command adds rows while the missing cells are read
            stack.enter_context(locked(resume))
        bench = start_bench(options, out=out, resume=resume)
        if resume is None:
            stack.enter_context(locked(bench.run.path))
        if on_start is not None:
            on_start(bench)
        outcome = drive(
            bench.todo,
            bench.run,
            total=len(bench.plan.cells),
            executor_name=executor,
            executor_options=executor_options or {},
            max_parallel=max_parallel,
            quiet=quiet,
            label="bench",
            resumed=bench.resumed,
            on_row=on_row,
            probe_quick=bool(bench.plan.options.get("quick")),
        )
    return bench, outcome
