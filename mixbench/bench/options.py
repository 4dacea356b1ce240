"""The options of a bench run, typed and checked once, and the cells they plan.

`BenchOptions` is what ``mixbench bench`` parses its command line into, what a sweep file's
``kind = "bench"`` grid becomes (``bench_cells``), and what the Python API builds: every
range is checked when one is made, so a bad value is a ``UsageError`` naming the option,
the value and what is accepted, before anything runs, whoever asked. `plan_bench` turns the
options into cells (mixer x optimizer x size) and the settings that say how to time them.

Token layout: ``tokens`` are token counts N. With ``layout="2d"`` (the default) each N is
laid out on the square grid (sqrt N, sqrt N) when N is a perfect square, else on the most
nearly square h x w with h * w = N (``mixbench.runs.cells.grid_for_tokens``); ``"1d"`` uses the
sequence (N,). The grid is recorded in every row.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixbench.errors import UsageError

LEVELS = ("mixer", "block", "model")
MODES = ("infer", "train")
DTYPES = ("float32", "bfloat16", "float16")
LAYOUTS = ("1d", "2d")
DEFAULT_TOKENS = (256, 1024, 4096)
DEFAULT_DIM = 64
DEFAULT_BATCH = 8
# Fresh worker processes per cell: 5 by default, the fewest with which compare's exact test
# can call a change at alpha = 0.05 with a margin (4 a side only on complete separation;
# 3 never); 1 with --quick, which is for a look, not a verdict.
DEFAULT_PROCESSES, QUICK_PROCESSES = 5, 1

# --quick: every mixer at two small sizes, with a timing budget that fits 60 s on 2 cores.
QUICK_TOKENS, QUICK_DIM, QUICK_BATCH = (64, 256), 32, 4
QUICK_TIMING = {
    "warmup_iters": 3,
    "warmup_s": 0.02,
    "min_time_s": 0.05,
    "max_time_s": 0.3,
    "min_samples": 5,
}

# field -> its name on the command line and in sweep files, where the two differ
KEYS = {
    "mixers": "mixer",
    "optimizers": "optimizer",
    "mixer_options": "mixer_option",
    "optimizer_options": "optimizer_option",
    "image_sizes": "image_size",
}

# field -> (flag, lowest accepted value, whether the bound itself is excluded)
WHOLE_RANGES: dict[str, tuple[str, int]] = {
    "dim": ("--dim", 1),
    "batch_size": ("--batch-size", 1),
    "threads": ("--threads", 1),
    "repeats": ("--repeats", 1),
    "processes": ("--processes", 1),
    "warmup_iters": ("--warmup-iters", 0),
    "seed": ("--seed", 0),
}
REAL_RANGES: dict[str, tuple[str, float, bool]] = {
    "lr": ("--lr", 0.0, True),
    "min_time": ("--min-time", 0.0, True),
    "max_time": ("--max-time", 0.0, True),
    "warmup_time": ("--warmup-time", 0.0, False),
    "timeout": ("--timeout", 0.0, True),
}
CHOICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "level": ("--level", LEVELS),
    "mode": ("--mode", MODES),
    "dtype": ("--dtype", DTYPES),
    "layout": ("--layout", LAYOUTS),
}


def check_whole(flag: str, value: Any, lowest: int) -> None:
    """A whole number >= ``lowest``, or a ``UsageError`` saying so."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise UsageError(f"{flag} {value!r}: out of range; accepted: a whole number >= {lowest}")


