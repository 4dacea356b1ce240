"""``mixbench bench`` end to end through Typer's CliRunner: the run directory, JSON lines,
failures as statuses, usage errors as exit 2, and a killed run's readable results file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mixbench.runs.store import read_rows

FAST = [
    "--threads",
    "1",
    "--min-time",
    "0.01",
    "--max-time",
    "0.05",
    "--warmup-iters",
    "1",
    "--warmup-time",
    "0",
    "--repeats",
    "3",
    "--dim",
    "16",
    "--processes",
    "1",
]


def _app() -> typer.Typer:
    """The real CLI once it registers ``bench``; until then the command on its own."""
    from mixbench.cli import app as cli

    if any(name == "bench" for name, _, _ in cli.CORE_COMMANDS):
        return cli.app
    from mixbench.cli.bench import bench

    app = typer.Typer()
    app.command("bench")(cli.guard(bench))
    app.command("version")(lambda: None)  # two commands, so "bench" stays a sub-command
    return app


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(_app(), ["bench", *args])


def _run_dir(out: Path) -> Path:
    (run,) = list(out.iterdir())
    return run


def test_run_writes_the_run_directory_and_failures_do_not_stop_it(tmp_path: Path) -> None:
    """One run (each starts a worker): JSON lines on stdout, the run directory's files, and
    a raising cell and an impossible one recorded as statuses between good ones."""
    import test_bench_cell  # the throwaway ``faulty`` mixer plugin

    from mixbench.core.plugin_loader import register_plugin

    register_plugin(test_bench_cell, "faulty-tests")
    out = tmp_path / "results"
    result = _invoke(
        "--mixer",
        "faulty",
        "--mixer",
        "window",
        "--mixer",
        "pooling",
        "--mixer",
        "attention",
        "--mixer-option",
        "failure=raise",
        "--tokens",
        "16,64",
        "--out",
        str(out),
        "--json",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    found = [(r["config"]["mixer"], r["config"]["tokens"], r["status"]) for r in lines]
    assert sorted(found) == sorted(
        [  # in a shuffled order: drift spreads over every cell
            ("faulty", 16, "error"),
            ("faulty", 64, "error"),
            ("window", 16, "skipped"),
            ("window", 64, "ok"),
            ("pooling", 16, "ok"),
            ("pooling", 64, "ok"),
            ("attention", 16, "ok"),
            ("attention", 64, "ok"),
        ]
    ), [r["reason"] for r in lines]
    run = _run_dir(out)
    rows, problems = read_rows(run / "results.jsonl")
    assert problems == [] and [r["key"] for r in rows] == [r["key"] for r in lines]
    by_cell = {(r["config"]["mixer"], r["config"]["tokens"]): r for r in rows}
    assert "deliberate failure" in by_cell["faulty", 16]["reason"]
    assert "window_size" in by_cell["window", 16]["reason"]
    assert by_cell["faulty", 16]["config"]["mixer_options"] == {"failure": "raise"}
    assert by_cell["pooling", 16]["config"]["mixer_options"] == {}  # not a pooling option
    assert by_cell["pooling", 16]["config"]["grid"] == [4, 4]

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {"ok": 5, "error": 2, "skipped": 1}
    (probe,) = manifest["probes"].values()
    assert probe["matmul_gflops"] > 0 and probe["bandwidth_gbs"] > 0
    assert manifest["environment"]["torch"] and manifest["config"]["threads"] == 1
    header = (run / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert {"latency_ms_median", "peak_mem_mib", "model_gflop_per_s", "latency_exponent"} <= set(
        header
    )
    md = (run / "leaderboard.md").read_text()
    assert "Latency per batch" in md and "| pooling |" in md and "O(N^2)" in md
    assert "| faulty failure=raise | error | error |" in md


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--mixer", "no-such-mixer"], "unknown mixer"),
        (["--mixer", "pooling", "--mixer-option", "nonsense=1"], "accepted by none"),
        (["--mixer", "pooling", "--optimizer", "adam"], "--mode train"),
        (["--level", "layer"], "--level"),
        (["--image-size", "64"], "--level model"),
        (["--tokens", "12,abc"], "--tokens"),
    ],
)
def test_usage_errors_exit_2_before_anything_runs(
    tmp_path: Path, args: list[str], words: str
) -> None:
    result = _invoke(*args, "--out", str(tmp_path / "results"))
    assert result.exit_code == 2
    assert words in result.output
    assert not (tmp_path / "results").exists()


SCRIPT = """
import typer
from mixbench.cli.app import guard
from mixbench.cli.bench import bench
typer.run(guard(bench))
"""


def test_a_killed_run_leaves_a_readable_results_file(tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = [
        "--mixer",
        "pooling",
        "--mixer",
        "identity",
        "--tokens",
        "16,64,256,1024,4096",
        "--out",
        str(out),
        "--quiet",
        *FAST,
    ]
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MIXBENCH_PLUGINS": ""},
    )
    try:
        deadline = time.monotonic() + 120
        results = None
        while time.monotonic() < deadline and process.poll() is None:
            found = list(out.glob("*/results.jsonl")) if out.exists() else []
            if found and found[0].read_text().count("\n") >= 2:
                results = found[0]
                break
            time.sleep(0.05)
        assert results is not None, "no rows appeared"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    rows, problems = read_rows(results)
    assert len(rows) >= 2
    assert all(p.reason.startswith("torn") for p in problems)
    assert all(r["status"] == "ok" for r in rows)
    manifest = json.loads((results.parent / "manifest.json").read_text())
    assert manifest["status"] == "running"  # what a killed run honestly says
