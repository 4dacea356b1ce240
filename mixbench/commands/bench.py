"""``mixbench bench``: latency, throughput, memory and FLOPs of every mixer as N grows.

The command plans cells (mixer x optimizer x token count), validates every name and option
before anything runs, probes the machine's matmul peak and memory bandwidth once, runs the
cells one by one in an isolated worker process (``mixbench.worker``), appends each row to
``results.jsonl`` as it finishes, and renders the tables. See ``mixbench.bench`` for what a
cell measures and the row schema.

Token layout: ``--tokens`` are token counts N. With ``--layout 2d`` (the default) each N is
laid out on the square grid (sqrt N, sqrt N) when N is a perfect square, else on the most
nearly square h x w with h * w = N (``mixbench.plan.grid_for_tokens``); ``--layout 1d``
uses the sequence (N,). The grid is recorded in every row.

Nothing here imports torch at module level: ``mixbench --help`` stays fast.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from mixbench.errors import UsageError

LEVELS = ("mixer", "block", "model")
MODES = ("infer", "train")
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_TOKENS = "256,1024,4096"
DEFAULT_DIM = 64
DEFAULT_BATCH = 8

# --quick: every mixer at two small sizes, with a timing budget that fits 60 s on 2 cores.
QUICK_TOKENS, QUICK_DIM, QUICK_BATCH = "64,256", 32, 4
QUICK_TIMING = {
    "warmup_iters": 3,
    "warmup_s": 0.02,
    "min_time_s": 0.05,
    "max_time_s": 0.3,
    "min_samples": 5,
}


def _split_options(names: list[str], raw: dict[str, str], kind: str) -> dict[str, dict[str, Any]]:
    """Validate ``raw`` per registered ``kind``: each gets the options it accepts.

    ``NAME.KEY=VALUE`` goes to that name only (and must be accepted there); a plain
    ``KEY=VALUE`` goes to every selected entry that accepts KEY, and one that no selected
    entry accepts is an error (a typo must not pass silently).
    """
    from mixbench.cli import scope_options
    from mixbench.plugins import get_registry

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


def plan_cells(
    *,
    mixers: list[str],
    mixer_options: dict[str, dict[str, Any]],
    optimizers: list[str | None],
    optimizer_options: dict[str, dict[str, Any]],
    sizes: list[tuple[int | None, tuple[int, ...], int | None]],
    fixed: dict[str, Any],
) -> list[Any]:
    """Cells in run order: mixer, then optimizer, then size (ascending)."""
    from mixbench.plan import Cell, unique_cells

    cells = []
    for mixer in mixers:
        for optimizer in optimizers:
            for tokens, grid, image_size in sizes:
                config = {
                    **fixed,
                    "mixer": mixer,
                    "mixer_options": mixer_options.get(mixer, {}),
                    "optimizer": optimizer,
                    "optimizer_options": optimizer_options.get(optimizer or "", {}),
                    "tokens": tokens,
                    "grid": list(grid),
                    "image_size": image_size,
                }
                cells.append(Cell("bench", config))
    return unique_cells(cells)


def _sizes(
    tokens: str | None, image_size: str | None, layout: str, level: str
) -> list[tuple[int | None, tuple[int, ...], int | None]]:
    from mixbench.plan import grid_for_tokens, parse_int_list, parse_tokens

    if layout not in ("1d", "2d"):
        raise UsageError(f"--layout: {layout!r} is not 1d or 2d")
    if image_size is not None:
        if level != "model":
            raise UsageError(
                "--image-size is for --level model; use --tokens for mixers and blocks"
            )
        if tokens is not None:
            raise UsageError("give --tokens or --image-size, not both")
        return [(None, (), size) for size in parse_int_list(image_size, "--image-size")]
    counts = sorted(set(parse_tokens(tokens or DEFAULT_TOKENS)))
    if level == "model":  # sequence models read token ids along a 1-D grid
        return [(n, (n,), None) for n in counts]
    return [(n, grid_for_tokens(n, 1 if layout == "1d" else 2), None) for n in counts]


def _label(config: dict[str, Any]) -> str:
    size = f"{config['image_size']}px" if config.get("image_size") else f"N={config['tokens']}"
    extra = f" {config['optimizer']}" if config.get("optimizer") else ""
    return f"{config['mixer']}{extra} {size}"


def bench(
    mixer: list[str] = typer.Option(
        None, "--mixer", "-m", help="Mixer to measure (repeatable; default: all registered)."
    ),
    mixer_option: list[str] = typer.Option(
        None,
        "--mixer-option",
        help="KEY=VALUE for the mixers that accept KEY, or NAME.KEY=VALUE for one (repeatable).",
    ),
    level: str = typer.Option(
        "mixer",
        "--level",
        help="mixer (one layer), block (one MetaFormer block) or model (a whole preset).",
    ),
    preset: str = typer.Option("tiny", "--preset", help="Shell preset for --level model."),
    tokens: str | None = typer.Option(
        None, "--tokens", help=f"Token counts N, e.g. 256,1024,4096 (default: {DEFAULT_TOKENS})."
    ),
    layout: str = typer.Option(
        "2d",
        "--layout",
        help="Grid of N tokens: 2d (square, or most nearly square h x w) or 1d (a sequence).",
    ),
    image_size: str | None = typer.Option(
        None, "--image-size", help="Image sizes in pixels for --level model, e.g. 64,128."
    ),
    dim: int | None = typer.Option(
        None, "--dim", help=f"Channels (default: {DEFAULT_DIM}; the preset's for --level model)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", help=f"Batch size (default: {DEFAULT_BATCH}; --quick: 4)."
    ),
    mode: str = typer.Option(
        "infer",
        "--mode",
        help="infer (forward) or train (forward, backward and an optimizer step).",
    ),
    optimizer: list[str] = typer.Option(
        None, "--optimizer", help="Optimizer for --mode train (repeatable) (default: sgd)."
    ),
    optimizer_option: list[str] = typer.Option(
        None, "--optimizer-option", help="KEY=VALUE for the optimizers (repeatable)."
    ),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate for --mode train."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    threads: int | None = typer.Option(None, "--threads", help="torch threads (default: torch's)."),
    compile_: bool = typer.Option(
        False, "--compile", help="torch.compile the module (compile time reported apart)."
    ),
    repeats: int = typer.Option(5, "--repeats", help="Minimum number of timed samples per cell."),
    min_time: float | None = typer.Option(
        None, "--min-time", help="Seconds of timed samples per cell at least (default: 1)."
    ),
    max_time: float | None = typer.Option(
        None,
        "--max-time",
        help="Cap on timed seconds per cell when samples stay noisy (default: 10).",
    ),
    warmup_iters: int | None = typer.Option(
        None, "--warmup-iters", help="Warm-up iterations at least (default: 10)."
    ),
    warmup_time: float | None = typer.Option(
        None, "--warmup-time", help="Warm-up seconds at least (default: 0.5)."
    ),
    timeout: float = typer.Option(
        600.0, "--timeout", help="Seconds before a cell is stopped and recorded as timeout."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for weights and inputs."),
    out: Path = typer.Option(
        Path("results/runs"), "--out", help="Directory under which the run directory is created."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print each row as a JSON line on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no tables."),
    quick: bool = typer.Option(
        False, "--quick", help="Every mixer at small sizes, about a minute on a laptop CPU."
    ),
) -> None:
    """Measure latency, throughput, peak memory and FLOPs of token mixers as N grows."""
    if not timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {timeout}")
    plan = plan_bench(
        mixer=mixer,
        mixer_option=mixer_option,
        level=level,
        preset=preset,
        tokens=tokens,
        layout=layout,
        image_size=image_size,
        dim=dim,
        batch_size=batch_size,
        mode=mode,
        optimizer=optimizer,
        optimizer_option=optimizer_option,
        lr=lr,
        device=device,
        dtype=dtype,
        threads=threads,
        compile_=compile_,
        repeats=repeats,
        min_time=min_time,
        max_time=max_time,
        warmup_iters=warmup_iters,
        warmup_time=warmup_time,
        seed=seed,
        quick=quick,
    )
    from mixbench.environment import collect_environment

    _run(
        cells=plan.cells,
        timing=plan.timing,
        out=out,
        quick=quick,
        as_json=as_json,
        quiet=quiet,
        timeout=timeout,
        environment=collect_environment(plan.fixed["device"]),
        options={**plan.options, "timeout_s": timeout},
    )


@dataclass
class BenchPlan:
    """Everything ``mixbench bench`` decides before measuring: the cells and how to time them."""

    cells: list[Any]
    timing: dict[str, Any]
    fixed: dict[str, Any]
    options: dict[str, Any]  # the resolved command line, for the manifest


def plan_bench(
    *,
    mixer: list[str] | None,
    mixer_option: list[str] | None,
    level: str,
    preset: str,
    tokens: str | None,
    layout: str,
    image_size: str | None,
    dim: int | None,
    batch_size: int | None,
    mode: str,
    optimizer: list[str] | None,
    optimizer_option: list[str] | None,
    lr: float,
    device: str,
    dtype: str,
    threads: int | None,
    compile_: bool,
    repeats: int,
    min_time: float | None,
    max_time: float | None,
    warmup_iters: int | None,
    warmup_time: float | None,
    seed: int,
    quick: bool,
) -> BenchPlan:
    """Check every option, name and timing setting and plan the cells; run nothing.

    Raises ``UsageError`` for anything the command rejects, before any measurement.
    """
    from mixbench.cli import parse_key_values

    for name, value, accepted in (
        ("--level", level, LEVELS),
        ("--mode", mode, MODES),
        ("--dtype", dtype, DTYPES),
    ):
        if value not in accepted:
            raise UsageError(f"{name}: {value!r} is not one of {', '.join(accepted)}")
    for flag, count in (("--threads", threads), ("--dim", dim)):
        if count is not None and count < 1:
            raise UsageError(f"{flag} must be at least 1, got {count}")
    if quick:
        tokens = tokens or QUICK_TOKENS
        dim = dim or QUICK_DIM
        batch_size = batch_size or QUICK_BATCH
    batch_size = batch_size or DEFAULT_BATCH
    for name, number in (("--batch-size", batch_size), ("--repeats", repeats)):
        if number < 1:
            raise UsageError(f"{name} must be at least 1")
    if not lr > 0:
        raise UsageError(f"--lr must be > 0, got {lr}")
    sizes = _sizes(tokens, image_size, layout, level)
    raw_mixer_options = parse_key_values(mixer_option, "--mixer-option")
    raw_optimizer_options = parse_key_values(optimizer_option, "--optimizer-option")
    if mode == "infer" and (optimizer or raw_optimizer_options):
        raise UsageError("--optimizer applies to --mode train")

    from mixbench.environment import resolve_device
    from mixbench.plugins import get_registry

    registry = get_registry()
    mixers = list(dict.fromkeys(mixer or registry.names("mixer")))
    optimizers: list[str | None] = (
        list(dict.fromkeys(optimizer or ["sgd"])) if mode == "train" else [None]
    )
    mixer_opts = _split_options(mixers, raw_mixer_options, "mixer")
    optimizer_opts = (
        _split_options([o for o in optimizers if o], raw_optimizer_options, "optimizer")
        if mode == "train"
        else {}
    )
    import torch

    resolved = resolve_device(device)
    threads_used = threads if threads else torch.get_num_threads()
    fixed = {
        "level": level,
        "mode": mode,
        "lr": lr if mode == "train" else None,
        "dim": dim if dim is not None else (DEFAULT_DIM if level != "model" else None),
        "batch_size": batch_size,
        "preset": preset if level == "model" else None,
        "device": resolved,
        "dtype": dtype,
        "threads": threads_used,
        "compile": compile_,
        "seed": seed,
    }
    cells = plan_cells(
        mixers=mixers,
        mixer_options=mixer_opts,
        optimizers=optimizers,
        optimizer_options=optimizer_opts,
        sizes=sizes,
        fixed=fixed,
    )
    timing: dict[str, Any] = dict(QUICK_TIMING) if quick else {}
    timing["min_samples"] = repeats
    overrides: dict[str, float | None] = {
        "min_time_s": min_time,
        "max_time_s": max_time,
        "warmup_iters": warmup_iters,
        "warmup_s": warmup_time,
    }
    timing.update({key: value for key, value in overrides.items() if value is not None})
    if min_time is not None and max_time is None:  # the cap follows a longer minimum
        timing["max_time_s"] = max(float(timing.get("max_time_s", 10.0)), min_time)
    from mixbench.measure.timing import TimingConfig

    try:
        TimingConfig(**timing)
    except ValueError as exc:
        raise UsageError(f"timing options: {exc}") from None
    options = {
        "mixers": mixers,
        "mixer_options": raw_mixer_options,
        "optimizers": [o for o in optimizers if o],
        "optimizer_options": raw_optimizer_options,
        "tokens": [s[0] for s in sizes if s[0]],
        "image_sizes": [s[2] for s in sizes if s[2]],
        "layout": layout,
        "quick": quick,
        "timing": timing,
        **fixed,
    }
    return BenchPlan(cells=cells, timing=timing, fixed=fixed, options=options)


def bench_cells(**options: Any) -> tuple[list[Any], dict[str, Any]]:
    """The cells (and timing settings) ``mixbench bench`` would run for these options.

    ``options`` are the command's keyword parameters with command-line-shaped values
    (``mixer=["attention"]``, ``tokens="256,1024"``); missing ones take the command's
    defaults; the run-level ones (``out``, ``as_json``, ``quiet``, ``timeout``) are ignored.
    Used by ``mixbench sweep`` so a sweep's cells carry the keys the command gives them.
    """
    import inspect

    accepted = set(inspect.signature(plan_bench).parameters)
    values = {
        name: param.default.default if hasattr(param.default, "default") else param.default
        for name, param in inspect.signature(bench).parameters.items()
        if name in accepted
    }
    values = {k: (None if v is ... else v) for k, v in values.items()}
    unknown = set(options) - accepted - {"out", "as_json", "quiet", "timeout"}
    if unknown:
        raise UsageError(f"bench: unknown option(s) {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in options.items() if k in accepted})
    plan = plan_bench(**values)
    return plan.cells, plan.timing


def _run(
    *,
    cells: list[Any],
    timing: dict[str, Any],
    out: Path,
    quick: bool,
    as_json: bool,
    quiet: bool,
    timeout: float,
    environment: dict[str, Any],
    options: dict[str, Any],
) -> None:
    """Probe, run every cell in the worker, store rows as they come, render the tables."""
    from rich.console import Console

    from mixbench.store import RunDir, utc_now
    from mixbench.tables import print_tables, write_leaderboards
    from mixbench.worker import IsolatedRunner

    console = Console(stderr=True, highlight=False)
    run = RunDir.create(out, "bench")
    run_id = run.path.name
    manifest: dict[str, Any] = {
        "schema": 1,
        "kind": "bench",
        "run_id": run_id,
        "command": ["mixbench", *sys.argv[1:]],
        "config": options,
        "environment": environment,
        "cells": len(cells),
        "started_at": utc_now(),
        "ended_at": None,
        "status": "running",
    }
    run.write_manifest(manifest)
    load = environment.get("load_average_1min")
    if load is not None and load >= 1.0 and not quiet:
        console.print(
            f"[yellow]warning:[/yellow] load average {load:.2f} on {environment.get('cores')} "
            "cores: other processes are busy, so latencies will be inflated and noisy. "
            "Compare cells within one run, or rerun on a quiet machine."
        )
    rows: list[dict[str, Any]] = []
    status = "failed"
    progress = None
    previous_term = _terminate_as_interrupt()
    try:
        with IsolatedRunner(timeout_s=timeout, log_path=run.path / "worker.log") as runner:
            config = options
            probe = runner.call(
                "mixbench.measure.probes:run_probes",
                {
                    "device": config["device"],
                    "dtype": config["dtype"],
                    "threads": config["threads"],
                    "quick": quick,
                },
                timeout_s=timeout,
            )
            manifest = run.update_manifest(probe=probe, plugin_problems=runner.plugin_problems)
            settings = {"timing": timing, "probe": probe}
            progress = _progress(console, quiet)
            task = progress.add_task("bench", total=len(cells)) if progress else None
            for cell in cells:
                if progress is not None:
                    progress.update(task, description=_label(dict(cell.config)))
                row = runner.run(
                    {
                        "kind": cell.kind,
                        "key": cell.key,
                        "config": dict(cell.config),
                        "settings": settings,
                        "run_id": run_id,
                    }
                )
                run.append_row(row)
                rows.append(row)
                if as_json:
                    sys.stdout.write(json.dumps(row, sort_keys=True) + "\n")
                    sys.stdout.flush()
                if progress is not None:
                    progress.advance(task)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise typer.Exit(130) from None
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        if progress is not None:
            progress.stop()
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        manifest = run.update_manifest(ended_at=utc_now(), status=status, counts=counts)
        if rows:
            write_leaderboards(rows, run.path, manifest)
        if not quiet:
            if rows:
                print_tables(rows, console)
            summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no cells"
            console.print(f"{summary}; results in [bold]{run.path}[/bold]")


def _terminate_as_interrupt() -> Any:
    """Make SIGTERM stop the run like Ctrl-C: the rows so far are kept, the manifest says
    ``interrupted`` and the tables are written. Returns the previous handler (None when
    not in the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _progress(console: Any, quiet: bool) -> Any:
    if quiet:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    progress.start()
    return progress
