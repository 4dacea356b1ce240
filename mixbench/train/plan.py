"""Plan a training run: `TrainOptions` -> the cells to train, checked before any trains.

Without ``tune_lr`` a run is one stage: every (task, mixer, optimizer, seed) cell at one
learning rate (``lr``, else the optimizer's registered ``default_lr``). With ``tune_lr`` it
is two stages, and both are ordinary training cells (they resume, run in parallel and go
to any executor like every cell):

1. **trials**: each (task, mixer, optimizer) at every rate of its grid, on the tuning
   seeds; their config carries ``lr_tuning = {"stage": "trial", ...}``;
2. **tuned cells**: once a group's trials have rows, `tuned_cells` picks its rate
   (`mixbench.train.lr_tuning.select_lr`: the best mean final *validation* accuracy) and plans
   every seed at it, with ``lr_tuning = {"stage": "tuned", ...}`` in the config and the
   trials' record in the row.

Each cell's config is fully resolved (options converted, so the key does not depend on how
a value was spelled; device and threads resolved), so a row records exactly what ran.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixbench.errors import UsageError
from mixbench.runs.cells import Cell, unique_cells
from mixbench.runs.rows import plain
from mixbench.train.lr_tuning import select_lr, trial_record
from mixbench.train.options import TrainOptions, default_grid, with_registered_defaults

# TrainOptions fields that every cell of a run shares, as they appear in its config
SETTINGS = (
    "preset", "depth", "dim", "steps", "epochs", "batch_size", "schedule", "warmup",
    "eval_every", "target_acc", "stop_train_loss", "dtype", "sharpness", "sharpness_rho",
    "sharpness_steps", "sharpness_batch", "hessian", "threads",
)  # fmt: skip
TRIAL, TUNED = "trial", "tuned"


@dataclass
class TrainPlan:
    """The first stage's cells (all of an untuned run), checked; skip reasons by key."""

    options: TrainOptions
    cells: list[Cell]
    skips: dict[str, str] = field(default_factory=dict)


def plan_train(options: TrainOptions) -> TrainPlan:
    """The run's first-stage cells, checked: each task's data and each distinct model and
    optimizer are built once, so a bad option raises a UsageError for the whole run and a
    cell that cannot work with its input (a window larger than the grid) gets a skip reason."""
    from mixbench.core.plugin_loader import get_registry
    from mixbench.core.registry import scope_options
    from mixbench.runs.environment import resolve_device
    from mixbench.train import cell as train

    registry = get_registry()
    options = with_registered_defaults(options)
    raw = {
        "mixer": (options.mixers, options.mixer_options),
        "optimizer": (options.optimizers, options.optimizer_options),
        "task": (options.tasks, options.task_options),
    }
    checked = {
        kind: {
            name: plain(registry.get(kind, name).validate_options(scoped))
            for name, scoped in scope_options(kind, names, given).items()
        }
        for kind, (names, given) in raw.items()
    }
    settings = {name: getattr(options, name) for name in SETTINGS}
    if settings["steps"] is None and settings["epochs"] is None:
        settings["steps"] = train.DEFAULT_STEPS
    if settings["threads"] is None:  # record what torch chose: step times depend on it
        import torch

        settings["threads"] = torch.get_num_threads()
    device = resolve_device(options.device)
    cells = []
    for task_name in options.tasks:
        for mixer_name in options.mixers:
            for opt_name in options.optimizers:
                opt_options = checked["optimizer"][opt_name]
                base = {
                    "mixer": mixer_name, "mixer_options": checked["mixer"][mixer_name],
                    "optimizer": opt_name, "optimizer_options": opt_options,
                    "task": task_name, "task_options": checked["task"][task_name],
                    "device": device, **settings,
                }  # fmt: skip
                default = train.default_lr(opt_name, opt_options)
                cells += _group_cells(options, base, default)
    cells = unique_cells(cells)
    return TrainPlan(options, cells, check_cells(cells))


def _group_cells(options: TrainOptions, base: Mapping[str, Any], default_lr: float) -> list[Cell]:
    """One (task, mixer, optimizer): its seeds at one rate, or its tuning trials."""
    if not options.tune_lr:
        lr = options.lr if options.lr is not None else default_lr
        return [Cell("train", {**base, "seed": s, "lr": lr}) for s in options.seeds]
    grid = list(options.lr_grid or default_grid(default_lr))
    tune_seeds = list(options.tune_seeds or options.seeds[:1])
    tuning = {"stage": TRIAL, "grid": grid, "tune_seeds": tune_seeds, "seeds": list(options.seeds)}
    return [
        Cell("train", {**base, "seed": s, "lr": lr, "lr_tuning": tuning})
        for s in tune_seeds
        for lr in grid
    ]


