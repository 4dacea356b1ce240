"""``mixbench train``: train every (mixer, optimizer, task, seed) combination under one
protocol and summarise it as mean ± std over seeds.

The whole grid is checked before anything trains — names, options, task data, model and
optimizer construction — so a typo costs a second and exit code 2, not a half-finished run.
Each cell then becomes one row in ``<out>/train-<time>/results.jsonl`` with its curves in
``curves/<key>.json``; a diverged or crashed cell is a row with that status and the grid goes
on. torch is imported inside the command, never at module level, to keep ``--help`` fast.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import typer

from mixbench.errors import UsageError

# Command-line values that every cell of the grid shares; they enter each cell's config.
SETTINGS = (
    "preset", "depth", "dim", "steps", "epochs", "batch_size", "schedule", "warmup",
    "eval_every", "target_acc", "stop_train_loss", "dtype", "sharpness", "sharpness_rho",
    "sharpness_steps", "sharpness_batch", "hessian", "threads",
)  # fmt: skip
MUST_BE_POSITIVE = (
    "steps", "epochs", "batch_size", "lr", "eval_every", "sharpness_steps", "sharpness_batch",
    "depth", "dim", "threads",
)  # fmt: skip


def train_command(
    mixer: list[str] = typer.Option(
        ..., "--mixer", "-m", help="Mixer name(s); repeat or comma-separate."
    ),
    optimizer: list[str] = typer.Option(["adamw"], "--optimizer", "-o", help="Optimizer name(s)."),
    task: list[str] = typer.Option(["digits"], "--task", "-t", help="Task name(s)."),
    seed: list[str] = typer.Option(["0"], "--seed", "-s", help="Seeds: repeat or '0,1,2'."),
    steps: int | None = typer.Option(None, "--steps", help="Optimizer steps (default 1000)."),
    epochs: float | None = typer.Option(
        None, "--epochs", help="Passes over the training set, instead of --steps."
    ),
    lr: float | None = typer.Option(
        None,
        "--lr",
        help="Peak learning rate (default: adam/adamw 3e-3, sgd 0.05, sam its base's).",
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
    out: Path = typer.Option(Path("results/runs"), "--out", help="Where run directories go."),
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON lines, not a table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Train mixer x optimizer x task x seed cells; summarise mean ± std over seeds.

    Compare at matched training loss with --stop-train-loss.
    Measure flatness where each run ended with --sharpness and --hessian.
    """
    grid, seeds, options, settings = _grid_inputs(dict(locals()))
    rows, run_path = run_grid(grid, seeds, options, settings, lr=lr, device=device,
                              out=out, echo_json=as_json, quiet=quiet)  # fmt: skip
    if not as_json:
        print_summary(rows, run_path)


def _grid_inputs(
    given: Mapping[str, Any],
) -> tuple[dict[str, list[str]], list[int], dict[str, dict[str, str]], dict[str, Any]]:
    """Check the command line's values: (grid names, seeds, raw options, shared settings)."""
    from mixbench.cli import parse_key_values

    if given["steps"] is not None and given["epochs"] is not None:
        raise UsageError("give --steps or --epochs, not both")
    for name in MUST_BE_POSITIVE:
        if given[name] is not None and given[name] <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0, got {given[name]}")
    if given["warmup"] < 0:
        raise UsageError(f"--warmup must be >= 0, got {given['warmup']}")
    if given["sharpness_rho"] < 0:
        raise UsageError(f"--sharpness-rho must be >= 0, got {given['sharpness_rho']}")
    target_acc = given["target_acc"]
    if target_acc is not None and not 0 < target_acc <= 1:
        raise UsageError(f"--target-acc is a fraction in (0, 1], got {target_acc}")
    grid = {
        "mixer": _names(given["mixer"], "--mixer"),
        "optimizer": _names(given["optimizer"], "--optimizer"),
        "task": _names(given["task"], "--task"),
    }
    options = {
        "mixer": parse_key_values(given["mixer_option"], "--mixer-option"),
        "optimizer": parse_key_values(given["optimizer_option"], "--optimizer-option"),
        "task": parse_key_values(given["task_option"], "--task-option"),
    }
    settings = {name: given[name] for name in SETTINGS}
    return grid, _seeds(given["seed"]), options, settings


