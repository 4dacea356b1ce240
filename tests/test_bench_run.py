"""``mixbench bench`` through the driver: option validation (exit 2 before anything runs),
process repeats in fresh processes, kill -9 then ``--resume``, SIGTERM, executors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_bench_cli import FAST
from typer.testing import CliRunner

from mixbench.bench.options import BenchOptions, plan_bench
from mixbench.cli.app import app
from mixbench.errors import UsageError
from mixbench.runs.store import read_rows

FAST_1 = FAST[:-2]  # without its "--processes 1": each test says how many


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["bench", *args])


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--batch-size", "0"], "--batch-size 0"),
        (["--min-time", "-1"], "--min-time -1.0"),
        (["--min-time", "0"], "--min-time 0.0"),
        (["--max-time", "0"], "--max-time 0.0"),
        (["--tokens", "0"], "--tokens 0"),
        (["--threads", "0"], "--threads 0"),
        (["--processes", "0"], "--processes 0"),
        (["--dim", "-4"], "--dim -4"),
        (["--repeats", "0"], "--repeats 0"),
        (["--warmup-iters", "-1"], "--warmup-iters -1"),
        (["--warmup-time", "-0.5"], "--warmup-time -0.5"),
        (["--timeout", "0"], "--timeout 0.0"),
        (["--lr", "0", "--mode", "train"], "--lr 0.0"),
        (["--seed", "-1"], "--seed -1"),
        (["--max-parallel", "0"], "--max-parallel 0"),
        (["--level", "model", "--image-size", "0"], "--image-size 0"),
    ],
)
def test_bad_numbers_exit_2_naming_option_value_and_range(
    tmp_path: Path, args: list[str], shown: str
) -> None:
    out = tmp_path / "results"
    result = _invoke("--mixer", "pooling", *args, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert shown in result.output and "accepted" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_unwritable_out_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _invoke("--mixer", "pooling", "--tokens", "16", "--out", str(blocker / "runs"))
    assert result.exit_code == 2, result.output
    assert "--out" in result.output and "Traceback" not in result.output


def test_the_python_api_and_sweep_files_get_the_same_checks(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--batch-size 0: out of range; accepted"):
        BenchOptions(batch_size=0)
    with pytest.raises(UsageError, match="--min-time"):
        BenchOptions(min_time=float("nan"))
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('[[grid]]\nkind = "bench"\nmixer = "pooling"\nbatch_size = 0\n')
    result = CliRunner().invoke(app, ["sweep", str(sweep), "--dry-run"])
    assert result.exit_code == 2 and "--batch-size 0" in result.output, result.output


def test_processes_run_in_fresh_processes_and_inline_refuses_them(tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["--mixer", "pooling", "--tokens", "16,64", *FAST_1, "--quiet", "--out", str(out)]
    result = _invoke(*args, "--processes", "3", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2
    pids = [p["pid"] for row in rows for p in row["processes"]]
    assert len(pids) == 6 and len(set(pids)) == 6 and os.getpid() not in pids
    assert all(row["metrics"]["processes"] == 3 for row in rows)
    (run,) = out.iterdir()
    manifest = json.loads((run / "manifest.json").read_text())
    assert isinstance(manifest["sessions"][0]["order_seed"], int)
    assert manifest["config"]["processes"] == 3
    # Rounds: every cell's first process before any cell's second.
    processes, _ = read_rows(run / "processes.jsonl")
    assert [p["key"][-1] for p in processes] == ["1", "1", "2", "2", "3", "3"]

    inline = _invoke(*args, "--processes", "2", "--executor", "inline")
    assert inline.exit_code == 2 and "fresh process" in inline.output
    # The advice names the registered executors that declare fresh_processes.
    assert "--executor" in inline.output and "subprocess" in inline.output.split("--executor")[1]
    assert len(list(out.iterdir())) == 1  # the refused run left no directory behind


def test_resume_takes_no_measurement_options_and_unknown_executor_options_exit_2(
    tmp_path: Path,
) -> None:
    result = _invoke("--resume", str(tmp_path), "--tokens", "16")
    assert result.exit_code == 2 and "recorded options" in result.output
    result = _invoke("--resume", str(tmp_path))
    assert result.exit_code == 2 and "not a resumable bench run" in result.output
    result = _invoke("--mixer", "pooling", "--executor-option", "adress=auto")
    assert result.exit_code == 2 and "no such option" in result.output
    # --ray-address is --executor-option address=...: only executors with an address take it
    result = _invoke("--mixer", "pooling", "--ray-address", "auto", "--executor", "inline")
    assert result.exit_code == 2 and "executor 'inline' has no such option" in result.output


def _start(out: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mixbench", "bench", *args, "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "MIXBENCH_PLUGINS": ""},
    )


def _wait_for_rows(out: Path, process: subprocess.Popen[bytes], rows: int) -> Path:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        found = list(out.glob("*/results.jsonl")) if out.exists() else []
        if found and found[0].read_text().count("\n") >= rows:
            return found[0].parent
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"no rows appeared: {process.stderr.read() if process.stderr else ''}")


CELLS = ["--mixer", "pooling", "--mixer", "identity", "--tokens", "16,64,256", *FAST_1]


def test_kill_9_then_resume_runs_every_planned_cell_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "results"
    process = _start(out, *CELLS, "--processes", "2")
    try:
        run = _wait_for_rows(out, process, 1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    before, _ = read_rows(run / "results.jsonl")
    assert 1 <= len(before) < 6
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"

    result = _invoke("--resume", str(run), "--quiet")
    assert result.exit_code == 0, result.output
    rows, problems = read_rows(run / "results.jsonl")
    assert all(p.reason.startswith("torn") for p in problems)
    options = BenchOptions(
        mixers=("pooling", "identity"), tokens=(16, 64, 256), threads=1, min_time=0.01,
        max_time=0.05, warmup_iters=1, warmup_time=0.0, repeats=3, dim=16, processes=2,
    )  # fmt: skip
    planned = sorted(cell.key for cell in plan_bench(options).cells)
    assert sorted(r["key"] for r in rows) == planned  # every cell, each exactly once
    assert rows[: len(before)] == before  # the first session's rows kept as they were
    assert all(r["status"] == "ok" and len(r["processes"]) == 2 for r in rows)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["sessions"]) == 2

    again = _invoke("--resume", str(run), "--quiet")
    assert again.exit_code == 0 and len(read_rows(run / "results.jsonl")[0]) == 6


def test_sigterm_stops_like_ctrl_c_and_prints_the_resume_command(tmp_path: Path) -> None:
    out = tmp_path / "results"
    process = _start(out, *CELLS, "--processes", "1")
    try:
        run = _wait_for_rows(out, process, 1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143
    text = stderr.decode()
    assert "interrupted (SIGTERM)" in text and f"--resume {run}" in text
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    rows, problems = read_rows(run / "results.jsonl")
    assert problems == [] and len(rows) >= 1


def test_a_cell_killed_between_its_last_process_and_its_row_gets_the_row_on_resume(
    tmp_path: Path,
) -> None:
    """Both processes are in ``processes.jsonl`` but the row never reached the results: the
    resumed run combines them and runs nothing again."""
    from test_results import bench_config, bench_row

    from mixbench.runs.cells import Cell
    from mixbench.runs.driver import PROCESSES_FILE, PlannedCell, drive
    from mixbench.runs.repeats import process_key
    from mixbench.runs.store import RunDir, append_row

    run = RunDir.create(tmp_path, "bench")
    run.write_manifest({"kind": "bench", "sessions": [], "probes": {"cpu/float32/2": {}}})
    config = bench_config("pooling", 16)
    cell = Cell("bench", config)
    for index, median in enumerate([1.0, 1.2], start=1):
        row = {**bench_row(config, [median] * 5), "key": process_key(cell.key, index)}
        append_row(run.path / PROCESSES_FILE, row)
    planned = PlannedCell(cell, {"processes": 2, "timing": {}}, None, "test")
    outcome = drive(
        [planned], run, total=1, executor_name="subprocess", executor_options={},
        max_parallel=1, quiet=True, label="bench", resumed=True,
    )  # fmt: skip
    assert outcome.status == "complete" and outcome.tally.counts == {"ok": 1}
    (row,) = run.rows()
    assert row["key"] == cell.key and row["metrics"]["processes"] == 2
    assert row["metrics"]["latency_ms_median"] == pytest.approx(1.1)
