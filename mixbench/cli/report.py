"""``mixbench leaderboard``, ``compare``, ``plot`` and ``report``: turn run directories into
tables, verdicts, figures and an HTML site.

Nothing heavy is imported at module level (pandas, matplotlib, torch): the CLI imports this
module at start-up for its signatures, and ``mixbench --help`` must stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mixbench.errors import UsageError

LEADERBOARD_FORMATS = ("md", "csv", "json", "html", "pytest-benchmark")


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _read(paths: list[Path], kind: str | None = None) -> Any:
    """Results under ``paths``; unreadable lines are reported (file:line) and skipped."""
    from mixbench.report.results import read_results

    results = read_results(paths, kind=kind)
    if results.problems:
        console = _stderr()
        for problem in results.problems:
            console.print(f"[yellow]warning:[/] skipped {problem}", markup=True)
    return results


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--output {output}: cannot write ({exc.strerror or exc})") from None
    _stderr().print(f"wrote {output}")


def leaderboard_command(
    run_dirs: list[Path] = typer.Argument(
        ...,
        help="Run directories (searched recursively) or results.jsonl files.",
        show_default=False,
    ),
    kind: str | None = typer.Option(
        None, "--kind", help="bench or train (needed only when the runs hold both)."
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="Metric to rank by: latency, memory, throughput, accuracy, or a column name "
        "such as peak_mem_bytes. Default: latency (bench), final_val_acc (train).",
    ),
    group_by: str | None = typer.Option(
        None,
        "--group-by",
        help="Comma-separated row labels, e.g. mixer,optimizer. Default: mixer (bench) or "
        "mixer,optimizer (train), plus whatever else varies between the rows.",
    ),
    fmt: str = typer.Option(
        "md", "--format", help="md, csv, json, html, or pytest-benchmark (saved-run JSON)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write here instead of standard output."
    ),
) -> None:
    """Rank mixers across runs: merge, aggregate repeats and seeds, pivot, mark the best."""
    if fmt not in LEADERBOARD_FORMATS:
        raise UsageError(f"--format: {fmt!r} is not one of {', '.join(LEADERBOARD_FORMATS)}")
    results = _read(run_dirs, kind=kind)
    if fmt == "pytest-benchmark":
        from mixbench.report.pytest_benchmark import dumps_pytest_benchmark

        _write(dumps_pytest_benchmark(results.frame), output)
        return
    from mixbench.report.leaderboard import build_leaderboard

    fields = [f.strip() for f in group_by.split(",") if f.strip()] if group_by else None
    board = build_leaderboard(results.frame, kind=kind, metric=metric, group_by=fields)
    if fmt == "html":
        from mixbench.report.site import leaderboard_page

        _write(leaderboard_page(board), output)
        return
    _write(board.render(fmt), output)


def compare_command(
    base: Path = typer.Argument(..., help="The reference run directory.", show_default=False),
    new: Path = typer.Argument(..., help="The run to judge against it.", show_default=False),
    metric: str = typer.Option(
        "latency", "--metric", help="Metric to compare: latency, throughput, memory, ..."
    ),
    threshold: str = typer.Option(
        "5%",
        "--threshold",
        help="Smallest change that counts, e.g. 5% (also 5 or 0.05). A change counts only "
        "when it is also statistically significant.",
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Also fail (exit 1) on a possible regression (slower with confidence, but not "
        "beyond the threshold) or a cell with too few repeats to judge.",
    ),
) -> None:
    """Pair BASE's and NEW's cells by key and judge each change on process-level samples.

    Exit 0: no regression; 1: a regression (with --strict, also a possible regression or a
    cell with too few repeats to judge); 2: unusable input.
    """
    from rich.console import Console

    from mixbench.report.compare import compare_results, parse_threshold, render_comparison

    limit = parse_threshold(threshold)
    base_results, new_results = _read([base]), _read([new])
    comparison = compare_results(
        base_results.frame, new_results.frame, metric=metric, threshold=limit
    )
    render_comparison(comparison, Console(highlight=False, soft_wrap=True))
    code = comparison.gate(strict=strict)
    if code:
        raise typer.Exit(code)


def plot_command(
    run_dirs: list[Path] = typer.Argument(
        ...,
        help="Run directories (searched recursively) or results.jsonl files.",
        show_default=False,
    ),
    kind: str = typer.Option(
        ..., "--kind", help="scaling, memory, curves or pareto.", show_default=False
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Image file to write (default: ./<kind>.png)."
    ),
) -> None:
    """Draw latency/memory scaling, training curves or accuracy-vs-throughput as a PNG."""
    from mixbench.report.plots import PLOT_KINDS, plot, require_matplotlib

    if kind not in PLOT_KINDS:
        raise UsageError(f"--kind: {kind!r} is not one of {', '.join(PLOT_KINDS)}")
    try:
        require_matplotlib()
    except UsageError as exc:
        # Printed here without markup: cli.fail would read "[plot]" as a rich style tag.
        _stderr().print(f"Error: {exc}", markup=False)
        raise typer.Exit(2) from None
    results = _read(run_dirs)
    target = output or Path(f"{kind}.png")
    plot(results.frame, kind, target)
    _stderr().print(f"wrote {target}")


def report_command(
    run_dirs: list[Path] = typer.Argument(
        ...,
        help="Run directories (searched recursively) or results.jsonl files.",
        show_default=False,
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Directory to write index.html into.", show_default=False
    ),
    compare: tuple[Path, Path] | None = typer.Option(
        None,
        "--compare",
        help="BASE NEW: also judge NEW against BASE cell by cell, regressions marked.",
        show_default=False,
    ),
    threshold: str = typer.Option(
        "5%", "--threshold", help="Smallest change --compare counts, e.g. 5%."
    ),
) -> None:
    """Write a static HTML report (opens from file://, no server): provenance, sortable
    leaderboards, interactive charts and, with --compare, a comparison."""
    from mixbench.report.compare import parse_threshold
    from mixbench.report.site import build_site

    limit = parse_threshold(threshold)
    for path in [*run_dirs, *(compare or ())]:
        if not path.exists():
            raise UsageError(f"{path}: no such run directory or results file")
    index = build_site(run_dirs, output, compare=compare, threshold=limit)
    _stderr().print(f"wrote {index}")