def train_cells(**options: Any) -> list[Any]:
    """The cells ``mixbench train`` would run for these options, checked; trains nothing.

    ``options`` are the command's keyword parameters with command-line-shaped values
    (``mixer=["attention"]``, ``seed=["0,1"]``); missing ones take the command's defaults;
    the run-level ones (``out``, ``as_json``, ``quiet``) are ignored. Task data and models
    are built once to check them, so a bad option fails here. ``mixbench sweep`` plans
    with this, so a sweep's cells carry the keys the command gives them.
    """
    import inspect

    from mixbench.environment import resolve_device

    values: dict[str, Any] = {}
    for name, param in inspect.signature(train_command).parameters.items():
        default = getattr(param.default, "default", param.default)
        values[name] = None if default is ... else default
    unknown = set(options) - set(values)
    if unknown:
        raise UsageError(f"train: unknown option(s) {', '.join(sorted(unknown))}")
    values.update(options)
    grid, seeds, raw, settings = _grid_inputs(values)
    device = resolve_device(values["device"])
    if settings.get("threads") is None:
        settings = {**settings, "threads": _torch_threads()}
    cells = plan(grid, seeds, raw, settings, lr=values["lr"], device=device)
    prepare(cells)
    return cells


def _names(values: Sequence[str], option: str) -> list[str]:
    """Repeatable and/or comma-separated names, in order, each once."""
    names = [p.strip() for v in values for p in v.split(",") if p.strip()]
    if not names:
        raise UsageError(f"{option}: give at least one name")
    return list(dict.fromkeys(names))


def _seeds(values: Sequence[str]) -> list[int]:
    seeds = []
    for part in (p.strip() for v in values for p in v.split(",") if p.strip()):
        if not part.isdigit():
            raise UsageError(f"--seed: {part!r} is not a whole number >= 0 (e.g. 0,1,2)")
        seeds.append(int(part))
    if not seeds:
        raise UsageError("--seed: give at least one seed (e.g. 0,1,2)")
    return list(dict.fromkeys(seeds))


def plan(
    grid: Mapping[str, list[str]],
    seeds: list[int],
    options: Mapping[str, Mapping[str, str]],
    settings: Mapping[str, Any],
    *,
    lr: float | None,
    device: str,
) -> list[Any]:
    """Every cell of the grid with its full config: options validated and converted (so the
    key does not depend on how a value was spelled), the learning rate and step budget
    resolved, so each row records exactly what ran."""
    from mixbench import train
    from mixbench.plan import Cell, unique_cells
    from mixbench.plugins import get_registry
    from mixbench.schedule import SCHEDULES

    if settings["schedule"] not in SCHEDULES:
        raise UsageError(f"--schedule: {settings['schedule']!r} is not one of {SCHEDULES}")
    if settings["dtype"] not in train.DTYPES:
        raise UsageError(f"--dtype: {settings['dtype']!r} is not one of {train.DTYPES}")
    if settings["steps"] is None and settings["epochs"] is None:
        settings = {**settings, "steps": train.DEFAULT_STEPS}
    from mixbench.cli import scope_options

    registry = get_registry()
    checked = {
        kind: {
            name: _plain(registry.get(kind, name).validate_options(scoped))
            for name, scoped in scope_options(kind, names, options[kind]).items()
        }
        for kind, names in grid.items()
    }
    cells = []
    for task_name in grid["task"]:
        for mixer_name in grid["mixer"]:
            for opt_name in grid["optimizer"]:
                opt_options = checked["optimizer"][opt_name]
                peak = lr if lr is not None else train.default_lr(opt_name, opt_options)
                for seed in seeds:
                    config = {
                        "mixer": mixer_name, "mixer_options": checked["mixer"][mixer_name],
                        "optimizer": opt_name, "optimizer_options": opt_options,
                        "task": task_name, "task_options": checked["task"][task_name],
                        "seed": seed, "lr": peak, "device": device, **settings,
                    }  # fmt: skip
                    cells.append(Cell("train", config))
    return unique_cells(cells)


