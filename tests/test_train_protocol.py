"""The training protocol through ``mixbench train``: validation and test splits reported
apart, learning-rate tuning as cells (rule, record, summary), option validation, and the
run pipeline (executors, kill -9 and resume)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import ToyPlugin, _toy_images
from test_train_cli import _one_thread  # noqa: F401 - its autouse fixture: one torch thread
from typer.testing import CliRunner

import mixbench
from mixbench.cli.app import app
from mixbench.core.plugin_loader import register_plugin
from mixbench.runs.store import read_manifest, read_rows
from mixbench.tasks import TaskData
from mixbench.train.lr_tuning import select_lr

runner = CliRunner()
SMALL = ["--depth", "1", "--dim", "16", "--batch-size", "16", "--eval-every", "2"]


@dataclass
class _WithTest(TaskData):
    """A task that brings its own test split (a subclass, so this test does not depend on
    which release of TaskData declares the field)."""

    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None


def _toy_with_test(seed: int) -> TaskData:
    base, extra = _toy_images(seed), _toy_images(seed + 1000, num_train=1, num_val=40)
    return _WithTest(
        base.x_train, base.y_train, base.x_val, base.y_val, num_classes=2, input="image",
        chance=0.5, x_test=extra.x_val, y_test=extra.y_val,
    )  # fmt: skip


class _TestSplitPlugin:
    @mixbench.hookimpl
    def register_tasks(self, register: Any) -> None:
        register("toy_test", _toy_with_test, description="toy images with a test split")


@pytest.fixture(autouse=True)
def _toys() -> None:
    register_plugin(ToyPlugin(), "toys")
    register_plugin(_TestSplitPlugin(), "toys_test")


def train(out: Path, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["train", *args, *SMALL, "--out", str(out)])
    assert result.exit_code == code, result.output
    return result


def rows_of(out: Path) -> list[dict[str, Any]]:
    (run,) = list(out.iterdir())
    return read_rows(run / "results.jsonl")[0]


# -- splits ----------------------------------------------------------------------------------


def test_validation_and_test_are_reported_apart(tmp_path: Path) -> None:
    train(tmp_path / "a", "-m", "identity", "-t", "toy,toy_test", "--steps", "4", "--quiet")
    by_task = {r["config"]["task"]: r["metrics"] for r in rows_of(tmp_path / "a")}
    halved, own = by_task["toy"], by_task["toy_test"]
    # toy brings no test split: its 64 validation examples become 32 + 32, recorded
    assert halved["test_split"] == "half of validation"
    assert (halved["num_val"], halved["num_test"]) == (32, 32)
    assert own["test_split"] == "task" and (own["num_val"], own["num_test"]) == (64, 40)
    for metrics in (halved, own):
        assert 0 <= metrics["test_acc"] <= 1 and metrics["test_loss"] > 0
        assert 0 <= metrics["final_val_acc"] <= 1


# -- tuning ----------------------------------------------------------------------------------


def _row(lr: float, status: str = "ok", acc: float | None = 0.5, seed: int = 0) -> dict[str, Any]:
    return {"status": status, "config": {"lr": lr, "seed": seed}, "metrics": {"final_val_acc": acc}}


def test_selection_rule_ties_divergence_and_edges() -> None:
    grid = [0.001, 0.01, 0.1, 1.0]
    tie = select_lr(grid, [_row(0.001, acc=0.2), _row(0.01, acc=0.7), _row(0.1, acc=0.7),
                           _row(1.0, "diverged", None)])  # fmt: skip
    assert tie.chosen == 0.01 and tie.warning is None  # a tie goes to the lower rate
    assert tie.scores[1.0] is None  # a diverged rate never qualifies
    best_diverged = select_lr(grid, [_row(0.001, acc=0.2), _row(0.01, acc=0.3),
                                     _row(0.01, "diverged", 0.9, seed=1), _row(0.1, acc=0.25),
                                     _row(1.0, "error", None)])  # fmt: skip
    assert best_diverged.chosen == 0.1  # one failed seed disqualifies the rate
    edge = select_lr(grid, [_row(lr, acc=lr) for lr in grid])
    assert edge.chosen == 1.0 and edge.warning and "highest" in edge.warning
    assert select_lr(grid, [_row(lr, "diverged", None) for lr in grid]).chosen is None


def test_tune_lr_runs_trials_then_every_seed_at_the_chosen_rate(tmp_path: Path) -> None:
    args = ["-m", "identity", "-t", "toy", "-o", "sgd,adamw", "-s", "0,1", "--steps", "4"]
    result = train(tmp_path, *args, "--tune-lr", "--lr-grid", "1e-3:1:4", "--quiet")
    rows = rows_of(tmp_path)
    trials = [r for r in rows if r["config"]["lr_tuning"]["stage"] == "trial"]
    tuned = [r for r in rows if r["config"]["lr_tuning"]["stage"] == "tuned"]
    grid = [0.001, 0.01, 0.1, 1.0]
    assert sorted((r["config"]["optimizer"], r["config"]["lr"]) for r in trials) == sorted(
        (o, lr) for o in ("sgd", "adamw") for lr in grid
    )
    assert {r["config"]["seed"] for r in trials} == {0}  # the first seed tunes
    assert sorted((r["config"]["optimizer"], r["config"]["seed"]) for r in tuned) == [
        ("adamw", 0), ("adamw", 1), ("sgd", 0), ("sgd", 1),
    ]  # fmt: skip
    for row in tuned:
        record = row["lr_tuning"]
        assert record["grid"] == grid and record["chosen_lr"] == row["config"]["lr"] in grid
        assert [t["lr"] for t in record["trials"]] == grid
        by_lr = {
            t["config"]["lr"]: t["metrics"]["final_val_acc"]
            for t in trials
            if t["config"]["optimizer"] == row["config"]["optimizer"]
        }
        assert {t["lr"]: t["final_val_acc"] for t in record["trials"]} == by_lr
        assert row["status"] == "ok" and row["metrics"]["test_acc"] is not None
        trial = {(t["config"]["optimizer"], t["config"]["lr"]): t for t in trials}[
            (row["config"]["optimizer"], row["config"]["lr"])
        ]
        if row["config"]["seed"] == 0:  # the tuning seed at the chosen rate already trained
            assert row["reused_trial"] == trial["key"] and row["metrics"] == trial["metrics"]
        else:
            assert "reused_trial" not in row and row["key"] != trial["key"]
    assert "(tuned)" in result.stdout and "lr tuning identity sgd toy" in result.stdout


def test_a_tuned_run_on_its_tuning_seed_alone_ends_with_the_choice_and_its_test_score(
    tmp_path: Path,
) -> None:
    """Every final cell reuses a trial, so the tuned stage runs nothing: the summary must
    still come after it (not after the trials), with or without --quiet."""
    args = ["-m", "identity", "-t", "toy", "-o", "sgd", "-s", "0", "--steps", "4"]
    for quiet in ([], ["--quiet"]):
        out = tmp_path / ("quiet" if quiet else "loud")
        result = train(out, *args, "--tune-lr", "--lr-grid", "1e-3:1:4", *quiet)
        tuned = [r for r in rows_of(out) if r["config"]["lr_tuning"]["stage"] == "tuned"]
        assert len(tuned) == 1 and tuned[0]["reused_trial"]
        chosen = tuned[0]["lr_tuning"]["chosen_lr"]
        assert f"-> lr {chosen:g}" in result.stdout  # the choice, after every trial's score
        assert all(f"{lr:g}: " in result.stdout for lr in (0.001, 0.01, 0.1, 1.0))
        assert "test acc" in result.stdout and "(tuned)" in result.stdout


def test_the_default_grid_spans_the_registered_rate_30x_each_way(tmp_path: Path) -> None:
    train(tmp_path, "-m", "identity", "-t", "toy", "-o", "sgd", "--steps", "2", "--tune-lr", "-q")
    grid = rows_of(tmp_path)[0]["config"]["lr_tuning"]["grid"]
    assert grid[0] == pytest.approx(0.05 / 30, rel=0.01)
    assert grid[-1] == pytest.approx(0.05 * 30, rel=0.01) and 0.05 in grid


def test_a_group_whose_trials_all_diverge_gets_no_rate(tmp_path: Path) -> None:
    train(tmp_path, "-m", "identity", "-t", "toy", "-o", "poison", "--steps", "6", "--tune-lr",
          "--lr-grid", "0.01,0.1", "-q")  # fmt: skip
    tuned = [r for r in rows_of(tmp_path) if r["config"]["lr_tuning"]["stage"] == "tuned"]
    (row,) = tuned
    assert row["status"] == "skipped" and "no rate" in row["reason"]
    assert row["config"]["lr"] is None and row["lr_tuning"]["chosen_lr"] is None


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps: 0 is not accepted; expected a whole number >= 1"),
        (["--lr", "-1"], "--lr: -1.0 is not accepted; expected a number > 0"),
        (["--batch-size", "0"], "--batch-size: 0"),
        (["--threads", "0"], "--threads: 0"),
        (["--eval-every", "0"], "--eval-every: 0"),
        (["--epochs", "0"], "--epochs: 0.0"),
        (["--warmup", "-0.5"], "--warmup: -0.5"),
        (["--sharpness-steps", "0"], "--sharpness-steps: 0"),
        (["--tune-lr", "--lr-grid", "1:0.1:3"], "--lr-grid"),
        (["--tune-lr", "--lr-grid", "a,b"], "--lr-grid"),
        (["--tune-lr", "--lr", "0.1"], "not both"),
        (["--lr-grid", "0.1,1"], "--lr-grid applies with --tune-lr"),
        (["--schedule", "linear"], "--schedule: 'linear'"),
    ],
)
def test_bad_values_exit_2_naming_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "runs"
    result = runner.invoke(app, ["train", "-m", "identity", "-t", "toy", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_an_output_directory_that_cannot_be_created_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = runner.invoke(
        app, ["train", "-m", "identity", "-t", "toy", "--out", str(blocker / "x")]
    )
    assert result.exit_code == 2 and "--out" in result.output and "Traceback" not in result.output


def test_the_python_api_gets_the_same_checks() -> None:
    from mixbench.errors import UsageError
    from mixbench.train.options import TrainOptions

    with pytest.raises(UsageError, match="--batch-size: 0 is not accepted"):
        TrainOptions(mixers=("identity",), batch_size=0)


# -- the pipeline: executors, kill -9, resume ------------------------------------------------

TINY = ["-m", "attention,pooling,identity", "-o", "adamw,sgd", "--steps", "3", "--dim", "16",
        "--depth", "1", "--batch-size", "32", "--eval-every", "3", "--threads", "1",
        "--device", "cpu"]  # fmt: skip


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"MIXBENCH_PLUGINS": "", "MIXBENCH_CACHE_DIR": str(tmp_path / "cache")}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mixbench", "train", *args],
        env={**os.environ, **env}, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_kill_9_then_resume_trains_every_cell_exactly_once(
    tmp_path: Path, env: dict[str, str]
) -> None:
    pytest.importorskip("sklearn")
    from mixbench.train.kind import train_cells

    planned = [c.key for c in train_cells(
        mixer=["attention,pooling,identity"], optimizer=["adamw,sgd"], steps=3, dim=16, depth=1,
        batch_size=32, eval_every=3, threads=1, device="cpu",
    )]  # fmt: skip
    out = tmp_path / "runs"
    first = _cli(*TINY, "--out", str(out), "-q", env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = list(out.glob("*/results.jsonl"))
        if found and len(read_rows(found[0])[0]) >= 2:
            break
        assert first.poll() is None, first.communicate()[1]
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    run_dir = found[0].parent
    killed = [r["key"] for r in read_rows(run_dir / "results.jsonl")[0]]
    assert 2 <= len(killed) < 6 and read_manifest(run_dir)["status"] == "running"
    second = _cli("--resume", str(run_dir), "-q", env=env)
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    final = [r["key"] for r in read_rows(run_dir / "results.jsonl")[0]]
    assert collections.Counter(final) == collections.Counter(planned)  # each exactly once
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "complete"
    assert [s["cells"] for s in manifest["sessions"]][-1] == 6 - len(killed)


def test_sigterm_stops_a_train_run_and_says_how_to_resume(
    tmp_path: Path, env: dict[str, str]
) -> None:
    pytest.importorskip("sklearn")
    out = tmp_path / "runs"
    process = _cli(*TINY, "--out", str(out), "-q", env=env)
    deadline = time.monotonic() + 300
    while not list(out.glob("*/results.jsonl")) and time.monotonic() < deadline:
        assert process.poll() is None
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    (run_dir,) = list(out.iterdir())
    assert f"mixbench train --resume {run_dir}" in stderr
    assert read_manifest(run_dir)["status"] == "interrupted"


@pytest.mark.parametrize("executor", ["subprocess", "ray"])
def test_executors_run_training_cells(tmp_path: Path, env: dict[str, str], executor: str) -> None:
    pytest.importorskip("sklearn")
    if executor == "ray":
        pytest.importorskip("ray")
    args = ["-m", "identity,pooling", "--steps", "2", "--threads", "1", "--device", "cpu"]
    result = runner.invoke(
        app, ["train", *args, *SMALL, "--executor", executor, "--max-parallel", "2",
              "--out", str(tmp_path), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = rows_of(tmp_path)
    assert sorted(r["config"]["mixer"] for r in rows) == ["identity", "pooling"]
    assert all(r["status"] == "ok" and r["metrics"]["test_acc"] is not None for r in rows)
    assert all(r.get("runtime", {}).get("executor", executor) == executor for r in rows)


def test_a_sweep_file_can_ask_for_tuning(tmp_path: Path, env: dict[str, str]) -> None:
    pytest.importorskip("sklearn")
    from mixbench.cli.app import main
    from mixbench.report.leaderboard import build_leaderboard
    from mixbench.report.results import load_results

    sweep = tmp_path / "tuned.toml"
    sweep.write_text(
        'executor = "inline"\n[[grid]]\nkind = "train"\nmixer = "identity"\nsteps = 2\n'
        'dim = 16\ndepth = 1\nthreads = 1\ndevice = "cpu"\nseed = "0,1"\ntune_lr = true\n'
        'lr_grid = "0.01,0.1"\n'
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(sweep), "--out", str(tmp_path / "runs"), "-q"])
    assert exit_info.value.code in (0, None)
    rows = rows_of(tmp_path / "runs")
    stages = collections.Counter(r["config"]["lr_tuning"]["stage"] for r in rows)
    assert stages == {"trial": 2, "tuned": 2}
    board = build_leaderboard(load_results(tmp_path / "runs"))
    assert board.to_markdown().count("| identity |") == 1  # the trials are not results
    assert board.metric.name == "test_acc" and "lr_tuning=tuned" in board.to_markdown()
    assert " @ lr " in board.to_markdown()  # the rate tuning chose, in the cell


def test_without_a_terminal_each_finished_cell_is_one_line(tmp_path: Path) -> None:
    result = train(tmp_path, "-m", "identity,pooling", "-t", "toy", "--steps", "2", "--quiet")
    finished = [line for line in result.output.splitlines() if " -> val_acc " in line]
    assert len(finished) == 2 and all("test_acc" in line for line in finished)
    assert not any("step 2/2" in line for line in result.output.splitlines())


def test_an_unknown_executor_is_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = runner.invoke(
        app, ["train", "-m", "identity", "-t", "toy", "-e", "nope", "--out", str(out)]
    )
    assert result.exit_code == 2 and "nope" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_rows_from_before_test_splits_still_summarise_and_rank() -> None:
    from mixbench.report.leaderboard import build_leaderboard
    from mixbench.report.results import load_results
    from mixbench.train.summary import markdown_by_task, summarise

    committed = Path(__file__).parents[1] / "results" / "train"
    rows = read_rows(committed / "results.jsonl")[0]
    assert rows and all("test_acc" not in r["metrics"] for r in rows)
    assert all(s["test_acc"] is None and s["final_val_acc"] for s in summarise(rows))
    assert "| attention | adamw | — · lr 0.003 ·" in markdown_by_task(rows)
    board = build_leaderboard(load_results(committed))
    assert board.metric.name == "final_val_acc"  # no test split recorded: validation it is
