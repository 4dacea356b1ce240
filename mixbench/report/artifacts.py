"""Every table and figure of one kind of run, written as files: what ``results/`` commits
next to each example run (``results/studies/_examples.py``), so the README's tables and
plots always come from one function."""

from __future__ import annotations

import sys
from pathlib import Path


def write_report(run_dirs: list[Path], out_dir: Path, kind: str) -> list[Path]:
    """Every table and figure of one kind of run into ``out_dir``, for committed examples.

    bench: ``leaderboard.md/.csv/.json`` (latency), ``memory.md``, ``scaling.png`` and
    ``memory.png``; train: ``leaderboard.md/.csv/.json`` (final accuracy), ``curves.png``
    and ``pareto.png``. A nox session regenerating ``results/`` calls this after running the
    sweep, so the README's tables and plots always come from one command.
    """
    from mixbench.report.leaderboard import build_leaderboard
    from mixbench.report.plots import plot
    from mixbench.report.results import read_results

    results = read_results(run_dirs, kind=kind)
    for problem in results.problems:
        print(f"warning: skipped {problem}", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    board = build_leaderboard(results.frame, kind=kind)
    for fmt in ("md", "csv", "json"):
        path = out_dir / f"leaderboard.{fmt}"
        path.write_text(board.render(fmt), encoding="utf-8")
        written.append(path)
    if kind == "bench":
        memory = out_dir / "memory.md"
        memory.write_text(build_leaderboard(results.frame, metric="memory").to_markdown())
        written.append(memory)
    for figure in ("scaling", "memory") if kind == "bench" else ("curves", "pareto"):
        path = out_dir / f"{figure}.png"
        plot(results.frame, figure, path)
        written.append(path)
    return written
