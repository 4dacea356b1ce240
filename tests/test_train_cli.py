"""``mixbench train`` through the command line: the grid, the result store, failures that
are rows, usage errors that stop everything before training, and label noise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import ToyPlugin  # the toy task and optimizer plugins
from typer.testing import CliRunner

from mixbench.cli.app import app
from mixbench.core.plugin_loader import register_plugin
from mixbench.runs.store import read_manifest, read_rows
from mixbench.train import cell as train

runner = CliRunner()
SMALL = ["--depth", "1", "--dim", "16", "--batch-size", "16", "--eval-every", "2"]


@pytest.fixture(autouse=True)
def _toys() -> None:
    register_plugin(ToyPlugin(), "toys")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run_dir(out: Path) -> Path:
    (run,) = list(out.iterdir())
    return run


def train_rows(out: Path, *args: str) -> list[dict[str, Any]]:
    """Run ``mixbench train ARGS`` on the small shell into ``out``; the rows it stored."""
    result = runner.invoke(app, ["train", *args, *SMALL, "--out", str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    return read_rows(_run_dir(out) / "results.jsonl")[0]


def test_a_grid_writes_rows_curves_and_manifest(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "--mixer",
            "identity",
            "--mixer",
            "pooling",
            "--task",
            "toy",
            "--seed",
            "0,1",
            "--steps",
            "4",
            *SMALL,
            "--out",
            str(tmp_path),
            "--json",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 4
    run = _run_dir(tmp_path)
    rows, problems = read_rows(run / "results.jsonl")
    assert not problems and [r["key"] for r in rows] == [r["key"] for r in printed]
    assert {(r["config"]["mixer"], r["config"]["seed"]) for r in rows} == {
        ("identity", 0),
        ("identity", 1),
        ("pooling", 0),
        ("pooling", 1),
    }
    for row in rows:
        assert row["status"] == "ok" and row["run_id"] == run.name
        assert row["config"]["lr"] == train.default_lr("adamw")  # the registered default
        curves = json.loads((run / row["curves_file"]).read_text())
        assert curves["key"] == row["key"] and len(curves["train"]["loss"]) == 4
    manifest = read_manifest(run)
    assert manifest["status"] == "complete" and manifest["cells"] == 4
    assert manifest["ended_at"] and manifest["environment"]["torch"]
    assert manifest["command"][:2] == ["mixbench", "train"] or manifest["command"][0] == "mixbench"


def test_the_table_shows_mean_and_std_over_seeds(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "-m",
            "identity",
            "-t",
            "toy",
            "-s",
            "0,1",
            "--steps",
            "4",
            *SMALL,
            "--out",
            str(tmp_path),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "identity" in result.stdout and "2/2" in result.stdout and "±" in result.stdout


def test_a_diverged_cell_is_a_row_and_the_grid_goes_on(tmp_path: Path) -> None:
    rows = train_rows(
        tmp_path, "-m", "identity", "-t", "toy", "--optimizer", "poison,adamw", "--steps", "6",
        "--lr", "0.01",
    )  # fmt: skip
    assert [(r["config"]["optimizer"], r["status"]) for r in rows] == [
        ("poison", "diverged"),
        ("adamw", "ok"),
    ]
    assert rows[0]["metrics"]["diverged_at_step"] == 4


def test_sam_is_charged_two_gradient_evaluations(tmp_path: Path) -> None:
    args = ["-m", "identity", "-t", "toy", "-o", "sgd,sam", "--optimizer-option", "momentum=0.9"]
    rows = {r["config"]["optimizer"]: r for r in train_rows(tmp_path, *args, "--steps", "5")}
    assert rows["sgd"]["metrics"]["grad_evals"] == 5
    assert rows["sam"]["metrics"]["grad_evals"] == 10
    assert rows["sam"]["config"]["optimizer_options"] == {"momentum": 0.9}
    assert rows["sam"]["config"]["lr"] == rows["sgd"]["config"]["lr"]  # sam trains at sgd's lr


def test_options_scoped_to_one_name(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "-m", "identity", "-t", "toy", "-o", "sgd", "-o", "sam",
                                 "--optimizer-option", "sam.rho=0.1", "--optimizer-option",
                                 "momentum=0.5", "--steps", "1", *SMALL, "--out", str(tmp_path),
                                 "--json", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {r["config"]["optimizer"]: r for r in read_rows(_run_dir(tmp_path) / "results.jsonl")[0]}
    assert rows["sgd"]["config"]["optimizer_options"] == {"momentum": 0.5}
    assert rows["sam"]["config"]["optimizer_options"] == {"momentum": 0.5, "rho": 0.1}
    bad = runner.invoke(
        app,
        [
            "train",
            "-m",
            "identity",
            "-t",
            "toy",
            "-o",
            "sgd",
            "--optimizer-option",
            "sam.rho=0.1",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 2 and "'sam' is not one of this grid's optimizers" in bad.output


def test_an_incompatible_mixer_option_skips_that_cell(tmp_path: Path) -> None:
    (row,) = train_rows(
        tmp_path, "-m", "window", "-t", "toy", "--mixer-option", "window_size=7", "--steps", "2"
    )
    assert row["status"] == "skipped" and "window_size" in row["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "atention", "-t", "toy"], "unknown mixer"),
        (["-m", "identity", "-t", "toy", "-o", "nope"], "unknown optimizer"),
        (["-m", "identity", "-t", "no_such_task"], "unknown task"),
        (["-m", "identity", "-t", "toy", "--task-option", "colour=red"], "no option 'colour'"),
        (
            ["-m", "identity", "-t", "digits", "--task-option", "label_noise=1.5"],
            "'digits': label_noise",
        ),
        (["-m", "identity", "-t", "toy", "--steps", "3", "--epochs", "1"], "not both"),
        (["-m", "identity", "-t", "toy", "--seed", "a"], "--seed"),
        (["-m", "identity", "-t", "toy", "--dtype", "float16"], "--dtype"),
        (["-m", "identity", "-t", "toy", "-o", "sam", "--optimizer-option", "base=nope"], "nope"),
        (["-m", "identity", "-t", "toy", "--target-acc", "95"], "--target-acc"),
    ],
)
def test_usage_errors_exit_2_before_any_training(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(
        app,
        ["train", *args, "--steps", "1", "--out", str(tmp_path)]
        if "--steps" not in args
        else ["train", *args, "--out", str(tmp_path)],
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # no run directory started


def test_label_noise_through_the_command_line(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    (row,) = train_rows(
        tmp_path, "-m", "identity", "-t", "digits", "--task-option", "label_noise=0.2",
        "--steps", "2",
    )  # fmt: skip
    info = row["metrics"]["task_info"]
    assert row["config"]["task_options"] == {"label_noise": 0.2}
    assert info["labels_flipped"] == round(0.2 * info["num_train"]) > 0
    clean = runner.invoke(
        app,
        [
            "train",
            "-m",
            "identity",
            "-t",
            "digits",
            "--steps",
            "2",
            *SMALL,
            "--out",
            str(tmp_path / "clean"),
            "--json",
            "--quiet",
        ],
    )
    (clean_row,) = [json.loads(x) for x in clean.stdout.splitlines() if x.startswith("{")]
    assert clean_row["metrics"]["task_info"]["labels_flipped"] == 0
    assert clean_row["key"] != row["key"]
