"""Leaderboards: aggregation, ranking direction, marks, honesty about mixed runs, formats."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from test_results import (
    bench_config,
    bench_row,
    write_bench_run,
    write_manifest,
    write_train_run,
)
from typer.testing import CliRunner

from mixbench.cli.app import app
from mixbench.errors import UsageError
from mixbench.report.leaderboard import BEST_MARK, NOISY_MARK, PARTIAL_MARK, build_leaderboard
from mixbench.report.results import load_results
from mixbench.runs.store import append_row

runner = CliRunner()


def table_lines(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def cells_of(line: str) -> list[str]:
    """A Markdown table row split on unescaped pipes."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    return [
        write_bench_run(tmp_path / "a", mixers=["attention", "pooling"], seed=1),
        write_bench_run(tmp_path / "b", mixers=["window"], seed=2),
    ]


def test_markdown_over_two_runs_marks_best_per_column(two_runs: list[Path]) -> None:
    board = build_leaderboard(load_results(two_runs))
    markdown = board.to_markdown()
    lines = table_lines(markdown)
    header, align, *rows = lines
    assert cells_of(header) == ["mixer", "tokens=256", "tokens=1024", "tokens=4096", "mean rank"]
    assert re.fullmatch(r"\|(-{3}|-{2}:)(\|(-{3}|-{2}:))*\|", align)
    widths = {len(cells_of(line)) for line in lines}
    assert widths == {5}, "every row must have as many cells as the header (GitHub renders it)"
    # Lower latency is better: pooling < window < attention in every column.
    assert [cells_of(r)[0] for r in rows] == ["pooling", "window", "attention"]
    pooling = cells_of(rows[0])
    assert all(c.startswith("**") and c.endswith(f"** {BEST_MARK}") for c in pooling[1:4])
    assert not any(BEST_MARK in c for r in rows[1:] for c in cells_of(r))
    assert "lower is better" in markdown
    assert "Test CPU 9000" in markdown and "torch 2.13.0" in markdown
    assert "runs: a, b" in markdown


def test_direction_follows_the_metric(two_runs: list[Path]) -> None:
    frame = load_results(two_runs)
    fast = build_leaderboard(frame, metric="throughput")
    assert fast.metric.higher_is_better
    best = fast.cells[fast.cells["best"]]
    assert set(best["mixer"]) == {"pooling"}  # the most tokens per second
    assert fast.row_order[-1] == ("attention",)
    memory = build_leaderboard(frame, metric="memory")
    assert "MiB" in memory.to_markdown()
    worst = memory.cells[memory.cells["tokens"] == 4096].sort_values("rank").iloc[-1]
    assert worst["mixer"] == "attention"


