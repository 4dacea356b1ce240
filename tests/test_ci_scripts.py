"""The CI scripts check what they claim: ``.ci/check_rows.py`` fails on any row that is not
ok (``.ci/example-plugin.sh`` runs it on every bench and train run it makes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_results import bench_config, bench_row, write_bench_run, write_manifest

from mixbench.runs.store import append_row

CHECK_ROWS = Path(__file__).resolve().parents[1] / ".ci" / "check_rows.py"


def check_rows(*paths: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(CHECK_ROWS), *map(str, paths)]
    return subprocess.run(args, capture_output=True, text=True, check=False)


def test_all_ok_rows_pass(tmp_path: Path) -> None:
    run = write_bench_run(tmp_path / "out" / "bench-a")
    result = check_rows(tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "out") in result.stdout and run.exists()


def test_a_single_errored_cell_fails_and_is_named(tmp_path: Path) -> None:
    run = write_bench_run(tmp_path / "bench-a", mixers=("pooling",))
    broken = bench_row(bench_config("fourier", 64), status="error", run_id=run.name)
    append_row(run / "results.jsonl", broken)
    result = check_rows(run)
    assert result.returncode == 1
    assert "cell fourier is error: error in test" in result.stderr


def test_a_run_without_rows_fails(tmp_path: Path) -> None:
    write_manifest(tmp_path / "empty")
    (tmp_path / "empty" / "results.jsonl").write_text("")
    result = check_rows(tmp_path / "empty")
    assert result.returncode == 1 and "no result rows" in result.stderr
    assert check_rows().returncode == 2
