"""``mixbench sweep``: run a sweep file's cells through an executor, resumably.

The whole file is checked before anything runs (``mixbench.sweep.sweep_file``). Each finished cell's
row is appended (fsynced) to ``results.jsonl`` as it arrives, a training cell's curves to
``curves/<key>.json``, so a run killed at any moment keeps every finished cell and loses at
most the cells in flight. The manifest records the sweep (its text and the hash of its cell
keys); ``--resume RUN_DIR`` runs exactly the cells whose keys have no row yet, and refuses a
file that now means other cells. A lock file keeps two sweeps from writing one run directory.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from mixbench.errors import UsageError

DEFAULT_EXECUTOR = "subprocess"

FAIRNESS = (
    "Timing cells (bench) always run one at a time, with no other cell beside them, "
    "whatever --max-parallel says: a latency measured next to another busy cell measures "
    "the neighbour. Training cells run up to --max-parallel side by side."
)


def sweep_command(
    sweep_file: Path | None = typer.Argument(
        None, help="The sweep file (TOML). Optional with --resume: the run's recorded sweep."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the cells and count them; run nothing."
    ),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="Run directory of an unfinished sweep: run exactly its missing cells.",
    ),
    executor: str | None = typer.Option(
        None,
        "--executor",
        "-e",
        help="Where cells run: subprocess (default; each cell isolated), inline (this process), "
        "ray (a Ray cluster), or any registered executor (mixbench list executors).",
    ),
    max_parallel: int | None = typer.Option(
        None, "--max-parallel", "-j", min=1, help="Cells in flight at once (default 1). " + FAIRNESS
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="Alias of --executor-option address=... (ray: attach to a running cluster: auto, "
        "HOST:PORT or ray://HOST:10001, instead of starting a local one).",
    ),
    executor_option: list[str] = typer.Option(
        None,
        "--executor-option",
        help="KEY=VALUE for the executor (repeatable), e.g. address=auto for ray.",
    ),
    out: Path = typer.Option(
        Path("results/sweeps"), "--out", help="Directory under which the run directory is created."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no tables."),
) -> None:
    """Run a TOML sweep of bench and train cells: resumable, in parallel, on a cluster.

    Every cell is checked before the first runs. Ctrl-C finishes the cells in flight (twice:
    abandons them), keeps every finished row and prints the command that resumes the run.
    Timing cells (bench) always run alone; training cells run up to --max-parallel at once.
    """
    from mixbench.core.namecache import NameCheck, known_names
    from mixbench.runs.driver import executor_options, locked
    from mixbench.runs.store import RunDir, read_manifest, safe_name
    from mixbench.sweep.sweep_file import parse_sweep, read_sweep, recorded_sweep

    if sweep_file is None and resume is None:
        raise UsageError("give a sweep file, or --resume RUN_DIR")
    names = NameCheck(known_names())
    recorded: dict[str, Any] = {}
    if resume is not None:
        recorded = recorded_sweep(resume, read_manifest(resume))
    if sweep_file is not None:
        spec = read_sweep(sweep_file)
    else:
        spec = parse_sweep(
            recorded["text"], f"{resume}/manifest.json (recorded sweep)", names=names
        )
    executor_name = executor or spec.executor or DEFAULT_EXECUTOR
    options = executor_options(executor_option, executor_name, address=ray_address)
    parallel = max_parallel or spec.max_parallel or 1

    sweep = spec.plan()  # second pass: the commands' planners; imports torch
    done: set[str] = set()
    if resume is not None:
        from mixbench.sweep.sweep_file import check_same_sweep

        check_same_sweep(sweep, recorded, resume)
        done = RunDir(resume).done_keys()
    todo = [p for p in sweep.cells if p.cell.key not in done]
    if dry_run:
        _print_dry_run(sweep, done, quiet)
        return

    argv = ["mixbench", "sweep", *([str(sweep_file)] if sweep_file else [])]
    resume_argv = [
        *argv,
        *(["--executor", executor] if executor else []),
        *(["--max-parallel", str(max_parallel)] if max_parallel else []),
        *(["--ray-address", ray_address] if ray_address else []),
    ]
    for item in executor_option or []:
        resume_argv += ["--executor-option", item]
    run = RunDir(resume) if resume is not None else RunDir.create(out, safe_name(sweep.file.name))
    with locked(run.path):
        if resume is not None:  # read again under the lock: no other sweep adds rows now
            done = run.done_keys()
            todo = [p for p in sweep.cells if p.cell.key not in done]
        run_sweep(
            sweep=sweep,
            todo=todo,
            run=run,
            resumed=resume is not None,
            executor_name=executor_name,
            executor_options=options,
            max_parallel=parallel,
            quiet=quiet,
            file=str(sweep_file) if sweep_file else None,
            resume_command=shlex.join([*resume_argv, "--resume", str(run.path)]),
            tables=False,
        )
        from rich.console import Console

        from mixbench.cli.train import run_tuned_stage
        from mixbench.report.tables import print_run_tables  # a grid that asked for --tune-lr

        run_tuned_stage(
            [p.cell for p in sweep.cells],
            {
                "run": run,
                "executor_name": executor_name,
                "executor_options": options,
                "max_parallel": parallel,
                "quiet": quiet,
                "resume_command": shlex.join([*resume_argv, "--resume", str(run.path)]),
                "tables": False,
            },
        )
        print_run_tables(run, Console(stderr=True, highlight=False, soft_wrap=True), quiet)


def _print_dry_run(sweep: Any, done: set[str], quiet: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    kinds: dict[str, int] = {}
    for planned in sweep.cells:
        kinds[planned.cell.kind] = kinds.get(planned.cell.kind, 0) + 1
    if not quiet:
        title = Text(f"sweep {sweep.file.name!r} ({sweep.file.source})")
        table = Table(title=title, title_justify="left")
        for column in ("#", "kind", "key", "cell", "from", *(["done"] if done else [])):
            table.add_column(column)
        for number, planned in enumerate(sweep.cells, start=1):
            cells = [
                str(number),
                planned.cell.kind,
                planned.cell.key,
                planned.cell.label(),
                planned.origin,
                *(["yes" if planned.cell.key in done else ""] if done else []),
            ]
            table.add_row(*(Text(c) for c in cells))  # labels hold brackets: never markup
        console.print(table)
    by_kind = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    text = f"{len(sweep.cells)} cells ({by_kind})"
    if sweep.duplicates:
        text += f"; {sweep.duplicates} duplicate combination(s) merged"
    if done:
        missing = sum(p.cell.key not in done for p in sweep.cells)
        text += f"; {len(sweep.cells) - missing} done, {missing} to run"
    console.print(text + f"; sweep hash {sweep.hash}")


# -- running ---------------------------------------------------------------------------------


def run_sweep(
    *,
    sweep: Any,
    todo: Any,
    run: Any,
    resumed: bool,
    executor_name: str,
    executor_options: Any,
    max_parallel: int,
    quiet: bool,
    file: str | None,
    resume_command: str,
    tables: bool = True,
) -> None:
    """Record the sweep in a new run's manifest, drive its cells, summarise (the run's tables
    too unless ``tables`` is false: a caller with more stages to run prints them at the end)."""
    from rich.console import Console

    from mixbench.runs.driver import drive, resume_hint
    from mixbench.sweep.sweep_file import write_sweep_manifest

    if not resumed:
        write_sweep_manifest(sweep, run, file)
    outcome = drive(
        todo,
        run,
        total=len(sweep.cells),
        executor_name=executor_name,
        executor_options=executor_options,
        max_parallel=max_parallel,
        quiet=quiet,
        label="sweep",
        resumed=resumed,
    )
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if outcome.status == "interrupted":
        console.print(resume_hint(outcome, run, resume_command), markup=False)
        raise typer.Exit(outcome.exit_code)
    _summarise(outcome.tally, run, console)
    if tables:
        from mixbench.report.tables import print_run_tables

        print_run_tables(run, console, quiet)


def _summarise(tally: Any, run: Any, console: Any) -> None:
    """Counts of this session and its failures."""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(tally.counts.items())) or "nothing to run"
    console.print(f"sweep complete: {counts}; results in {run.path}", markup=False)
    for line in tally.failures[:10]:
        console.print(f"  {line}", markup=False)
    if len(tally.failures) > 10:
        console.print(f"  ... and {len(tally.failures) - 10} more", markup=False)