def test_repeats_are_aggregated_by_median_and_noise_is_flagged(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_manifest(run)
    for repeat, latency in enumerate([10.0, 11.0, 30.0]):
        config = bench_config("pooling", 256, repeat=repeat)
        append_row(run / "results.jsonl", bench_row(config, [latency] * 5))
    noisy = bench_config("attention", 256)
    append_row(run / "results.jsonl", bench_row(noisy, [1.0, 2.0, 3.0, 4.0, 5.0]))
    board = build_leaderboard(load_results(run))
    pooling = board.cells.set_index("mixer").loc["pooling"]
    assert pooling["value"] == 11.0 and pooling["n"] == 3
    assert bool(pooling["noisy"])  # the repeats disagree by far more than 10 %
    assert bool(board.cells.set_index("mixer").loc["attention", "noisy"])
    assert NOISY_MARK in board.to_markdown()
    assert "median over repeats" in board.to_markdown()


def test_train_seeds_are_mean_and_std(tmp_path: Path) -> None:
    run = write_train_run(
        tmp_path / "train",
        {("attention", "adam"): [0.9, 0.8, 0.7], ("pooling", "sgd"): [0.3, 0.3, 0.3]},
    )
    board = build_leaderboard(load_results(run))
    assert board.row_fields == ["mixer", "optimizer"]
    assert board.column_field == "task"
    markdown = board.to_markdown()
    assert f"**80.0 ± 10.0** {BEST_MARK}" in markdown
    assert "30.0 ± 0.0" in markdown
    assert "mean ± std over seeds" in markdown
    assert board.metric.name == "final_val_acc"


def test_failed_cells_show_their_status(tmp_path: Path) -> None:
    run = write_bench_run(tmp_path / "run", mixers=["pooling"], tokens=[256, 1024])
    append_row(run / "results.jsonl", bench_row(bench_config("attention", 256), [2.0] * 5))
    append_row(run / "results.jsonl", bench_row(bench_config("attention", 1024), status="oom"))
    config = bench_config("pooling", 1024, repeat=1)
    append_row(run / "results.jsonl", bench_row(config, status="error"))
    board = build_leaderboard(load_results(run), group_by=["mixer"])
    rows = {cells_of(r)[0]: cells_of(r) for r in table_lines(board.to_markdown())[2:]}
    assert rows["attention"][2] == "oom"
    assert rows["pooling"][2].endswith(PARTIAL_MARK)  # one of two repeats failed


def test_mixed_hardware_and_versions_are_never_averaged(tmp_path: Path) -> None:
    old = write_bench_run(tmp_path / "old", mixers=["pooling"], environment={"torch": "2.12.0"})
    new = write_bench_run(
        tmp_path / "new", mixers=["pooling"], slowdown=2.0, environment={"torch": "2.13.0"}
    )
    board = build_leaderboard(load_results([old, new]))
    assert board.row_fields == ["mixer", "torch_version"]
    values = board.pivot("value")[1024]
    assert values.loc[("pooling", "2.13.0")] == pytest.approx(
        2 * values.loc[("pooling", "2.12.0")], rel=0.05
    )
    markdown = board.to_markdown()
    assert "runs differ in torch_version (2.12.0, 2.13.0)" in markdown
    assert "torch 2.1" not in markdown.split("|")[0]  # not claimed as one shared version


def test_differing_settings_become_row_labels_or_are_named(tmp_path: Path) -> None:
    one = write_bench_run(tmp_path / "t1", mixers=["pooling"], threads=1, slowdown=1.5)
    two = write_bench_run(tmp_path / "t2", mixers=["pooling"], threads=2)
    frame = load_results([one, two])
    assert build_leaderboard(frame).row_fields == ["mixer", "threads"]
    forced = build_leaderboard(frame, group_by=["mixer"])
    assert any("aggregated over differing threads (1, 2)" in n for n in forced.notes)
    long = build_leaderboard(frame, group_by=["mixer", "threads", "tokens"])
    assert long.column_field is None and len(long.row_order) == 6


def test_csv_and_json_keep_full_precision_and_units(two_runs: list[Path]) -> None:
    board = build_leaderboard(load_results(two_runs))
    frame = pd.read_csv(StringIO(board.to_csv()))
    assert "latency_ms_median[tokens=256]" in frame.columns
    assert "latency_ms_median_iqr[tokens=256]" in frame.columns
    exact = board.pivot("value").loc["attention", 1024]
    written = frame.set_index("mixer").loc["attention", "latency_ms_median[tokens=1024]"]
    assert written == exact  # bit for bit, not rounded for display
    data = json.loads(board.to_json())
    assert data["metric"] == {
        "name": "latency_ms_median",
        "label": "latency per batch, median",
        "unit": "ms",
        "higher_is_better": False,
    }
    assert data["columns"] == [256, 1024, 4096]
    assert any(c["best"] and c["mixer"] == "pooling" for c in data["cells"])
    html = board.to_html()
    assert html.count("<strong>") >= 4 and "<table>" in html


def test_errors_are_usage_errors(two_runs: list[Path], tmp_path: Path) -> None:
    frame = load_results(two_runs)
    with pytest.raises(UsageError, match="unknown metric"):
        build_leaderboard(frame, metric="nonsense")
    with pytest.raises(UsageError, match="no column 'colour'"):
        build_leaderboard(frame, group_by=["colour"])
    with pytest.raises(UsageError, match="only bench"):
        build_leaderboard(frame, kind="train")
    write_train_run(tmp_path / "c", {("attention", "adam"): [0.5]})
    with pytest.raises(UsageError, match="choose with --kind"):
        build_leaderboard(load_results([*two_runs, tmp_path / "c"]))


def test_cli_leaderboard_formats_and_output(two_runs: list[Path], tmp_path: Path) -> None:
    args = ["leaderboard", *map(str, two_runs)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert BEST_MARK in result.output
    out = tmp_path / "board.csv"
    result = runner.invoke(app, [*args, "--format", "csv", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("mixer,latency_ms_median[tokens=256]")
    result = runner.invoke(app, [*args, "--format", "pytest-benchmark"])
    assert result.exit_code == 0 and json.loads(result.output)["benchmarks"]
    result = runner.invoke(app, [*args, "--format", "xlsx"])
    assert result.exit_code == 2 and "pytest-benchmark" in result.output


def test_cli_reports_corrupt_rows_and_goes_on(two_runs: list[Path]) -> None:
    results = two_runs[0] / "results.jsonl"
    with open(results, "a") as handle:
        handle.write("this is not json\n")
    result = runner.invoke(app, ["leaderboard", *map(str, two_runs)])
    assert result.exit_code == 0
    assert f"skipped {results}:7: not JSON" in result.output
    assert "pooling" in result.output


def test_report_commands_import_nothing_heavy_at_startup() -> None:
    code = (
        "import sys, mixbench.cli.app, mixbench.cli.report;"
        "heavy = [m for m in ('torch', 'pandas', 'matplotlib', 'numpy') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