def _plain(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options as plain JSON data (tuples become lists), so that keys are stable."""
    return dict(json.loads(json.dumps(dict(options), sort_keys=True, default=str)))


def _task_key(config: Mapping[str, Any]) -> str:
    return json.dumps([config["task"], config["task_options"], config["seed"]], sort_keys=True)


def prepare(cells: Sequence[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Build each task's data once per (task, options, seed) and each distinct model and
    optimizer once, before anything trains: a bad option raises a UsageError for the whole
    grid; a cell that cannot work with its input gets a skip reason."""
    from mixbench import train

    data: dict[str, Any] = {}
    checked: dict[str, str | None] = {}
    skips: dict[str, str] = {}
    for cell in cells:
        config = cell.config
        if _task_key(config) not in data:
            data[_task_key(config)] = _load_task(config)
        shape = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)
        if shape not in checked:
            checked[shape] = train.check_cell(config, data[_task_key(config)])
        if checked[shape] is not None:
            skips[cell.key] = str(checked[shape])
    return data, skips


def _load_task(config: Mapping[str, Any]) -> Any:
    """The task's data; a task's own complaint about an option is told with the task's name."""
    from mixbench import train

    try:
        return train.load_task(config)
    except UsageError as exc:
        name = config["task"]
        if repr(name) in str(exc) or str(exc).startswith(f"{name}:"):
            raise
        raise UsageError(f"task {name!r}: {exc}") from exc


def run_grid(
    grid: Mapping[str, list[str]],
    seeds: list[int],
    options: Mapping[str, Mapping[str, str]],
    settings: Mapping[str, Any],
    *,
    lr: float | None,
    device: str,
    out: Path,
    echo_json: bool = False,
    quiet: bool = False,
) -> tuple[list[dict[str, Any]], Path]:
    """Plan and check every cell, then train them in order, writing each row as it ends."""
    from mixbench import train
    from mixbench.environment import collect_environment, resolve_device
    from mixbench.store import RunDir, utc_now

    device = resolve_device(device)
    if settings.get("threads") is None:  # record what torch chose: step times depend on it
        settings = {**settings, "threads": _torch_threads()}
    cells = plan(grid, seeds, options, settings, lr=lr, device=device)
    data, skips = prepare(cells)

    run_dir = RunDir.create(out, "train")
    run_id = run_dir.path.name
    run_dir.write_manifest({
        "schema": 1, "kind": "train", "run_id": run_id, "command": ["mixbench", *sys.argv[1:]],
        "config": {**{f"{k}s": v for k, v in grid.items()}, "seeds": seeds, "lr": lr,
                   "options": {k: dict(v) for k, v in options.items()}, "device": device,
                   **settings},
        "cells": len(cells), "environment": collect_environment(device),
        "started_at": utc_now(), "ended_at": None, "status": "running",
    })  # fmt: skip
    say = _progress(quiet)
    say(f"run directory: {run_dir.path}  ({len(cells)} cells)")
    rows: list[dict[str, Any]] = []
    status = "interrupted"
    try:
        for number, cell in enumerate(cells, start=1):
            label = f"[{number}/{len(cells)}] {cell.label()}"
            if cell.key in skips:
                outcome = train.skipped(cell.config, skips[cell.key], run_id=run_id)
            else:
                say(f"{label}  lr={cell.config['lr']:g}")
                task_data = data[_task_key(cell.config)]
                outcome = train.train_cell(
                    cell.config, task=task_data, run_id=run_id, log=lambda s: say(f"  {s}")
                )
            rows.append(train.save_outcome(run_dir, outcome))
            say(f"{label}  -> {_one_line(rows[-1])}")
            if echo_json:
                typer.echo(json.dumps(rows[-1], sort_keys=True))
        status = "complete"
    finally:
        run_dir.update_manifest(ended_at=utc_now(), status=status)
    return rows, run_dir.path


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _progress(quiet: bool) -> Callable[[str], None]:
    from rich.console import Console

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    return (lambda _line: None) if quiet else (lambda line: console.print(line, markup=False))


