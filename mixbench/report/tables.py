"""Render bench rows: a rich table for the terminal, ``leaderboard.csv`` and ``.md`` files.

The terminal and Markdown tables pivot one metric: one row per configuration (the mixer,
plus whatever else varies in the run: optimizer, mode, dtype, ...), one column per token
count. The best value of each column is highlighted, noisy cells (IQR / median > 10 %) are
marked ``~``, and a cell that did not measure shows its status. Two extra columns compare
the **empirical exponent** (the slope of log metric against log N over the largest three
token counts, ``mixbench.measure.stats.loglog_slope``) with the mixer's **stated
complexity**, so a claim like O(N log N) can be checked against the machine.

The CSV is long-format (one line per cell) for pandas and spreadsheets; every numeric
column name carries its unit.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixbench.measure.stats import loglog_slope

MIB = 1024**2
# Config fields that may distinguish rows; tokens/grid/image_size are the columns.
LABEL_FIELDS = (
    "level",
    "mixer_options",
    "optimizer",
    "optimizer_options",
    "mode",
    "preset",
    "dim",
    "batch_size",
    "device",
    "dtype",
    "threads",
    "compile",
    "seed",
)
STATUS_TEXT = {"oom": "oom", "error": "error", "timeout": "timeout", "skipped": "skip"}
LEGEND = (
    "~ noisy (IQR/median > 10%); best per column highlighted; exp. = slope of log value "
    "vs log N over the 3 largest token counts; FLOPs shown: none (leaderboard.csv has model "
    "and executed FLOPs); conventions (FLOPs, memory): docs/conventions.md"
)


def _options_text(options: Any) -> str:
    if not options:
        return ""
    return ",".join(f"{k}={v}" for k, v in sorted(dict(options).items()))


def _varying(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Label fields whose value differs between rows."""
    varying = []
    for name in LABEL_FIELDS:
        values = {json.dumps(row["config"].get(name), sort_keys=True) for row in rows}
        if len(values) > 1:
            varying.append(name)
    return varying


def row_label(row: Mapping[str, Any], varying: Sequence[str]) -> str:
    """The mixer name plus the fields that vary in this run."""
    config = row["config"]
    parts = [str(config.get("mixer"))]
    for name in varying:
        value = config.get(name)
        text = _options_text(value) if name.endswith("_options") else value
        if text not in (None, ""):
            parts.append(str(text))
    return " ".join(parts)


def column_of(row: Mapping[str, Any]) -> tuple[int, str]:
    """(sort key, header) of the column a row belongs to: its token count."""
    config = row["config"]
    if config.get("image_size"):
        size = int(config["image_size"])
        return size * size, f"{size}px"
    tokens = int(config.get("tokens") or 0)
    return tokens, f"N={tokens}"


@dataclass
class Pivot:
    """One metric laid out as configurations x token counts."""

    title: str
    unit: str
    headers: list[str]
    labels: list[str]
    values: list[list[float | None]]  # None where the cell has no value
    texts: list[list[str]]
    best: list[int | None]  # per column, the row index of the best value
    exponents: list[float | None]
    complexity: list[str] = field(default_factory=list)


def pivot(
    rows: Sequence[Mapping[str, Any]],
    metric: Callable[[Mapping[str, Any]], float | None],
    *,
    title: str,
    unit: str,
    fmt: str = "{:.3g}",
    lower_is_better: bool = True,
    mark_noisy: bool = False,
) -> Pivot:
    varying = _varying(rows)
    columns = sorted({column_of(row) for row in rows})
    labels: list[str] = []
    by_label: dict[str, dict[str, Mapping[str, Any]]] = {}
    complexity: dict[str, str] = {}
    for row in rows:
        label = row_label(row, varying)
        if label not in by_label:
            labels.append(label)
            by_label[label] = {}
        by_label[label][column_of(row)[1]] = row  # a repeated cell: the last row wins
        complexity[label] = str((row.get("runtime") or {}).get("complexity") or "")
    values: list[list[float | None]] = []
    texts: list[list[str]] = []
    exponents: list[float | None] = []
    for label in labels:
        line_values, line_texts, xs, ys = [], [], [], []
        for sort_key, header in columns:
            found = by_label[label].get(header)
            value = metric(found) if found is not None and found.get("status") == "ok" else None
            line_values.append(value)
            if found is None:
                line_texts.append("")
            elif value is None:
                line_texts.append(STATUS_TEXT.get(str(found.get("status")), "n/a"))
            else:
                noisy = mark_noisy and bool((found.get("metrics") or {}).get("noisy"))
                line_texts.append(fmt.format(value) + ("~" if noisy else ""))
                xs.append(sort_key)
                ys.append(value)
        values.append(line_values)
        texts.append(line_texts)
        exponents.append(loglog_slope(xs, ys, top=3))
    best: list[int | None] = []
    for col in range(len(columns)):
        present = [(v[col], i) for i, v in enumerate(values) if v[col] is not None]
        if len(present) < 2:
            best.append(None)
            continue
        best.append((min(present) if lower_is_better else max(present))[1])
    return Pivot(
        title=title,
        unit=unit,
        headers=[header for _, header in columns],
        labels=labels,
        values=values,
        texts=texts,
        best=best,
        exponents=exponents,
        complexity=[complexity[label] for label in labels],
    )


