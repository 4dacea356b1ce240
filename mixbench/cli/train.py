"""``mixbench train``: train every (mixer, optimizer, task, seed) combination under one
protocol, through the run pipeline, and summarise it as mean ± std over seeds.

Parses the command line into `mixbench.train.options.TrainOptions` (every range checked
there), plans and checks the whole grid before anything trains (`mixbench.train.run`), and
hands the cells to the driver ``mixbench sweep`` uses, so a train run has the sweep's
executors, ``--max-parallel``, resume, and Ctrl-C / SIGTERM behaviour. A tuned run
(``--tune-lr``) is two stages of cells: the trials, then every seed at the chosen rates.
torch is imported inside the command, never at module level, to keep ``--help`` fast.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import typer

from mixbench.train.summary import print_summary

DEFAULT_EXECUTOR = "inline"
__all__ = ["print_summary", "train_command"]


def train_command(
    mixer: list[str] = typer.Option(
        None, "--mixer", "-m", help="Mixer name(s); repeat or comma-separate."
    ),
    optimizer: list[str] = typer.Option(
        None, "--optimizer", "-o", help="Optimizer name(s) (default: adamw, as it registers)."
    ),
    task: list[str] = typer.Option(
        None, "--task", "-t", help="Task name(s) (default: digits, as it registers)."
    ),
    seed: list[str] = typer.Option(["0"], "--seed", "-s", help="Seeds: repeat or '0,1,2'."),
    steps: int | None = typer.Option(None, "--steps", help="Optimizer steps (default 1000)."),
    epochs: float | None = typer.Option(
        None, "--epochs", help="Passes over the training set, instead of --steps."
    ),
    lr: float | None = typer.Option(
        None,
        "--lr",
        help="Peak learning rate (default: the optimizer's registered default_lr).",
    ),
    tune_lr: bool = typer.Option(
        False, "--tune-lr", help="Tune each cell's rate on validation data, then run the seeds."
    ),
    lr_grid: str | None = typer.Option(
        None, "--lr-grid", help="Rates to try: LO:HI:COUNT (log-spaced) or a comma list."
    ),
    tune_seeds: list[str] = typer.Option(
        [], "--tune-seeds", help="Seeds the trials run on (default: the first --seed)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Training batch size."),
    preset: str = typer.Option("tiny", "--preset", help="Shell preset (tiny, small, s12, ...)."),
    depth: int | None = typer.Option(None, "--depth", help="Override an isotropic preset's depth."),
    dim: int | None = typer.Option(None, "--dim", help="Override an isotropic preset's width."),
    mixer_option: list[str] = typer.Option(
        [], "--mixer-option", help="KEY=VALUE (every mixer) or NAME.KEY=VALUE (that one)."
    ),
    optimizer_option: list[str] = typer.Option(
        [], "--optimizer-option", help="KEY=VALUE or NAME.KEY=VALUE, e.g. sam.rho=0.1."
    ),
    task_option: list[str] = typer.Option(
        [], "--task-option", help="KEY=VALUE or NAME.KEY=VALUE, e.g. label_noise=0.2."
    ),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine or constant after warm-up."),
    warmup: float = typer.Option(
        0.05, "--warmup", help="Linear warm-up: a fraction of the steps, or steps if >= 1."
    ),
    eval_every: int | None = typer.Option(
        None, "--eval-every", help="Steps between evaluations (default: 20 per run)."
    ),
    target_acc: float | None = typer.Option(
        None, "--target-acc", help="Record steps and time to this validation accuracy (0-1)."
    ),
    stop_train_loss: float | None = typer.Option(
        None,
        "--stop-train-loss",
        help="Stop at the first evaluation with full training-set loss <= this.",
    ),
    sharpness: bool = typer.Option(False, "--sharpness", help="Measure rho-sharpness at the end."),
    sharpness_rho: float = typer.Option(0.05, "--sharpness-rho", help="Sharpness ball radius."),
    sharpness_steps: int = typer.Option(5, "--sharpness-steps", help="Sharpness ascent steps."),
    sharpness_batch: int = typer.Option(
        1024, "--sharpness-batch", help="Fixed training examples for sharpness and Hessian."
    ),
    hessian: bool = typer.Option(False, "--hessian", help="Measure the Hessian's top eigenvalue."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or bfloat16 (autocast)."),
    threads: int | None = typer.Option(
        None, "--threads", help="torch intra-op threads (default: torch's choice, recorded)."
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help="Run directory of an unfinished train run: train its missing cells."
    ),
    executor: str = typer.Option(
        DEFAULT_EXECUTOR,
        "--executor",
        "-e",
        help="Where cells run: inline (default; this process), subprocess, ray, or any "
        "registered executor (mixbench list executors).",
    ),
    max_parallel: int = typer.Option(
        1, "--max-parallel", "-j", min=1, help="Training cells in flight at once."
    ),
    executor_option: list[str] = typer.Option(
        [], "--executor-option", help="KEY=VALUE for the executor, e.g. address=auto for ray."
    ),
    out: Path = typer.Option(Path("results/runs"), "--out", help="Where run directories go."),
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON lines, not a table."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bar: one line per finished cell."
    ),
) -> None:
    """Train mixer x optimizer x task x seed cells; summarise mean ± std over seeds.

    Tune each cell's learning rate on validation data with --tune-lr; test accuracy is
    measured once, at the end, and never used for a choice.
    Compare at matched training loss with --stop-train-loss.
    Measure flatness where each run ended with --sharpness and --hessian.
    Ctrl-C finishes the cells in flight (twice: abandons them); --resume RUN_DIR trains the
    cells with no row yet.
    """
    from mixbench.cli.app import parse_key_values
    from mixbench.core.plugin_loader import get_registry
    from mixbench.train.options import options_from_cli
    from mixbench.train.run import start_train

    given = dict(locals())
    executor_options = parse_key_values(executor_option, "--executor-option")
    get_registry().get("executor", executor).validate_options(executor_options)
    options = options_from_cli(given) if mixer or resume is None else None
    started = start_train(options, out=out, resume=resume)
    resume_argv = ["mixbench", "train", "--resume", str(started.run.path)]
    if executor != DEFAULT_EXECUTOR:
        resume_argv += ["--executor", executor]
    if max_parallel != 1:
        resume_argv += ["--max-parallel", str(max_parallel)]
    for item in executor_option:
        resume_argv += ["--executor-option", item]
    drive = {
        "run": started.run, "executor_name": executor, "executor_options": executor_options,
        "max_parallel": max_parallel, "quiet": quiet or as_json,
        "resume_command": shlex.join(resume_argv), "tables": False,
    }  # fmt: skip
    run_stages(started, drive, progress="cells" if quiet or not _terminal() else "steps")
    rows = started.run.rows()
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, sort_keys=True))
    else:  # once, after every stage: a tuned run's chosen rates exist only now
        print_summary(rows, started.run.path)


def _terminal() -> bool:
    from rich.console import Console

    return Console(stderr=True).is_terminal


def run_stages(started: Any, drive: Mapping[str, Any], progress: str = "none") -> None:
    """The first stage's cells, then (a tuned run) the cells at each chosen rate."""
    from mixbench.train.cell import skipped
    from mixbench.train.run import planned, write_rows_once

    run, plan = started.run, started.plan
    skips = [skipped(c.config, plan.skips[c.key], run_id=run.path.name).row
             for c in plan.cells if c.key in plan.skips]  # fmt: skip
    write_rows_once(run, skips)
    _drive(plan.cells, planned(plan.cells, run.done_keys(), {}, progress), drive)
    run_tuned_stage(plan.cells, drive, progress)


def run_tuned_stage(cells: Sequence[Any], drive: Mapping[str, Any], progress: str = "none") -> None:
    """After tuning trials (any of ``cells``) have rows: every seed at each chosen rate.
    ``mixbench sweep`` calls this too, so a sweep file's grid can ask for --tune-lr."""
    from mixbench.train.plan import tuned_stage
    from mixbench.train.run import planned, write_rows_once

    run = drive["run"]
    stage = tuned_stage(cells, run.rows(), run.path.name)
    write_rows_once(run, stage.rows)
    if stage.cells:
        todo = planned(stage.cells, run.done_keys(), stage.annotations, progress)
        _drive(stage.cells, todo, drive)


def _drive(cells: Sequence[Any], todo: Sequence[Any], drive: Mapping[str, Any]) -> None:
    """One stage through the sweep's driver (it raises typer.Exit when interrupted)."""
    from mixbench.cli.sweep import run_sweep

    run_sweep(sweep=SimpleNamespace(cells=cells), todo=todo, resumed=True, file=None, **drive)
