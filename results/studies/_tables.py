"""Shared by the README's measured studies: tables and a provenance line from committed rows.

Bench studies render the pivots ``mixbench bench`` prints (median latency or peak memory
against token count, with the fitted exponent and the complexity the plugin states); train
studies render a few columns of ``mixbench.load_results`` per cell. Every table ends with
what ran where, read from the run's manifest and rows, so the README's prose can quote
those facts instead of typing them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mixbench.report.leaderboard import format_number
from mixbench.report.tables import Pivot, pivot_markdown, standard_pivots

Column = tuple[str, Callable[[dict[str, Any]], str]]


def _manifest(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")))


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def provenance(run_dir: Path) -> str:
    """When, on what, under which load and how long the run took, and how many cells were
    noisy or failed."""
    manifest, rows = _manifest(run_dir), _rows(run_dir)
    env = manifest.get("environment") or {}
    started = datetime.fromisoformat(manifest["started_at"])
    took = datetime.fromisoformat(manifest["ended_at"]) - started
    parts = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {env.get('device_name')}",
        f"{env.get('cores')} cores, torch threads: {_threads(manifest, rows)}",
        f"torch {env.get('torch')}, Python {env.get('python')}",
        f"load average {env.get('load_average_1min', math.nan):.2f} at the start",
    ]
    probe = manifest.get("probe") or {}
    if probe.get("matmul_gflops"):
        parts.append(f"probed matmul peak {probe['matmul_gflops']:.0f} GFLOP/s")
    command = " ".join(["mixbench", *manifest["command"][1:]]).split(" --out ")[0]
    lines = [", ".join(parts) + f"; the whole command took {took.total_seconds():.0f} s."]
    statuses = [str(row.get("status")) for row in rows]
    failed = len(statuses) - statuses.count("ok")
    noisy = sum(bool((row.get("metrics") or {}).get("noisy")) for row in rows)
    tally = f"{len(rows)} cells, {failed} not ok"
    if manifest.get("kind") == "bench":
        processes = sorted({int((row.get("metrics") or {}).get("processes") or 1) for row in rows})
        per_cell = "/".join(map(str, processes))
        tally += (
            f", {per_cell} process(es) per cell, {noisy} flagged noisy (IQR/median > 10 %, "
            "over the process medians when a cell has several)"
        )
        version = max((int(row.get("conventions_version") or 0) for row in rows), default=0)
        lines.append(
            f"FLOPs shown: none; memory as defined in docs/conventions.md, version {version}"
        )
    else:
        lines.append("FLOPs shown: none; conventions: docs/conventions.md")
    lines.append(f"{tally}. Command: `{command}`")
    return "  \n".join(lines) + "\n"


def _threads(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The threads the cells ran with (``--threads``), else what the process had."""
    chosen = {(row.get("config") or {}).get("threads") for row in rows}
    chosen.add((manifest.get("config") or {}).get("threads"))
    chosen.discard(None)
    if chosen:
        return "/".join(str(t) for t in sorted(chosen))
    return str((manifest.get("environment") or {}).get("torch_threads"))


def bench_table(run_dir: Path, metric: str) -> str:
    """One bench pivot (``latency`` or ``memory``) as Markdown, with its provenance."""
    latency, memory = standard_pivots(_rows(run_dir))
    chosen: Pivot = latency if metric == "latency" else memory
    title = f"**{chosen.title}, {chosen.unit}**"
    if metric == "latency":
        title += " (`~` = noisy; **bold** = best in the column)"
    return f"{title}\n\n{pivot_markdown(chosen)}\n{provenance(run_dir)}"


def train_table(run_dir: Path, columns: Sequence[Column]) -> str:
    """One line per train cell (in the run's order) with the given columns."""
    from mixbench import load_results

    frame = load_results([run_dir])
    head = [name for name, _ in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for record in frame.to_dict("records"):
        lines.append("| " + " | ".join(cell(record) for _, cell in columns) + " |")
    return "\n".join(lines) + "\n\n" + provenance(run_dir)


def percent(name: str) -> Callable[[dict[str, Any]], str]:
    """A fraction column shown as a percentage with one decimal."""
    return lambda record: _or_dash(record.get(name), lambda v: f"{100 * v:.1f} %")


def number(name: str, scale: float = 1.0, unit: str = "") -> Callable[[dict[str, Any]], str]:
    """A numeric column at three to four significant digits, optionally scaled and unitised."""
    return lambda record: _or_dash(record.get(name), lambda v: format_number(v * scale) + unit)


def count(name: str) -> Callable[[dict[str, Any]], str]:
    """An integer column (steps, gradient evaluations)."""
    return lambda record: _or_dash(record.get(name), lambda v: f"{v:,.0f}")


def text(name: str) -> Callable[[dict[str, Any]], str]:
    return lambda record: str(record.get(name))


def _or_dash(value: Any, fmt: Callable[[float], str]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return fmt(float(value))
