"""``mixbench sweep``: run a sweep file's cells through an executor, resumably.

The whole file is checked before anything runs (``mixbench.sweep``). Each finished cell's
row is appended (fsynced) to ``results.jsonl`` as it arrives, a training cell's curves to
``curves/<key>.json``, so a run killed at any moment keeps every finished cell and loses at
most the cells in flight. The manifest records the sweep (its text and the hash of its cell
keys); ``--resume RUN_DIR`` runs exactly the cells whose keys have no row yet, and refuses a
file that now means other cells. A lock file keeps two sweeps from writing one run directory.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import typer

from mixbench.errors import UsageError

DEFAULT_EXECUTOR = "subprocess"
LOCK_FILE = ".sweep.lock"

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
        help="With --executor ray: attach to a running cluster (auto, HOST:PORT or "
        "ray://HOST:10001) instead of starting a local one.",
    ),
    executor_option: list[str] = typer.Option(
        None, "--executor-option", help="KEY=VALUE for the executor (repeatable)."
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
    from mixbench.cli import parse_key_values
    from mixbench.namecache import NameCheck, known_names
    from mixbench.store import RunDir, read_manifest, safe_name
    from mixbench.sweep import parse_sweep, read_sweep

    if sweep_file is None and resume is None:
        raise UsageError("give a sweep file, or --resume RUN_DIR")
    options = parse_key_values(executor_option, "--executor-option")
    for reserved in ("max_parallel", "run_dir", "address"):
        if reserved in options:
            raise UsageError(f"--executor-option {reserved}: use the command's own option")
    names = NameCheck(known_names())
    recorded: dict[str, Any] = {}
    if resume is not None:
        recorded = _recorded_sweep(resume, read_manifest(resume))
    if sweep_file is not None:
        spec = read_sweep(sweep_file)
    else:
        spec = parse_sweep(
            recorded["text"], f"{resume}/manifest.json (recorded sweep)", names=names
        )
    executor_name = executor or spec.executor or DEFAULT_EXECUTOR
    if ray_address is not None:
        if executor_name != "ray":
            raise UsageError("--ray-address applies to --executor ray")
        options["address"] = ray_address
    _check_executor(names, executor_name, options)
    parallel = max_parallel or spec.max_parallel or 1

    sweep = spec.plan()  # second pass: the commands' planners; imports torch
    done: set[str] = set()
    if resume is not None:
        from mixbench.sweep import check_same_sweep

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
    with _locked(run.path):
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
        )
        from mixbench.commands.train import run_tuned_stage  # a grid that asked for --tune-lr

        run_tuned_stage(
            [p.cell for p in sweep.cells],
            {
                "run": run,
                "executor_name": executor_name,
                "executor_options": options,
                "max_parallel": parallel,
                "quiet": quiet,
                "resume_command": shlex.join([*resume_argv, "--resume", str(run.path)]),
            },
        )


def _check_executor(names: Any, name: str, options: Mapping[str, Any]) -> None:
    """The executor's name and option keys, from the name cache: before anything is planned."""
    from mixbench.errors import suggest

    try:
        accepted, var_kwargs = names.require("executor", name)
    except ValueError as exc:
        raise UsageError(f"--executor: {exc}") from None
    own = [key for key in accepted if key not in ("max_parallel", "run_dir", "address")]
    for key in options:
        if key not in accepted and not var_kwargs:
            close = suggest(key, own)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(
                f"--executor-option {key}: executor {name!r} has no such option.{hint} "
                f"Accepted: {', '.join(own) or '(none)'}."
            )


