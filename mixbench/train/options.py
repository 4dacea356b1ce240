"""The options of a training run, typed and checked once.

`TrainOptions` is what ``mixbench train`` builds from its command line, what a sweep file's
``kind = "train"`` grid builds for each combination, and what a Python caller builds by
hand: every range is checked in ``__post_init__``, so a bad value is the same usage error
(exit code 2, naming the option, the value and what is accepted) wherever it comes from,
before anything is planned or trained. ``options_from_cli`` turns command-line-shaped values
(``"0,1"``, ``["rho=0.1"]``, ``"1e-3:1:4"``) into one.

Knows nothing about torch, typer or the command line's parser; imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from mixbench.errors import UsageError

DTYPES = ("float32", "bfloat16")
SCHEDULES = ("cosine", "constant")
DEFAULT_GRID_POINTS = 5  # the default --lr-grid: this many rates, default/30 .. default*30
DEFAULT_GRID_SPAN = 30.0

# field -> its name on the command line and in sweep files, where the two differ
KEYS = {
    "mixers": "mixer",
    "optimizers": "optimizer",
    "tasks": "task",
    "seeds": "seed",
    "mixer_options": "mixer_option",
    "optimizer_options": "optimizer_option",
    "task_options": "task_option",
}


def flag(name: str) -> str:
    """The flag that sets field ``name`` (``seeds`` is ``--seed``)."""
    return "--" + KEYS.get(name, name).replace("_", "-")


@dataclass(frozen=True)
class TrainOptions:
    """Everything that decides which training cells a run has and how each one trains."""

    mixers: tuple[str, ...]
    optimizers: tuple[str, ...] = ()  # empty: the optimizer registered as training's default
    tasks: tuple[str, ...] = ()  # empty: the task registered as training's default
    seeds: tuple[int, ...] = (0,)
    mixer_options: Mapping[str, str] = field(default_factory=dict)  # KEY or NAME.KEY -> text
    optimizer_options: Mapping[str, str] = field(default_factory=dict)
    task_options: Mapping[str, str] = field(default_factory=dict)
    steps: int | None = None  # default 1000 unless epochs is given
    epochs: float | None = None
    lr: float | None = None  # None: each optimizer's registered default_lr
    batch_size: int = 64
    preset: str = "tiny"
    depth: int | None = None
    dim: int | None = None
    schedule: str = "cosine"
    warmup: float = 0.05
    eval_every: int | None = None
    target_acc: float | None = None
    stop_train_loss: float | None = None
    sharpness: bool = False
    sharpness_rho: float = 0.05
    sharpness_steps: int = 5
    sharpness_batch: int = 1024
    hessian: bool = False
    device: str = "auto"
    dtype: str = "float32"
    threads: int | None = None
    tune_lr: bool = False
    lr_grid: tuple[float, ...] | None = None  # None: the optimizer's default_lr x/÷ 30
    tune_seeds: tuple[int, ...] | None = None  # None: the first seed

    def __post_init__(self) -> None:
        if not self.mixers:
            raise UsageError(f"{flag('mixers')}: give at least one name")
        if not self.seeds:
            raise UsageError("--seed: give at least one seed (e.g. 0,1,2)")
        for name in ("seeds", "tune_seeds"):
            for seed in getattr(self, name) or ():
                _check(name, seed, isinstance(seed, int) and seed >= 0, "a whole number >= 0")
        if self.steps is not None and self.epochs is not None:
            raise UsageError("give --steps or --epochs, not both")
        for name in ("steps", "batch_size", "depth", "dim", "eval_every", "threads"):
            _whole_at_least_one(name, getattr(self, name))
        for name in ("sharpness_steps", "sharpness_batch"):
            _whole_at_least_one(name, getattr(self, name))
        for name in ("epochs", "lr"):
            value = getattr(self, name)
            if value is not None:
                _check(name, value, _number(value) and value > 0, "a number > 0")
        for name in ("warmup", "sharpness_rho", "stop_train_loss"):
            value = getattr(self, name)
            if value is not None:
                _check(name, value, _number(value) and value >= 0, "a number >= 0")
        if self.target_acc is not None:
            ok = _number(self.target_acc) and 0 < self.target_acc <= 1
            _check("target_acc", self.target_acc, ok, "a fraction in (0, 1]")
        _check("schedule", self.schedule, self.schedule in SCHEDULES, " or ".join(SCHEDULES))
        _check("dtype", self.dtype, self.dtype in DTYPES, " or ".join(DTYPES))
        if self.tune_lr and self.lr is not None:
            raise UsageError("give --lr (one rate) or --tune-lr (a tuned rate), not both")
        for name in ("lr_grid", "tune_seeds"):
            if getattr(self, name) is not None and not self.tune_lr:
                raise UsageError(f"{flag(name)} applies with --tune-lr")
        if self.lr_grid is not None:
            ok = len(set(self.lr_grid)) >= 2 and all(_number(v) and v > 0 for v in self.lr_grid)
            _check("lr_grid", list(self.lr_grid), ok, "at least two different rates, each > 0")

    def to_json(self) -> dict[str, Any]:
        """Plain data for a manifest; `from_json` reads it back."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainOptions:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("mixers", "optimizers", "tasks", "seeds", "lr_grid", "tune_seeds"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(name: str, value: Any, ok: bool, accepted: str) -> None:
    if not ok:
        raise UsageError(f"{flag(name)}: {value!r} is not accepted; expected {accepted}")