def check_real(flag: str, value: Any, lowest: float, strict: bool) -> None:
    """A finite number above (``strict``) or at least ``lowest``, or a ``UsageError``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < lowest or (strict and value == lowest):
        bound = f"> {lowest:g}" if strict else f">= {lowest:g}"
        raise UsageError(f"{flag} {value!r}: out of range; accepted: a number {bound}")


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how, as ``mixbench bench`` options mean it (None: the default).

    Option values of mixers and optimizers stay ``KEY=VALUE`` strings here
    (``NAME.KEY`` for one name); the registry converts them with each factory's signature
    when the cells are planned.
    """

    mixers: tuple[str, ...] = ()  # empty: every registered mixer
    mixer_options: Mapping[str, str] = field(default_factory=dict)
    level: str = "mixer"
    preset: str = "tiny"
    tokens: tuple[int, ...] = ()  # empty: DEFAULT_TOKENS (QUICK_TOKENS with quick)
    layout: str = "2d"
    image_sizes: tuple[int, ...] = ()
    dim: int | None = None
    batch_size: int | None = None
    mode: str = "infer"
    optimizers: tuple[str, ...] = ()  # --mode train; empty: the registered default
    optimizer_options: Mapping[str, str] = field(default_factory=dict)
    lr: float = 1e-3
    device: str = "auto"
    dtype: str = "float32"
    threads: int | None = None
    compile: bool = False
    repeats: int = 5  # timed samples per process, at least
    min_time: float | None = None
    max_time: float | None = None
    warmup_iters: int | None = None
    warmup_time: float | None = None
    timeout: float = 600.0
    seed: int = 0
    processes: int | None = None  # fresh processes per cell; None: DEFAULT_PROCESSES
    quick: bool = False

    def __post_init__(self) -> None:
        for name, (flag, accepted) in CHOICES.items():
            if getattr(self, name) not in accepted:
                value = getattr(self, name)
                raise UsageError(f"{flag} {value!r}: accepted: {', '.join(accepted)}")
        for name, (flag, lowest) in WHOLE_RANGES.items():
            if getattr(self, name) is not None:
                check_whole(flag, getattr(self, name), lowest)
        for name, (flag, real_lowest, strict) in REAL_RANGES.items():
            if getattr(self, name) is not None:
                check_real(flag, getattr(self, name), real_lowest, strict)
        for flag, values in (("--tokens", self.tokens), ("--image-size", self.image_sizes)):
            for value in values:
                check_whole(flag, value, 1)
        if self.image_sizes:
            if self.level != "model":
                raise UsageError(
                    "--image-size is for --level model; use --tokens for mixers and blocks"
                )
            if self.tokens:
                raise UsageError("give --tokens or --image-size, not both")
        if self.mode == "infer" and (self.optimizers or self.optimizer_options):
            raise UsageError("--optimizer applies to --mode train")

    @classmethod
    def from_command_line(cls, **given: Any) -> BenchOptions:
        """Options from command-line-shaped values (``tokens="256,1024"``,
        ``mixer_option=["window=8"]``), as the CLI and sweep files give them."""
        from mixbench.core.registry import parse_key_values
        from mixbench.runs.cells import parse_int_list

        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in given.items() if k in names and v is not None}
        renamed = {key: name for name, key in KEYS.items() if not name.endswith("_options")}
        renamed["compile_"] = "compile"  # the CLI's parameter (compile is a builtin)
        for old, new in renamed.items():
            if given.get(old) is not None:
                values[new] = given[old]
        for name in ("mixers", "optimizers"):
            values[name] = tuple(dict.fromkeys(values.get(name) or ()))
        if isinstance(values.get("tokens"), str):
            values["tokens"] = tuple(sorted(set(parse_int_list(values["tokens"], "--tokens"))))
        if isinstance(values.get("image_sizes"), str):
            values["image_sizes"] = tuple(parse_int_list(values["image_sizes"], "--image-size"))
        for option, name in (
            ("mixer_option", "mixer_options"),
            ("optimizer_option", "optimizer_options"),
        ):
            if given.get(option) is not None:
                values[name] = parse_key_values(given[option], "--" + option.replace("_", "-"))
        return cls(**values)


@dataclass
class BenchPlan:
    """Everything decided before measuring: the cells, how to time them, what to record."""

    cells: list[Any]
    settings: dict[str, Any]  # per-cell settings: timing budget and process repeats
    fixed: dict[str, Any]
    options: dict[str, Any]  # the resolved options, for the manifest

    @property
    def processes(self) -> int:
        return int(self.settings["processes"])


def split_options(
    names: Sequence[str], raw: Mapping[str, str], kind: str
) -> dict[str, dict[str, Any]]:
    """Validate ``raw`` per registered ``kind``: each gets the options it accepts.

    ``NAME.KEY=VALUE`` goes to that name only (and must be accepted there); a plain
    ``KEY=VALUE`` goes to every selected entry that accepts KEY, and one that no selected
    entry accepts is an error (a typo must not pass silently).
    """
    from mixbench.core.plugin_loader import get_registry
    from mixbench.core.registry import scope_options

    registry = get_registry()
    plain = {k: v for k, v in raw.items() if "." not in k}
    scoped = scope_options(kind, names, {k: v for k, v in raw.items() if "." in k})
    per_name: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for name in names:
        entry = registry.get(kind, name)
        options, var_kwargs, _ = entry.signature
        mine = {k: v for k, v in plain.items() if k in options or var_kwargs}
        per_name[name] = entry.validate_options({**mine, **scoped[name]})
        used |= set(mine)
    unused = sorted(set(plain) - used)
    if unused:
        raise UsageError(
            f"--{kind}-option {', '.join(unused)}: accepted by none of " + ", ".join(names)
        )
    return per_name