def _latency(row: Mapping[str, Any]) -> float | None:
    value = (row.get("metrics") or {}).get("latency_ms_median")
    return float(value) if value is not None else None


def _memory_mib(row: Mapping[str, Any]) -> float | None:
    value = (row.get("metrics") or {}).get("peak_mem_bytes")
    return float(value) / MIB if value is not None else None


def standard_pivots(rows: Sequence[Mapping[str, Any]]) -> list[Pivot]:
    """The tables a bench run shows: latency and peak memory, by token count."""
    bench = [row for row in rows if row.get("kind", "bench") == "bench"]
    if not bench:
        return []
    return [
        pivot(bench, _latency, title="Latency per batch (median)", unit="ms", mark_noisy=True),
        pivot(bench, _memory_mib, title="Peak memory above weights and inputs", unit="MiB"),
    ]


def _exp_text(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def rich_table(table: Pivot) -> Any:
    """A ``rich.table.Table`` of a pivot, best per column in bold green."""
    from rich.table import Table

    out = Table(title=f"{table.title} [{table.unit}]", title_justify="left")
    out.add_column("mixer", style="bold")
    for header in table.headers:
        out.add_column(header, justify="right")
    out.add_column("exp.", justify="right")
    out.add_column("stated", justify="left", style="dim")
    for i, label in enumerate(table.labels):
        cells = []
        for col, text in enumerate(table.texts[i]):
            if table.best[col] == i:
                cells.append(f"[bold green]{text}[/bold green]")
            elif table.values[i][col] is None and text:
                cells.append(f"[yellow]{text}[/yellow]")
            else:
                cells.append(text)
        out.add_row(label, *cells, _exp_text(table.exponents[i]), table.complexity[i])
    return out


def print_tables(rows: Sequence[Mapping[str, Any]], console: Any) -> None:
    for table in standard_pivots(rows):
        console.print(rich_table(table))
    console.print(f"[dim]{LEGEND}[/dim]")


def markdown(rows: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any] | None = None) -> str:
    """The Markdown leaderboard: one pivot per metric, best in bold, plus what ran where."""
    lines = ["# mixbench bench", ""]
    if manifest:
        env = manifest.get("environment") or {}
        probes = list((manifest.get("probes") or {}).values())  # driver runs: one per device
        probe = manifest.get("probe") or (probes[0] if len(probes) == 1 else {})
        facts = [
            f"device: {env.get('device_name') or env.get('device', '?')}",
            f"threads: {(manifest.get('config') or {}).get('threads', '?')}",
            f"torch {env.get('torch', '?')}",
            f"mixbench {env.get('mixbench', '?')}",
        ]
        if probe.get("matmul_gflops"):
            facts.append(f"probed matmul peak: {probe['matmul_gflops']:.1f} GFLOP/s")
        if probe.get("bandwidth_gbs"):
            facts.append(f"copy bandwidth: {probe['bandwidth_gbs']:.1f} GB/s")
        lines += ["; ".join(facts), ""]
        if manifest.get("command"):
            lines += [f"`{manifest['command']}`", ""]
    for table in standard_pivots(rows):
        lines += [f"## {table.title} ({table.unit})", "", pivot_markdown(table)]
    lines.append(LEGEND + ".")
    return "\n".join(lines) + "\n"


