"""Rendering rows: the pivot (best per column, noisy marks, statuses, fitted exponents),
the long CSV with units in its column names, and the Markdown leaderboard."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from rich.console import Console

from mixbench.report.tables import pivot, print_tables, standard_pivots, write_leaderboards


def row(
    mixer: str,
    tokens: int,
    latency: float | None,
    *,
    status: str = "ok",
    noisy: bool = False,
    memory: int = 1 << 20,
    **config: Any,
) -> dict[str, Any]:
    metrics = (
        {}
        if latency is None
        else {
            "latency_ms_median": latency,
            "noisy": noisy,
            "peak_mem_bytes": memory,
            "latency_ms_ci95": [latency * 0.9, latency * 1.1],
        }
    )
    return {
        "kind": "bench",
        "key": f"{mixer}-{tokens}",
        "status": status,
        "reason": None if status == "ok" else "why",
        "config": {
            "mixer": mixer,
            "tokens": tokens,
            "grid": [tokens],
            "mode": "infer",
            **config,
        },
        "metrics": metrics,
        "runtime": {"complexity": {"attention": "O(N^2)", "pooling": "O(N)"}.get(mixer, "")},
    }


def rows() -> list[dict[str, Any]]:
    sizes = [512, 1024, 2048, 4096]
    out = [row("attention", n, 1e-5 * n**2, memory=n * n * 16) for n in sizes]
    out += [row("pooling", n, 0.01 * n, noisy=(n == 1024), memory=n * 64) for n in sizes]
    out.append(row("window", 512, None, status="skipped"))
    return out


def test_pivot_fits_exponents_marks_noise_and_statuses() -> None:
    table = standard_pivots(rows())[0]
    assert table.headers == ["N=512", "N=1024", "N=2048", "N=4096"]
    assert table.labels == ["attention", "pooling", "window"]
    attention, pooling, window = table.exponents
    assert abs(attention - 2.0) < 1e-9 and abs(pooling - 1.0) < 1e-9 and window is None
    assert table.texts[1][1].endswith("~") and not table.texts[1][0].endswith("~")
    assert table.texts[2] == ["skip", "", "", ""]
    assert table.best == [0, 1, 1, 1]  # attention is cheaper at 512 (2.6 vs 5.1 ms), not after
    assert table.complexity == ["O(N^2)", "O(N)", ""]


def test_memory_pivot_shows_growth_without_noise_marks() -> None:
    memory = standard_pivots(rows())[1]
    assert memory.unit == "MiB"
    assert abs(memory.exponents[0] - 2.0) < 1e-9 and abs(memory.exponents[1] - 1.0) < 1e-9
    assert not any(text.endswith("~") for line in memory.texts for text in line)


def test_labels_carry_only_what_varies() -> None:
    mixed = [
        row("attention", 64, 1.0, optimizer="sgd"),
        row("attention", 64, 2.0, optimizer="adam"),
    ]
    table = pivot(mixed, lambda r: r["metrics"]["latency_ms_median"], title="t", unit="ms")
    assert table.labels == ["attention sgd", "attention adam"]


def test_leaderboards_are_written_with_units(tmp_path: Path) -> None:
    csv_path, md_path = write_leaderboards(rows(), tmp_path, {"config": {"threads": 2}})
    records = list(csv.DictReader(csv_path.open()))
    assert len(records) == 9
    assert {"latency_ms_median", "peak_mem_mib", "tokens_per_s"} <= set(records[0])
    assert abs(float(records[0]["latency_exponent"]) - 2.0) < 1e-9
    assert records[-1]["status"] == "skipped" and records[-1]["latency_ms_median"] == ""
    md = md_path.read_text()
    assert "## Latency per batch (median) (ms)" in md and "threads: 2" in md
    assert "| attention | **2.62** |" in md


def test_terminal_table_renders() -> None:
    console = Console(record=True, width=120)
    print_tables(rows(), console)
    text = console.export_text()
    assert "attention" in text and "O(N^2)" in text and "2.00" in text and "skip" in text