def _sizes(options: BenchOptions) -> list[tuple[int | None, tuple[int, ...], int | None]]:
    from mixbench.runs.cells import grid_for_tokens

    if options.image_sizes:
        return [(None, (), size) for size in options.image_sizes]
    counts = options.tokens or (QUICK_TOKENS if options.quick else DEFAULT_TOKENS)
    if options.level == "model":  # sequence models read token ids along a 1-D grid
        return [(n, (n,), None) for n in counts]
    dims = 1 if options.layout == "1d" else 2
    return [(n, grid_for_tokens(n, dims), None) for n in counts]


def _timing(options: BenchOptions) -> dict[str, Any]:
    timing: dict[str, Any] = dict(QUICK_TIMING) if options.quick else {}
    timing["min_samples"] = options.repeats
    overrides: dict[str, float | None] = {
        "min_time_s": options.min_time,
        "max_time_s": options.max_time,
        "warmup_iters": options.warmup_iters,
        "warmup_s": options.warmup_time,
    }
    timing.update({key: value for key, value in overrides.items() if value is not None})
    if options.min_time is not None and options.max_time is None:  # the cap follows
        timing["max_time_s"] = max(float(timing.get("max_time_s", 10.0)), options.min_time)
    from mixbench.measure.timing import TimingConfig

    try:
        TimingConfig(**timing)
    except ValueError as exc:
        raise UsageError(f"timing options: {exc}") from None
    return timing


def plan_bench(options: BenchOptions) -> BenchPlan:
    """Check every name and option against the registry and plan the cells; run nothing."""
    from mixbench.core.plugin_loader import get_registry
    from mixbench.runs.cells import Cell, unique_cells
    from mixbench.runs.environment import resolve_device

    registry = get_registry()
    mixers = list(options.mixers or registry.names("mixer"))
    train = options.mode == "train"
    optimizers: list[str | None] = [None]
    if train:
        given = options.optimizers
        optimizers = list(given or [registry.default("optimizer", "bench", "--optimizer")])
    mixer_opts = split_options(mixers, options.mixer_options, "mixer")
    optimizer_opts = (
        split_options([o for o in optimizers if o], options.optimizer_options, "optimizer")
        if train
        else {}
    )
    timing = _timing(options)
    sizes = _sizes(options)
    import torch

    dim = options.dim or (QUICK_DIM if options.quick else None)
    fixed = {
        "level": options.level,
        "mode": options.mode,
        "lr": options.lr if train else None,
        "dim": dim if dim is not None else (DEFAULT_DIM if options.level != "model" else None),
        "batch_size": options.batch_size or (QUICK_BATCH if options.quick else DEFAULT_BATCH),
        "preset": options.preset if options.level == "model" else None,
        "device": resolve_device(options.device),
        "dtype": options.dtype,
        "threads": options.threads or torch.get_num_threads(),
        "compile": options.compile,
        "seed": options.seed,
    }
    cells = []
    for mixer in mixers:
        for optimizer in optimizers:
            for tokens, grid, image_size in sizes:
                config = {
                    **fixed,
                    "mixer": mixer,
                    "mixer_options": mixer_opts.get(mixer, {}),
                    "optimizer": optimizer,
                    "optimizer_options": optimizer_opts.get(optimizer or "", {}),
                    "tokens": tokens,
                    "grid": list(grid),
                    "image_size": image_size,
                }
                cells.append(Cell("bench", config))
    processes = options.processes or (QUICK_PROCESSES if options.quick else DEFAULT_PROCESSES)
    manifest_options = {
        "mixers": mixers,
        "mixer_options": dict(options.mixer_options),
        "optimizers": [o for o in optimizers if o],
        "optimizer_options": dict(options.optimizer_options),
        "tokens": [s[0] for s in sizes if s[0]],
        "image_sizes": [s[2] for s in sizes if s[2]],
        "layout": options.layout,
        "quick": options.quick,
        "timing": timing,
        "processes": processes,
        "timeout_s": options.timeout,
        **fixed,
    }
    return BenchPlan(
        cells=unique_cells(cells),
        settings={"timing": timing, "processes": processes},
        fixed=fixed,
        options=manifest_options,
    )


def bench_cells(**given: Any) -> tuple[list[Any], dict[str, Any]]:
    """The cells and per-cell settings ``mixbench bench`` would run for these options.

    ``given`` are sweep keys (`BenchOptions`' fields, spelled as ``KEYS`` says) with
    command-line-shaped values (``mixer=["attention"]``, ``tokens="256,1024"``); missing
    ones take the defaults. The bench kind's planner (``mixbench.bench.kind``), so a sweep's
    cells carry the keys the command gives them.
    """
    from mixbench.sweep.grid_table import option_keys

    unknown = set(given) - set(option_keys("bench"))
    if unknown:
        raise UsageError(f"bench: unknown option(s) {', '.join(sorted(unknown))}")
    plan = plan_bench(BenchOptions.from_command_line(**given))
    return plan.cells, plan.settings