def _task_key(config: Mapping[str, Any]) -> str:
    return json.dumps([config["task"], config["task_options"], config["seed"]], sort_keys=True)


def check_cells(cells: Sequence[Cell]) -> dict[str, str]:
    """Build each task's data once per (task, options, seed) and each distinct model and
    optimizer once; return skip reasons by key (a bad option raises a UsageError)."""
    from mixbench.train import cell as train

    data: dict[str, Any] = {}
    checked: dict[str, str | None] = {}
    skips: dict[str, str] = {}
    for cell in cells:
        config = cell.config
        if _task_key(config) not in data:
            data[_task_key(config)] = _load_task(config)
        shape = json.dumps(
            {k: v for k, v in config.items() if k not in ("seed", "lr")}, sort_keys=True
        )
        if shape not in checked:
            checked[shape] = train.check_cell(config, data[_task_key(config)])
        if checked[shape] is not None:
            skips[cell.key] = str(checked[shape])
    return skips


def _load_task(config: Mapping[str, Any]) -> Any:
    """The task's data; a task's own complaint about an option is told with the task's name."""
    from mixbench.train import cell as train

    try:
        return train.load_task(config)
    except UsageError as exc:
        name = config["task"]
        if repr(name) in str(exc) or str(exc).startswith(f"{name}:"):
            raise
        raise UsageError(f"task {name!r}: {exc}") from None


# -- the second stage of a tuned run ----------------------------------------------------------


@dataclass
class TunedStage:
    """What follows the trials: cells to train at each group's chosen rate (with the row
    fields that record the choice, by key), and rows written without training: a group
    where no rate qualified, and a tuning seed at the chosen rate (its trial trained exactly
    that config: the row is the trial's, under the tuned key, ``reused_trial`` naming it)."""

    cells: list[Cell] = field(default_factory=list)
    annotations: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)


def tuned_stage(
    trials: Sequence[Cell], rows: Sequence[Mapping[str, Any]], run_id: str | None
) -> TunedStage:
    """The tuned cells of every group whose trials all have rows (`select_lr` picks).

    A group whose trials all failed or diverged gets no rate: each of its seeds is a
    ``skipped`` row saying why (the trials' own rows keep the details), never a guess. A
    tuning seed is not trained again at the chosen rate: training is deterministic per
    config, so the trial's row is that cell's row.
    """
    from mixbench.train.cell import skipped

    by_key = {str(r.get("key")): r for r in rows}
    groups: dict[str, list[Cell]] = {}
    for cell in trials:
        if (cell.config.get("lr_tuning") or {}).get("stage") == TRIAL:
            groups.setdefault(_group_key(cell.config), []).append(cell)
    stage = TunedStage()
    for members in groups.values():
        if any(c.key not in by_key for c in members):
            continue  # trials still missing (an interrupted run): nothing to choose yet
        tuning = dict(members[0].config["lr_tuning"])
        selection = select_lr(tuning["grid"], [by_key[c.key] for c in members])
        base = {k: v for k, v in members[0].config.items() if k not in ("seed", "lr")}
        marker = {"stage": TUNED, "grid": tuning["grid"], "tune_seeds": tuning["tune_seeds"]}
        record = {"lr_tuning": trial_record(tuning, selection)}
        trained = {(c.config["seed"], c.config["lr"]): by_key[c.key] for c in members}
        for seed in tuning["seeds"]:
            config = {**base, "seed": seed, "lr": selection.chosen, "lr_tuning": marker}
            cell = Cell("train", config)
            trial = trained.get((seed, selection.chosen))
            if selection.chosen is None:
                reason = "lr tuning: no rate of the grid trained without failing or diverging"
                stage.rows.append({**skipped(config, reason, run_id=run_id).row, **record})
            elif trial is not None:  # this very training ran as a trial: its row, not a rerun
                reused = {"key": cell.key, "config": config, "reused_trial": trial["key"]}
                stage.rows.append({**trial, **reused, **record})
            else:
                stage.cells.append(cell)
                stage.annotations[cell.key] = record
    return stage


def _group_key(config: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in ("seed", "lr")}, sort_keys=True)