def _whole_at_least_one(name: str, value: Any) -> None:
    if value is not None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        _check(name, value, ok, "a whole number >= 1")


# -- command-line-shaped values --------------------------------------------------------------


def split_names(values: Sequence[str] | str | None) -> tuple[str, ...]:
    """Repeatable and/or comma-separated names, in order, each once."""
    items = [values] if isinstance(values, str) else list(values or [])
    return tuple(dict.fromkeys(p.strip() for v in items for p in str(v).split(",") if p.strip()))


def parse_seeds(values: Sequence[str] | str | None, option: str = "--seed") -> tuple[int, ...]:
    seeds = []
    for part in split_names(values):
        if not part.isdigit():
            raise UsageError(f"{option}: {part!r} is not a whole number >= 0 (e.g. 0,1,2)")
        seeds.append(int(part))
    return tuple(dict.fromkeys(seeds))


def parse_lr_grid(text: str) -> tuple[float, ...]:
    """``LO:HI:COUNT`` (COUNT rates spaced evenly in log between LO and HI, both included)
    or a comma list of rates; sorted, each once."""
    usage = f"--lr-grid: {text!r} is not LO:HI:COUNT (e.g. 1e-3:1:4) or a comma list of rates"
    try:
        if ":" in text:
            lo_text, hi_text, count_text = text.split(":")
            lo, hi, count = float(lo_text), float(hi_text), int(count_text)
            if not (0 < lo < hi and count >= 2):
                raise UsageError(f"{usage}; needs 0 < LO < HI and COUNT >= 2")
            step = (math.log10(hi) - math.log10(lo)) / (count - 1)
            rates = [float(f"{10 ** (math.log10(lo) + i * step):.6g}") for i in range(count)]
        else:
            rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(usage) from None
    return tuple(sorted(set(rates)))


def default_grid(default_lr: float) -> tuple[float, ...]:
    """``DEFAULT_GRID_POINTS`` rates spaced evenly in log from default/30 to default*30."""
    half = (DEFAULT_GRID_POINTS - 1) / 2
    return tuple(
        float(f"{default_lr * DEFAULT_GRID_SPAN ** ((i - half) / half):.3g}")
        for i in range(DEFAULT_GRID_POINTS)
    )


def options_from_cli(given: Mapping[str, Any]) -> TrainOptions:
    """`TrainOptions` from the command's parameters (``mixer=["a,b"]``, ``seed=["0,1"]``,
    ``mixer_option=["k=v"]``, ``lr_grid="1e-3:1:4"``), as the command line and sweep
    files give them."""
    from mixbench.core.registry import parse_key_values

    values: dict[str, Any] = {
        "mixers": split_names(given.get("mixer")),
        "optimizers": split_names(given.get("optimizer")),
        "tasks": split_names(given.get("task")),
        "seeds": parse_seeds(given.get("seed") or ["0"]),
        "mixer_options": parse_key_values(given.get("mixer_option"), "--mixer-option"),
        "optimizer_options": parse_key_values(given.get("optimizer_option"), "--optimizer-option"),
        "task_options": parse_key_values(given.get("task_option"), "--task-option"),
    }
    if given.get("lr_grid"):
        values["lr_grid"] = parse_lr_grid(str(given["lr_grid"]))
    if given.get("tune_seeds"):
        values["tune_seeds"] = parse_seeds(given["tune_seeds"], "--tune-seeds")
    plain = {f.name for f in fields(TrainOptions)} - set(values) - {"lr_grid", "tune_seeds"}
    values.update({name: given[name] for name in plain if given.get(name) is not None})
    return with_registered_defaults(TrainOptions(**values))


def with_registered_defaults(options: TrainOptions) -> TrainOptions:
    """``options`` with an empty optimizer or task list replaced by the one its plugin
    registered as training's default (``register(..., default_for=("train",))``)."""
    if options.optimizers and options.tasks:
        return options
    from mixbench.core.plugin_loader import get_registry

    registry = get_registry()
    return replace(
        options,
        optimizers=options.optimizers or (registry.default("optimizer", "train", "--optimizer"),),
        tasks=options.tasks or (registry.default("task", "train", "--task"),),
    )