def _one_line(row: Mapping[str, Any]) -> str:
    m = row["metrics"]
    if row["status"] != "ok":
        return f"{row['status']}: {row['reason']}"
    text = f"val_acc {m['final_val_acc']:.4f}  train_loss {m['train_loss']:.4f}"
    if m.get("rho_sharpness") is not None:
        text += f"  rho-sharpness {m['rho_sharpness']:.4g}"
    return text + f"  ({row['duration_s']:.1f} s)"


# -- summary across seeds ------------------------------------------------------------------

SUMMARY_COLUMNS = (  # (metric, heading, format, scale)
    ("final_val_acc", "val acc %", "{:.1f}", 100.0),
    ("best_val_acc", "best %", "{:.1f}", 100.0),
    ("train_loss", "train loss", "{:.3g}", 1.0),
    ("grad_evals", "grad evals", "{:.0f}", 1.0),
    ("median_step_s", "step ms", "{:.1f}", 1e3),
    ("steps_to_target", "steps to target", "{:.0f}", 1.0),
    ("rho_sharpness", "rho-sharpness", "{:.3g}", 1.0),
    ("hessian_top_eig", "Hessian λmax", "{:.3g}", 1.0),
)


def summarise(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group rows whose configs differ only in the seed; for each metric, the mean, the
    sample standard deviation and the count over the seeds that finished ``ok``."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        identity = {k: v for k, v in row["config"].items() if k != "seed"}
        groups.setdefault(json.dumps(identity, sort_keys=True), []).append(row)
    summary = []
    for members in groups.values():
        config = members[0]["config"]
        ok = [r for r in members if r["status"] == "ok"]
        entry: dict[str, Any] = {
            "mixer": _label(config["mixer"], config["mixer_options"]),
            "optimizer": _label(config["optimizer"], config["optimizer_options"]),
            "task": _label(config["task"], config["task_options"]),
            "seeds": len(members), "ok": len(ok),
            "problems": sorted({r["status"] for r in members if r["status"] != "ok"}),
        }  # fmt: skip
        for name, *_ in SUMMARY_COLUMNS:
            values = [float(r["metrics"][name]) for r in ok if r["metrics"].get(name) is not None]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            entry[name] = (statistics.fmean(values), spread, len(values)) if values else None
        summary.append(entry)
    return summary


def _label(name: str, options: Mapping[str, Any]) -> str:
    if not options:
        return name
    return name + "(" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"


def print_summary(rows: Sequence[Mapping[str, Any]], run_path: Path) -> None:
    """The rich table: one line per (mixer, optimizer, task), mean ± std over seeds."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    summary = summarise(rows)
    shown = [c for c in SUMMARY_COLUMNS if any(s[c[0]] is not None for s in summary)]
    table = Table(
        title=f"train: mean ± std over seeds ({run_path})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for heading in ("mixer", "optimizer", "task", "seeds ok"):
        table.add_column(heading, no_wrap=True)
    for _, heading, _, _ in shown:
        table.add_column(heading, justify="right")
    for s in summary:
        problems = f" ({', '.join(s['problems'])})" if s["problems"] else ""
        cells = [s["mixer"], s["optimizer"], s["task"], f"{s['ok']}/{s['seeds']}{problems}"]
        for name, _, fmt, scale in shown:
            if s[name] is None:
                cells.append("—")
                continue
            mean, std, count = s[name]
            text = fmt.format(mean * scale)
            if count > 1 and math.isfinite(std):
                text += " ± " + fmt.format(std * scale)
            if count < s["ok"]:
                text += f" (n={count})"
            cells.append(text)
        table.add_row(*cells)
    console = Console(highlight=False)
    if not console.is_terminal:  # a log file or a pipe: no reason to squeeze the columns
        console = Console(highlight=False, width=max(console.width, 160))
    console.print(table)