def _recorded_sweep(run_dir: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise UsageError(f"--resume {run_dir}: no such run directory")
    recorded = manifest.get("sweep")
    if manifest.get("kind") != "sweep" or not isinstance(recorded, dict) or "text" not in recorded:
        raise UsageError(
            f"--resume {run_dir}: not a sweep run directory (its manifest records no sweep)"
        )
    return recorded


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory (released by the OS even on kill -9)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, one sweep per run dir by hand
        yield
        return
    handle = open(path / LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"{path} is being written by another mixbench sweep; wait for it or stop it"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


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


class Tally:
    """Counts by status, and what the progress display shows."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []

    def add(self, row: Mapping[str, Any], label: str) -> None:
        self.done += 1
        status = str(row.get("status"))
        self.counts[status] = self.counts.get(status, 0) + 1
        if status not in ("ok", "skipped"):
            self.failures.append(f"{label}: {status}: {row.get('reason')}")

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.counts.items() if s not in ("ok", "skipped"))


def run_sweep(
    *,
    sweep: Any,
    todo: Sequence[Any],
    run: Any,
    resumed: bool,
    executor_name: str,
    executor_options: Mapping[str, Any],
    max_parallel: int,
    quiet: bool,
    file: str | None,
    resume_command: str,
) -> None:
    """Record the run in the manifest, run the cells, write rows as they come, summarise."""
    from rich.console import Console

    from mixbench.executors import Interrupted, StopRequest, create_executor, run_jobs
    from mixbench.store import utc_now

    console = Console(stderr=True, highlight=False, soft_wrap=True)

    def say(text: str) -> None:
        if not quiet:
            console.print(text, markup=False)

    manifest = run.read_manifest() if resumed else _new_manifest(sweep, run, file)
    session = {
        "started_at": utc_now(),
        "command": ["mixbench", *sys.argv[1:]],
        "executor": executor_name,
        "max_parallel": max_parallel,
        "cells": len(todo),
        "host": os.uname().nodename if hasattr(os, "uname") else None,
    }
    sessions = [*manifest.get("sessions", []), session]
    manifest = run.update_manifest(status="running", ended_at=None, sessions=sessions)
    tally = Tally(len(sweep.cells), len(sweep.cells) - len(todo))
    say(
        f"run directory: {run.path}  ({len(todo)} of {len(sweep.cells)} cells to run, "
        f"executor {executor_name}, max parallel {max_parallel})"
    )
    status, executor = "failed", None

    def on_stop(stop: StopRequest) -> None:
        if stop.level == 1:
            console.print(
                f"{stop.signal_name}: finishing the cells in flight; press Ctrl-C "
                "again to abandon them",
                markup=False,
            )

    stop = StopRequest(on_stop)
    try:
        with stop.installed():
            if not todo:
                say(f"nothing to run: all {tally.total} cells have rows")
                status = "complete"
                return
            if executor_name == "ray":
                say("starting Ray (a local instance takes several seconds)...")
            executor = create_executor(
                executor_name,
                max_parallel=max_parallel,
                run_dir=str(run.path),
                options=executor_options,
            )
            check = getattr(executor, "check", None)
            if callable(check):  # cells this executor can never run: refused before any runs
                check([_job(p, run.path.name, {}) for p in todo])
            probes = _probes(todo, executor, manifest.get("probes") or {}, say)
            if probes:
                manifest = run.update_manifest(probes=probes)
            jobs = [_job(p, run.path.name, probes) for p in todo]
            with _progress(console, tally, executor, quiet) as refresh:

                def finished(done: Any) -> None:
                    with stop.writing():
                        _write(run, done)
                    tally.add(done.row, done.job.label)
                    refresh()

                left = run_jobs(
                    jobs,
                    executor,
                    max_parallel=max_parallel,
                    on_finished=finished,
                    stop=stop,
                    on_submit=lambda _job: refresh(),
                    on_tick=refresh,
                )
            status = "interrupted" if left else "complete"
    except Interrupted:
        status = "interrupted"
    except UsageError:
        if not resumed and not run.results_path.exists():
            shutil.rmtree(run.path)  # refused before any cell ran: leave no empty run behind
            raise
        status = "failed"
        raise
    finally:
        if executor is not None:
            executor.close(cancel=status != "complete")
        if run.path.exists():
            run.update_manifest(status=status, ended_at=utc_now(), counts=_all_counts(run))
    if status == "interrupted":
        exit_code = 143 if stop.signal_name == "SIGTERM" else 130
        console.print(
            f"interrupted ({stop.signal_name}): {tally.done} of {tally.total} cells "
            f"have rows in {run.path}. Resume with:\n  {resume_command}",
            markup=False,
        )
        raise typer.Exit(exit_code)
    _summarise(tally, run, console, quiet)


def _new_manifest(sweep: Any, run: Any, file: str | None) -> dict[str, Any]:
    from mixbench.environment import collect_environment
    from mixbench.store import utc_now

    devices = sorted({str(p.cell.config.get("device") or "cpu") for p in sweep.cells})
    manifest = {
        "schema": 1,
        "kind": "sweep",
        "run_id": run.path.name,
        "command": ["mixbench", *sys.argv[1:]],
        "sweep": sweep.manifest_entry(file),
        "cells": len(sweep.cells),
        "environment": collect_environment(devices[0]),
        "started_at": utc_now(),
        "ended_at": None,
        "status": "running",
        "sessions": [],
    }
    run.write_manifest(manifest)
    return manifest


def _probe_key(config: Mapping[str, Any]) -> str:
    return f"{config.get('device')}/{config.get('dtype')}/{config.get('threads')}"


def _probes(
    todo: Sequence[Any], executor: Any, recorded: Mapping[str, Any], say: Callable[[str], None]
) -> dict[str, Any]:
    """The machine's matmul and bandwidth probes, once per (device, dtype, threads) of the
    bench cells, as ``mixbench bench`` runs them; kept in the manifest so a resumed run
    reuses the first session's numbers. Cells on a remote cluster get none (a probe of this
    machine would not describe theirs)."""
    probes = dict(recorded)
    wanted = {_probe_key(p.cell.config): p.cell.config for p in todo if p.cell.kind == "bench"}
    missing = {k: c for k, c in wanted.items() if k not in probes}
    if not missing or not getattr(executor, "local", True):
        return probes
    from mixbench.measure.probes import run_probes

    for key, config in missing.items():
        say(f"probing this machine's matmul peak and bandwidth ({key})...")
        probes[key] = run_probes(
            str(config.get("device")), str(config.get("dtype")), config.get("threads")
        )
    return probes


def _job(planned: Any, run_id: str, probes: Mapping[str, Any]) -> Any:
    from mixbench.executors import Job

    settings = dict(planned.settings)
    if planned.cell.kind == "bench":
        settings["probe"] = probes.get(_probe_key(planned.cell.config))
    return Job(
        key=planned.cell.key,
        kind=planned.cell.kind,
        config=dict(planned.cell.config),
        settings=settings,
        run_id=run_id,
        timeout=planned.timeout,
        label=planned.cell.label(),
        runner=planned.runner,
    )


def _write(run: Any, done: Any) -> None:
    """Append the row (a training cell's curves first, beside it) and fsync it."""
    if done.job.kind == "train" and done.curves:
        from mixbench.train import Outcome, save_outcome

        save_outcome(run, Outcome(done.row, done.curves))
    else:
        run.append_row(done.row)


def _all_counts(run: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in run.rows():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


@contextlib.contextmanager
def _progress(console: Any, tally: Tally, executor: Any, quiet: bool) -> Iterator[Any]:
    """One bar for the whole sweep (done/total, failures, ETA) and the executor's status."""
    if quiet:
        yield lambda: None
        return
    from rich.console import Group
    from rich.live import Live
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    progress = Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("sweep", total=tally.total, completed=tally.done, failed=0)
    status = Text("")
    with Live(Group(progress, status), console=console, refresh_per_second=4, transient=True):

        def refresh() -> None:
            progress.update(task, completed=tally.done, failed=tally.failed)
            status.plain = f"  {executor.status()}"

        refresh()
        yield refresh


def _summarise(tally: Tally, run: Any, console: Any, quiet: bool) -> None:
    """Counts of this session, the failures, and the run's tables (every session's rows)."""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(tally.counts.items())) or "nothing to run"
    console.print(f"sweep complete: {counts}; results in {run.path}", markup=False)
    for line in tally.failures[:10]:
        console.print(f"  {line}", markup=False)
    if len(tally.failures) > 10:
        console.print(f"  ... and {len(tally.failures) - 10} more", markup=False)
    rows = run.rows()
    bench = [r for r in rows if r.get("kind") == "bench"]
    train = [r for r in rows if r.get("kind") == "train"]
    if bench:
        from mixbench.tables import print_tables, write_leaderboards

        write_leaderboards(bench, run.path, run.read_manifest())
        if not quiet:
            print_tables(bench, console)
    if train and not quiet:
        from mixbench.commands.train import print_summary

        print_summary(train, run.path)