def pivot_markdown(table: Pivot) -> str:
    """One pivot as a Markdown table: best per column in bold, then exponent and stated
    complexity (the README quotes these for single metrics)."""
    header = ["mixer", *table.headers, "exp.", "stated"]
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + "|")
    for i, label in enumerate(table.labels):
        cells = [
            f"**{text}**" if table.best[col] == i else text
            for col, text in enumerate(table.texts[i])
        ]
        exp = _exp_text(table.exponents[i])
        lines.append("| " + " | ".join([label, *cells, exp, table.complexity[i]]) + " |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "mixer",
    "mixer_options",
    "level",
    "mode",
    "optimizer",
    "optimizer_options",
    "preset",
    "tokens",
    "grid",
    "image_size",
    "dim",
    "batch_size",
    "device",
    "dtype",
    "threads",
    "compile",
    "status",
    "reason",
    "latency_ms_median",
    "latency_ms_iqr",
    "latency_ms_ci95_low",
    "latency_ms_ci95_high",
    "noisy",
    "samples_per_s",
    "tokens_per_s",
    "peak_mem_mib",
    "optimizer_state_mib",
    "params",
    "conventions_version",
    "model_gflop_per_step",
    "executed_gflop_per_step",
    "gflop_analytic_extra",
    "model_gflop_per_s",
    "executed_gflop_per_s",
    "executed_frac_peak_flops",
    "latency_exponent",
    "complexity",
    "key",
)


def csv_records(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat record per cell, with units in the column names."""
    exponents: dict[str, float | None] = {}
    pivots = standard_pivots(rows)
    varying = _varying([row for row in rows if row.get("kind", "bench") == "bench"])
    if pivots:
        exponents = dict(zip(pivots[0].labels, pivots[0].exponents, strict=True))
    records = []
    for row in rows:
        config, metrics = row["config"], row.get("metrics") or {}
        ci = metrics.get("latency_ms_ci95") or [None, None]

        def scaled(name: str, factor: float, metrics: Mapping[str, Any] = metrics) -> Any:
            value = metrics.get(name)
            return None if value is None else value / factor

        records.append(
            {
                **{name: config.get(name) for name in CSV_COLUMNS if name in config},
                "mixer_options": _options_text(config.get("mixer_options")),
                "optimizer_options": _options_text(config.get("optimizer_options")),
                "grid": "x".join(str(g) for g in config.get("grid") or []),
                "status": row.get("status"),
                "reason": row.get("reason"),
                "latency_ms_median": metrics.get("latency_ms_median"),
                "latency_ms_iqr": metrics.get("latency_ms_iqr"),
                "latency_ms_ci95_low": ci[0],
                "latency_ms_ci95_high": ci[1],
                "noisy": metrics.get("noisy"),
                "samples_per_s": metrics.get("samples_per_s"),
                "tokens_per_s": metrics.get("tokens_per_s"),
                "peak_mem_mib": scaled("peak_mem_bytes", MIB),
                "optimizer_state_mib": scaled("optimizer_state_bytes", MIB),
                "params": metrics.get("params"),
                "conventions_version": row.get("conventions_version", 0),
                "model_gflop_per_step": scaled("model_flops", 1e9),
                "executed_gflop_per_step": scaled("executed_flops", 1e9),
                "gflop_analytic_extra": scaled("flops_analytic_extra", 1e9),
                "model_gflop_per_s": metrics.get("model_gflops_per_s"),
                "executed_gflop_per_s": metrics.get("executed_gflops_per_s"),
                "executed_frac_peak_flops": metrics.get("executed_frac_peak_flops"),
                "latency_exponent": exponents.get(row_label(row, varying)),
                "complexity": (row.get("runtime") or {}).get("complexity"),
                "key": row.get("key"),
            }
        )
    return records


def write_leaderboards(
    rows: Iterable[Mapping[str, Any]],
    run_dir: Path | str,
    manifest: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``leaderboard.csv`` and ``leaderboard.md`` into ``run_dir``."""
    rows = list(rows)
    run_dir = Path(run_dir)
    csv_path, md_path = run_dir / "leaderboard.csv", run_dir / "leaderboard.md"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for record in csv_records(rows):
            writer.writerow(record)
    md_path.write_text(markdown(rows, manifest), encoding="utf-8")
    return csv_path, md_path


def print_run_tables(run: Any, console: Any, quiet: bool) -> None:
    """A run's tables over every session's rows, once its last stage has run: bench
    leaderboards (written into the run directory; printed unless ``quiet``) and the training
    summary (unless ``quiet``)."""
    from mixbench.train.summary import print_summary

    rows = run.rows()
    bench = [r for r in rows if r.get("kind") == "bench"]
    train = [r for r in rows if r.get("kind") == "train"]
    if bench:
        write_leaderboards(bench, run.path, run.read_manifest())
        if not quiet:
            print_tables(bench, console)
    if train and not quiet:
        print_summary(train, run.path)
