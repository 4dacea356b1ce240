"""Where LSH attention overtakes full attention (README, "How mixers scale").

Two ``mixbench bench`` runs, inference, B=2, C=64, 2 threads, mixbench's default options:
``attention`` (PyTorch's CPU flash kernel, O(N) memory) and ``lsh`` at N = 256 to 16384 on a
1-D grid, and ``attention`` with ``backend=math`` (the textbook kernel that materialises the
N x N scores, as most implementations run it) at N = 256 to 4096 for memory. The tables show
latency, peak memory, LSH / attention ratios with the crossover length, and LSH's achieved
fraction of the run's probed matmul peak.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _examples import run_example

TITLE = "LSH against full attention, N = 256 to 16384, inference, B=2, C=64, 2 threads"
COMMON = [
    *("bench", "--layout", "1d", "--dim", "64", "--batch-size", "2", "--threads", "2"),
    *("--warmup-iters", "2"),
]
RUNS = {
    "lsh_scaling/flash": [
        *COMMON,
        *("--mixer", "attention", "--mixer", "lsh"),
        *("--tokens", "256,512,1024,2048,4096,8192,16384"),
    ],
    "lsh_scaling/math": [
        *COMMON,
        *("--mixer", "attention", "--mixer-option", "backend=math"),
        *("--tokens", "256,512,1024,2048,4096"),
    ],
}
PEAK_AT = (4096, 16384)


def run(root: Path) -> None:
    for name, args in RUNS.items():
        run_example(root, name, args)


def _rows(root: Path, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from mixbench.runs.store import read_manifest, read_rows

    rows, _ = read_rows(root / name / "results.jsonl")
    return rows, read_manifest(root / name)


def _label(row: Mapping[str, Any]) -> str:
    config = row["config"]
    options = ", ".join(f"{k}={v}" for k, v in sorted(config["mixer_options"].items()))
    return f"{config['mixer']} {options}".strip()


def _metric(rows: Sequence[Mapping[str, Any]], name: str) -> dict[tuple[str, int], float]:
    return {
        (_label(row), int(row["config"]["tokens"])): float(row["metrics"][name])
        for row in rows
        if row.get("status") == "ok" and row["metrics"].get(name) is not None
    }


def _table(title: str, pivot: Any) -> list[str]:
    lines = [f"{title} ({pivot.unit}):", ""]
    lines.append("| mixer | " + " | ".join(pivot.headers) + " | exp. |")
    lines.append("|---|" + "---:|" * (len(pivot.headers) + 1))
    for i, label in enumerate(pivot.labels):
        cells = [
            f"**{text}**" if pivot.best[col] == i else text
            for col, text in enumerate(pivot.texts[i])
        ]
        exponent = pivot.exponents[i]
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {'' if exponent is None else f'{exponent:.2f}'} |"
        )
    return [*lines, ""]


def _crossover(ours: dict[int, float], theirs: dict[int, float]) -> str:
    """The first N from which LSH stays below attention, among the N measured."""
    common = sorted(set(ours) & set(theirs))
    ahead_from = None
    for n in reversed(common):
        if ours[n] >= theirs[n]:
            break
        ahead_from = n
    if ahead_from is None:
        return f"not reached up to N={common[-1]}"
    if ahead_from == common[0]:
        return f"N<={ahead_from} (ahead at every N measured)"
    return f"N={ahead_from}"


def render(root: Path) -> dict[str, str]:
    from mixbench.report.tables import pivot

    flash, manifest = _rows(root, "lsh_scaling/flash")
    math_rows, _ = _rows(root, "lsh_scaling/math")
    rows = flash + math_rows

    def latency(row: Mapping[str, Any]) -> float | None:
        value = row["metrics"].get("latency_ms_median")
        return None if value is None else float(value)

    def memory(row: Mapping[str, Any]) -> float | None:
        value = row["metrics"].get("peak_mem_bytes")
        return None if value is None else float(value) / 2**20

    lines = _table(
        "Latency per batch, median", pivot(flash, latency, title="", unit="ms", mark_noisy=True)
    )
    lines += _table(
        "Peak memory above weights and inputs", pivot(rows, memory, title="", unit="MiB")
    )

    times, peaks = _metric(flash, "latency_ms_median"), _metric(rows, "peak_mem_bytes")
    lsh_time = {n: v for (label, n), v in times.items() if label == "lsh"}
    lsh_peak = {n: v for (label, n), v in peaks.items() if label == "lsh"}
    tokens = sorted(lsh_time)
    lines += ["LSH / attention, and the length from which LSH stays ahead:", ""]
    lines.append("| against | measure | " + " | ".join(f"N={n}" for n in tokens) + " | crossover |")
    lines.append("|---|---|" + "---:|" * (len(tokens) + 1))
    for against, measure, ours, table in (
        ("attention", "latency", lsh_time, times),
        ("attention", "memory", lsh_peak, peaks),
        ("attention backend=math", "memory", lsh_peak, peaks),
    ):
        theirs = {n: v for (label, n), v in table.items() if label == against}
        cells = [f"{ours[n] / theirs[n]:.2f}" if n in theirs and n in ours else "" for n in tokens]
        lines.append(
            f"| {against} | {measure} | " + " | ".join(cells) + f" | {_crossover(ours, theirs)} |"
        )
    lines.append("")

    peak_gflops = (manifest.get("probe") or {}).get("matmul_gflops")
    # Executed FLOPs (docs/conventions.md): hardware efficiency is about what the kernels
    # did. Rows from before conventions version 1 name the same figure without a prefix.
    fractions = _metric(flash, "executed_frac_peak_flops") or _metric(flash, "frac_peak_flops")
    rates = _metric(flash, "executed_gflops_per_s") or _metric(flash, "gflops_per_s")
    version = max((int(row.get("conventions_version") or 0) for row in flash), default=0)
    lines += [
        f"LSH's achieved arithmetic rate (executed FLOPs: the counter's plus analytic extras, "
        f"conventions version {version}, docs/conventions.md; per second) against the run's "
        f"probed matmul peak of {peak_gflops:.1f} GFLOP/s:",
        "",
        "| N | GFLOP/s | fraction of peak |",
        "|---:|---:|---:|",
    ]
    for n in PEAK_AT:
        if ("lsh", n) in fractions:
            lines.append(f"| {n} | {rates[('lsh', n)]:.2f} | {fractions[('lsh', n)]:.3f} |")
    env = manifest.get("environment") or {}
    lines += [
        "",
        f"Measured {manifest.get('ended_at', '?')[:16].replace('T', ' ')} UTC on "
        f"{env.get('cpu', '?')}, {env.get('cores', '?')} cores, 2 torch threads, torch "
        f"{env.get('torch', '?')}; load average {env.get('load_average_1min', 0):.1f} "
        "at the start.",
    ]
    return {"tables.md": "\n".join(lines) + "\n"}
