"""pytest-benchmark interop: our stats match its own, and its CLI reads our files."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark.stats import Stats
from test_results import bench_config, bench_row, write_bench_run, write_manifest

from mixbench.errors import UsageError
from mixbench.report.pytest_benchmark import benchmark_stats, to_pytest_benchmark
from mixbench.report.results import load_results
from mixbench.runs.store import append_row


@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 8, 9, 33])
def test_stats_match_pytest_benchmark(n: int) -> None:
    rng = random.Random(n)
    data = [rng.lognormvariate(-6, 0.3) for _ in range(n)]
    reference = Stats()
    for value in data:
        reference.update(value)
    ours = benchmark_stats(data, iterations=3)
    for name in Stats.fields:
        expected = getattr(reference, name)
        if isinstance(expected, float):
            assert ours[name] == pytest.approx(expected, rel=1e-12), name
        else:
            assert ours[name] == expected, name
    assert ours["data"] == data and ours["iterations"] == 3


def test_export_is_in_seconds_with_extra_info(tmp_path: Path) -> None:
    run = write_bench_run(tmp_path / "run", mixers=["attention"], tokens=[256, 1024])
    append_row(run / "results.jsonl", bench_row(bench_config("window", 256), status="oom"))
    saved = to_pytest_benchmark(load_results(run))
    assert set(saved) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert len(saved["benchmarks"]) == 2  # the out-of-memory cell has nothing to export
    frame = load_results(run)
    first = saved["benchmarks"][0]
    samples_ms = frame["samples_ms"].iloc[0]
    assert first["stats"]["min"] == pytest.approx(min(samples_ms) / 1000)
    assert first["stats"]["median"] == pytest.approx(frame["latency_ms_median"].iloc[0] / 1000)
    assert first["stats"]["iterations"] == 4  # the timed block size
    assert first["name"] == "attention[tokens=256,level=block,mode=infer]"
    assert first["extra_info"]["key"] == frame["key"].iloc[0]
    assert first["extra_info"]["peak_mem_bytes"] == frame["peak_mem_bytes"].iloc[0]
    assert first["params"]["threads"] == 2
    assert saved["machine_info"]["cpu"]["brand_raw"] == "Test CPU 9000"
    assert saved["commit_info"]["id"] == "0123456789ab"
    json.dumps(saved, allow_nan=False)  # strict JSON


def test_export_needs_finished_rows(tmp_path: Path) -> None:
    write_manifest(tmp_path / "run")
    append_row(
        tmp_path / "run" / "results.jsonl", bench_row(bench_config("lsh", 256), status="error")
    )
    with pytest.raises(UsageError, match="no finished benchmark rows"):
        to_pytest_benchmark(load_results(tmp_path / "run"))


def pytest_benchmark_cli() -> list[str]:
    found = shutil.which("pytest-benchmark", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "pytest_benchmark.cli"]


def test_pytest_benchmark_compare_reads_our_files(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mixbench.cli.app import app

    files = []
    for name, slowdown in (("base", 1.0), ("new", 1.3)):
        run = write_bench_run(tmp_path / name, slowdown=slowdown)
        target = tmp_path / f"0001_{name}.json"
        args = ["leaderboard", str(run), "--format", "pytest-benchmark", "--output", str(target)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        files.append(target)
    work = tmp_path / "cwd"  # pytest-benchmark looks for a conftest and storage in its cwd
    work.mkdir()
    out = subprocess.run(
        [*pytest_benchmark_cli(), "compare", *map(str, files), "--columns", "min,median,iqr,ops"],
        capture_output=True, text=True, cwd=work, timeout=120, check=False,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Failed to load" not in text
    lines = text.splitlines()
    for name, source in (
        ("attention[tokens=4096,level=block,mode=infer]", "0001_new)"),
        ("pooling[tokens=256,level=block,mode=infer]", "0001_base)"),
    ):
        assert any(line.startswith(name) and source in line for line in lines), text
    assert "Median" in text and "OPS" in text
