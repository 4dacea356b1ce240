"""``mixbench sweep`` end to end on a tiny sweep of 12 real cells (6 bench, 6 train):
interruption, kill -9 and resume give every cell exactly once; executors agree on the keys."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mixbench.runs.store import read_manifest, read_rows

# Small enough for a test (bench cells on the --quick timing budget, 3-step training cells),
# large enough to be interrupted part-way: 3 mixers x 2 token counts + 3 mixers x 2 optimizers.
TINY = """
name = "tiny"
max_parallel = 2
timeout = 300

[defaults]
device = "cpu"

[[grid]]
kind = "bench"
mixer = ["attention", "pooling", "identity"]
tokens = [16, 64]
dim = 16
batch_size = 2
threads = 1
quick = true

[[grid]]
kind = "train"
mixer = ["attention", "pooling", "identity"]
optimizer = ["adamw", "sgd"]
steps = 3
dim = 16
depth = 1
batch_size = 32
eval_every = 3
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of sweeps run here: built-in plugins, a private name cache."""
    cache = tmp_path_factory.mktemp("cache")
    return {"MIXBENCH_PLUGINS": "", "MIXBENCH_CACHE_DIR": str(cache)}


@pytest.fixture(autouse=True)
def _private_cache(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def planned(tiny: Path) -> list[str]:
    from mixbench.sweep.sweep_file import load_sweep

    return load_sweep(tiny).keys


def run_cli(*args: str, env: dict[str, str], **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mixbench", "sweep", *args],
        env={**os.environ, **env},
        text=True,
        **popen,
    )


def wait_for_rows(run_root: Path, count: int, process: subprocess.Popen[str]) -> Path:
    """The run directory once its results hold ``count`` rows (the run still going)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = list(run_root.glob("*/results.jsonl"))
        if found and len(read_rows(found[0])[0]) >= count:
            return found[0].parent
        assert process.poll() is None, "the sweep ended before it could be interrupted"
        time.sleep(0.2)
    raise AssertionError(f"no {count} rows within the deadline")


def keys_of(run_dir: Path) -> list[str]:
    rows, problems = read_rows(run_dir / "results.jsonl")
    assert all("torn" in p.reason for p in problems), problems
    return [row["key"] for row in rows]


def cli(*args: str) -> int:
    """Run ``mixbench sweep ARGS`` in this process; its exit code."""
    from mixbench.cli.app import main

    try:
        main(["sweep", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_dry_run_lists_every_cell(tiny: Path, planned: list[str], capsys: Any) -> None:
    assert cli(str(tiny), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "12 cells (6 bench, 6 train)" in out
    assert len(planned) == len(set(planned)) == 12
    assert all(key in out for key in planned)


def test_sigterm_then_sigkill_then_resume_runs_every_cell_exactly_once(
    tiny: Path, planned: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    # 1. SIGTERM part-way: in-flight cells abandoned, finished rows kept, resume command shown.
    first = run_cli(
        str(tiny),
        "--out",
        str(out),
        "--quiet",
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    run_dir = wait_for_rows(out, 2, first)
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 143, stderr
    assert read_manifest(run_dir)["status"] == "interrupted"
    resume = f"--resume {run_dir}"
    assert resume in stderr and f"sweep {tiny}" in stderr
    after_term = keys_of(run_dir)
    assert 2 <= len(after_term) < 12

    # 2. Resume, then kill -9 part-way: the file stays readable, nothing is duplicated.
    second = run_cli(
        str(tiny),
        "--resume",
        str(run_dir),
        "--quiet",
        env=env,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    wait_for_rows(out, len(after_term) + 2, second)
    second.kill()
    second.wait(timeout=60)
    after_kill = keys_of(run_dir)
    assert len(after_kill) == len(set(after_kill)) < 12
    assert read_manifest(run_dir)["status"] == "running"  # killed: never got to say otherwise

    # 3. Resume to the end: exactly the missing cells run.
    third = run_cli(
        str(tiny),
        "--resume",
        str(run_dir),
        "--quiet",
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    _, stderr = third.communicate(timeout=300)
    assert third.returncode == 0, stderr
    final = keys_of(run_dir)
    assert collections.Counter(final) == collections.Counter(planned)  # each exactly once
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "complete"
    assert [s["cells"] for s in manifest["sessions"]] == [
        12,
        12 - len(after_term),
        12 - len(after_kill),
    ]
    for row in read_rows(run_dir / "results.jsonl")[0]:
        if row["kind"] == "train" and row["status"] == "ok":
            assert (run_dir / row["curves_file"]).exists()


def test_inline_executor_runs_the_same_cells(
    tiny: Path, planned: list[str], tmp_path: Path
) -> None:
    assert cli(str(tiny), "--executor", "inline", "--out", str(tmp_path), "--quiet") == 0
    (run_dir,) = tmp_path.iterdir()
    assert sorted(keys_of(run_dir)) == sorted(planned)
    assert (run_dir / "leaderboard.csv").exists()  # the bench tables, as `mixbench bench` writes
    assert len(list((run_dir / "curves").glob("*.json"))) == 6  # one per training cell


def test_resuming_with_a_changed_file_is_refused(tiny: Path, tmp_path: Path, capsys: Any) -> None:
    from mixbench.runs.store import RunDir
    from mixbench.sweep.sweep_file import load_sweep

    run = RunDir.create(tmp_path, "tiny")
    run.write_manifest({"kind": "sweep", "sweep": load_sweep(tiny).manifest_entry(str(tiny))})
    changed = tmp_path / "changed.toml"
    changed.write_text(TINY.replace("steps = 3", "steps = 4"))
    assert cli(str(changed), "--resume", str(run.path)) == 2
    err = capsys.readouterr().err
    assert "was made from a different sweep" in err and "grid[1].steps: 3 -> 4" in err
    assert not run.results_path.exists()  # nothing ran
