"""``mixbench bench``: parse the command line into `BenchOptions`, run, render.

What a cell measures is ``mixbench.bench.cell``; the options and the plan are
``mixbench.bench.options``; the run directory and resume are ``mixbench.bench.run``; running
the cells (executors, interrupts, process repeats) is ``mixbench.runs.driver``. Nothing here
imports torch at module level: ``mixbench --help`` stays fast.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from mixbench.errors import UsageError

RUN_OPTIONS = "(only --executor, --executor-option, --max-parallel, --json and --quiet)"


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
        None, "--tokens", help="Token counts N, e.g. 256,1024,4096 (the default)."
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
        None, "--dim", help="Channels (default: 64; the preset's for --level model)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", help="Batch size (default: 8; --quick: 4)."
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
    processes: int | None = typer.Option(
        None,
        "--processes",
        "-p",
        help="Fresh worker processes per cell, run interleaved; the row reports over their "
        "medians (default 5; --quick: 1). mixbench compare needs 4 or more a side.",
    ),
    repeats: int = typer.Option(5, "--repeats", help="Minimum timed samples per process."),
    min_time: float | None = typer.Option(
        None, "--min-time", help="Seconds of timed samples per process at least (default: 1)."
    ),
    max_time: float | None = typer.Option(
        None,
        "--max-time",
        help="Cap on timed seconds per process when samples stay noisy (default: 10).",
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
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="Run directory of an unfinished bench: run exactly its cells without a row, "
        f"with its recorded options {RUN_OPTIONS}.",
    ),
    executor: str = typer.Option(
        "subprocess",
        "--executor",
        "-e",
        help="Where cells run: subprocess (isolated workers), inline, ray, or any registered.",
    ),
    executor_option: list[str] = typer.Option(
        None, "--executor-option", help="KEY=VALUE for the executor, e.g. address=auto."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Alias of --executor-option address=... (ray)."
    ),
    max_parallel: int = typer.Option(
        1, "--max-parallel", "-j", help="Cells in flight at once; a timing cell still runs alone."
    ),
    out: Path = typer.Option(
        Path("results/runs"), "--out", help="Directory under which the run directory is created."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print each row as a JSON line on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no tables."),
    quick: bool = typer.Option(
        False, "--quick", help="Every mixer at small sizes, about a minute on a laptop CPU."
    ),
) -> None:
    """Measure latency, throughput, peak memory and FLOPs of token mixers as N grows.

    Ctrl-C finishes the cell in flight and keeps every row (twice, or SIGTERM: abandons it);
    --resume RUN_DIR then runs exactly the cells without a row.
    """
    from mixbench.bench.options import BenchOptions, check_whole
    from mixbench.runs.driver import executor_options

    options = BenchOptions.from_command_line(**{k: v for k, v in locals().items() if v is not None})
    check_whole("--max-parallel", max_parallel, 1)
    run_options = executor_options(executor_option, executor, address=ray_address)
    if resume is not None and options != BenchOptions():
        raise UsageError(f"--resume reruns the run's recorded options; give none {RUN_OPTIONS}")
    resume_argv = ["mixbench", "bench", "--executor", executor, "-j", str(max_parallel)]
    for item in executor_option or []:
        resume_argv += ["--executor-option", item]
    _run(options, out, resume, executor, run_options, max_parallel, as_json, quiet, resume_argv)


def _run(
    options: Any,
    out: Path,
    resume: Path | None,
    executor: str,
    executor_options: dict[str, str],
    max_parallel: int,
    as_json: bool,
    quiet: bool,
    resume_argv: list[str],
) -> None:
    from rich.console import Console

    from mixbench.bench.run import load_warning, run_bench
    from mixbench.runs.driver import resume_hint

    console = Console(stderr=True, highlight=False, soft_wrap=True)

    def warn(bench: Any) -> None:
        warning = load_warning(bench)
        if warning and not quiet:
            console.print(f"warning: {warning}", markup=False, style="yellow")

    bench, outcome = run_bench(
        options,
        out=out,
        resume=resume,
        executor=executor,
        executor_options=executor_options,
        max_parallel=max_parallel,
        quiet=quiet,
        on_row=_print_json if as_json else None,
        on_start=warn,
    )
    _render(bench.run, outcome, console, quiet)
    if outcome.status == "interrupted":
        command = shlex.join([*resume_argv, "--resume", str(bench.run.path)])
        console.print(resume_hint(outcome, bench.run, command), markup=False)
        raise typer.Exit(outcome.exit_code)


def _print_json(row: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(row, sort_keys=True) + "\n")
    sys.stdout.flush()


def _render(run: Any, outcome: Any, console: Any, quiet: bool) -> None:
    """The run's tables (every session's rows), the resolution warnings and a summary line."""
    from mixbench.report.resolution import RECOMMENDED_THRESHOLD, resolution_warnings
    from mixbench.report.tables import print_tables, write_leaderboards

    rows = run.rows()
    if rows:
        write_leaderboards(rows, run.path, run.read_manifest())
    if quiet:
        return
    if rows:
        print_tables(rows, console)
    for line in resolution_warnings(rows, RECOMMENDED_THRESHOLD):
        console.print(f"warning: {line}", markup=False, style="yellow")
    counts = outcome.tally.counts
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no cells run"
    console.print(f"{summary}; results in [bold]{run.path}[/bold]")
