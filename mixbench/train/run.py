"""A training run directory: created for a plan, or reopened to resume one.

``start_train`` plans and checks the cells (nothing trains), then creates the run
directory with a manifest that records the typed options, or, resuming, replans from the
recorded options (or from the ones given, which must mean the same cells) and reopens it.
The cells then go to the one driver as `PlannedCell`s (``planned``), stage by stage
(``mixbench.train.plan``): a row is written once per cell, so a resumed run trains exactly
the cells with no row yet, never one twice.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixbench.errors import UsageError
from mixbench.runs.cells import Cell
from mixbench.runs.rows import SCHEMA_VERSION, utc_now
from mixbench.runs.store import RunDir, check_writable, read_manifest
from mixbench.train.options import TrainOptions
from mixbench.train.plan import TrainPlan, plan_train


@dataclass
class TrainRun:
    """A run directory ready to drive, and its first stage's plan."""

    run: RunDir
    plan: TrainPlan
    resumed: bool


def cells_hash(cells: Sequence[Cell]) -> str:
    """A plan's identity: the set of its first stage's cell keys."""
    return hashlib.sha256("\n".join(sorted(c.key for c in cells)).encode()).hexdigest()[:16]


def recorded_options(run_dir: Path) -> TrainOptions:
    """The options a train run directory was started with."""
    from mixbench.runs.store import recorded_options as recorded

    return TrainOptions.from_json(recorded(run_dir, "train"))


def start_train(options: TrainOptions | None, *, out: Path, resume: Path | None) -> TrainRun:
    """Plan and check the cells, then create (or reopen) the run directory; train nothing.

    Resuming with ``options`` None replans from the recorded options; with options given,
    they must plan exactly the recorded cells (results of different configs never mix).
    """
    if resume is not None:
        recorded = recorded_options(resume)
        plan = plan_train(options or recorded)
        wanted = read_manifest(resume).get("cells_hash")
        if cells_hash(plan.cells) != wanted:
            raise UsageError(
                f"--resume {resume}: these options plan other cells than the run's "
                f"(run {wanted}, now {cells_hash(plan.cells)}); resume with --resume alone to "
                "use the recorded options, or start a new run"
            )
        return TrainRun(RunDir(resume), plan, resumed=True)
    if options is None:
        raise UsageError("give --mixer (and the rest of the grid), or --resume RUN_DIR")
    plan = plan_train(options)
    check_writable(out)
    run = RunDir.create(out, "train")
    run.write_manifest(_manifest(run, plan))
    return TrainRun(run, plan, resumed=False)


def _manifest(run: RunDir, plan: TrainPlan) -> dict[str, Any]:
    from mixbench.runs.environment import collect_environment

    config = dict(plan.cells[0].config) if plan.cells else {}
    shared = {k: config.get(k) for k in ("device", "threads", "steps", "epochs", "preset")}
    return {
        "schema": SCHEMA_VERSION, "kind": "train", "run_id": run.path.name,
        "command": ["mixbench", *sys.argv[1:]],
        "config": {**plan.options.to_json(), **shared},
        "train_options": plan.options.to_json(), "cells_hash": cells_hash(plan.cells),
        "cells": len(plan.cells), "environment": collect_environment(str(config.get("device"))),
        "started_at": utc_now(), "ended_at": None, "status": "running", "sessions": [],
    }  # fmt: skip


def write_rows_once(run: RunDir, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append the rows whose keys have none yet (skipped cells, recorded without running)."""
    done = run.done_keys()
    for row in rows:
        if row["key"] not in done:
            run.append_row(row)


def planned(
    cells: Sequence[Cell],
    done: set[str],
    annotations: Mapping[str, Mapping[str, Any]],
    progress: str = "none",
) -> list[Any]:
    """The cells with no row yet, as the driver takes them, run by `run_train_job`.

    ``settings["row"]`` holds fields the runner adds to the row (a tuned cell's
    ``lr_tuning`` record); ``settings["progress"]`` what the cell prints as it trains.
    """
    from mixbench.runs.driver import PlannedCell

    def settings(key: str) -> dict[str, Any]:
        row = {"row": dict(annotations[key])} if key in annotations else {}
        return {"progress": progress, **row}

    return [
        PlannedCell(cell, settings(cell.key), None, "train")
        for cell in cells
        if cell.key not in done
    ]


def run_train_job(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The runner of a train run's cells, wherever an executor runs them.

    Progress goes to this process's stderr: with ``progress="steps"`` a line per
    evaluation (step, training loss, validation loss and accuracy) and one when the cell
    ends; with ``"cells"`` only the line when it ends. In the command's own process (the
    ``inline`` executor) that is the terminal, above the run's progress bar; a worker
    process writes it to the run directory's worker log.
    """
    from mixbench.train.cell import train_cell

    settings = payload.get("settings") or {}
    progress = settings.get("progress", "none")
    label = Cell("train", payload["config"]).label()

    def say(text: str) -> None:
        print(f"{label} {text}", file=sys.stderr, flush=True)

    outcome = train_cell(
        payload["config"],
        run_id=payload.get("run_id"),
        log=say if progress == "steps" else None,
        annotations=settings.get("row"),
    )
    if progress in ("steps", "cells"):
        say("-> " + finished_line(outcome.row))
    return {"row": outcome.row, "curves": outcome.curves or None}


def finished_line(row: Mapping[str, Any]) -> str:
    """A finished cell in one line: its status, or validation and test accuracy."""
    m = row.get("metrics") or {}
    if row.get("status") != "ok":
        return f"{row.get('status')}: {row.get('reason')}"
    text = f"val_acc {m['final_val_acc']:.4f}"
    if m.get("test_acc") is not None:
        text += f"  test_acc {m['test_acc']:.4f}"
    return text + f"  train_loss {m['train_loss']:.4f}  ({row.get('duration_s', 0):.1f} s)"
