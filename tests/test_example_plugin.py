"""examples/mixbench-fourier as a user meets it: installed (a .dist-info on sys.path, as pip
leaves it), listed, its own test suite green, and its mixer and optimizer measured and trained
by mixbench's runners. .ci/example-plugin.sh repeats this with a real ``pip install``."""

from __future__ import annotations

import importlib
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib
from typer.testing import CliRunner

import mixbench
from mixbench.cli.app import app
from mixbench.core import plugin_loader as plugins

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mixbench-fourier"


@pytest.fixture(autouse=True, scope="module")
def _optimizer_modules_imported() -> None:
    """pytester's in-process runs drop the modules first imported inside them, so import
    what an optimizer step pulls in (torch._dynamo, ~3 s) once, out here."""
    import torch

    weight = torch.nn.Parameter(torch.ones(1))
    weight.grad = torch.ones(1)
    torch.optim.SGD([weight], lr=0.1).step()


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The example installed for one test and selected with MIXBENCH_PLUGINS: its package
    and a .dist-info written from its pyproject (name, version, entry points) on sys.path."""
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    info = tmp_path / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
    )
    points = meta["entry-points"]["mixbench"]
    (info / "entry_points.txt").write_text(
        "[mixbench]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
    )
    # The package is linked in, rather than src/ put on sys.path, so that an egg-info a
    # build may have left in src/ cannot register the plugin a second time.
    (tmp_path / "mixbench_fourier").symlink_to(EXAMPLE / "src" / "mixbench_fourier")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setenv("MIXBENCH_PLUGINS", meta["name"])
    plugins.reset()
    yield meta
    for name in [n for n in sys.modules if n.startswith("mixbench_fourier")]:
        del sys.modules[name]


def cli_json(*args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_installed_example_is_listed_with_its_options(installed) -> None:
    listing = cli_json("list")
    mixers = {e["name"]: e for e in listing["mixers"]}
    optimizers = {e["name"]: e for e in listing["optimizers"]}
    assert mixers["fourier"]["plugin"] == "fourier"
    assert mixers["fourier"]["complexity"] == "O(N log N)"
    assert optimizers["lion"]["plugin"] == "lion"
    assert cli_json("info", "fourier")["options"] == {
        "mix_channels": {"type": "bool", "default": True, "required": False},
        "norm": {"type": "Literal['ortho', 'backward', 'forward']", "default": "ortho",
                 "required": False},
    }  # fmt: skip
    ours = {p["name"]: p for p in cli_json("plugins") if p["distribution"] == "mixbench-fourier"}
    assert sorted(ours) == ["fourier", "lion"]
    assert all(p["status"] == "ok" and p["version"] == installed["version"] for p in ours.values())


def test_the_examples_own_test_suite_passes(installed, pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess(
        str(EXAMPLE), "-p", "no:cacheprovider", "--benchmark-disable"
    )
    # conformance: 5 mixer checks x 2 grids + 2 optimizer checks; then the maths, and the
    # speed test once per mixer and grid.
    result.assert_outcomes(passed=12 + 8 + 5 + 4)


def test_bench_counts_the_ffts_the_flop_counter_cannot_see(installed) -> None:
    from mixbench_fourier.fourier import FourierMixer

    from mixbench.bench.cell import run_cell

    config = {
        "level": "mixer", "mode": "infer", "lr": None, "dim": 16, "batch_size": 2,
        "preset": None, "device": "cpu", "dtype": "float32", "threads": 1, "compile": False,
        "seed": 0, "mixer": "fourier", "mixer_options": {"norm": "backward"}, "optimizer": None,
        "optimizer_options": {}, "tokens": 64, "grid": [8, 8], "image_size": None,
    }  # fmt: skip
    timing = {"warmup_iters": 1, "warmup_s": 0.0, "min_time_s": 0.01, "max_time_s": 0.02}
    row = run_cell({"kind": "bench", "key": "k", "config": config, "settings": {"timing": timing}})
    assert row["status"] == "ok", row["reason"]
    metrics = row["metrics"]
    assert metrics["flops_counted"] == 0 and metrics["params"] == 0
    assert FourierMixer(16, (8, 8)).extra_flops(2) == (2 * 5 * 1024 * 10)
    # an int extra_flops, no model_flops: executed and model FLOPs (counter fallback) agree
    assert metrics["executed_flops"] == metrics["model_flops"] == (2 * 5 * 1024 * 10)
    assert row["runtime"]["plugin"] == "fourier"
    assert row["runtime"]["mixer"] == {
        "fft_axes": [1, 2, -1],
        "norm": "backward",
        "mix_channels": True,
    }


def test_train_runs_fourier_with_lion_at_lions_default_rate(installed, tmp_path: Path) -> None:
    import torch

    from mixbench.tasks import TaskData

    def make_first_token(seed: int) -> TaskData:
        """The label is the first token: information must travel across the sequence."""
        tokens = torch.randint(4, (256, 8), generator=torch.Generator().manual_seed(seed))
        return TaskData(tokens[:192], tokens[:192, 0], tokens[192:], tokens[192:, 0],
                        num_classes=4, input="tokens", vocab_size=4)  # fmt: skip

    class Task:
        @mixbench.hookimpl
        def register_tasks(self, register: Any) -> None:
            register("first_token", make_first_token)

    plugins.register_plugin(Task(), "first-token")
    result = CliRunner().invoke(
        app,
        ["train", "--mixer", "fourier", "--optimizer", "lion", "--task", "first_token",
         "--steps", "10", "--eval-every", "10", "--batch-size", "32", "--depth", "1",
         "--dim", "16", "--out", str(tmp_path), "--json", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert row["status"] == "ok", row["reason"]
    assert row["config"]["lr"] == 1e-3  # lion's registered default_lr
    metrics = row["metrics"]
    assert metrics["steps"] == metrics["grad_evals"] == 10
    assert math.isfinite(metrics["train_loss"])
