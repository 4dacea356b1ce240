"""The training loop: determinism, divergence, gradient-evaluation counting, per-token
accuracy, target bookkeeping and early stopping, on toy tasks that train in a blink."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import mixbench
from mixbench.core.plugin_loader import register_plugin
from mixbench.tasks import IGNORE_INDEX, TaskData
from mixbench.train import cell as train


def _toy_images(
    seed: int,
    *,
    num_train: int = 96,
    num_val: int = 64,
    noise: float = 0.5,
    random_labels: bool = False,
) -> TaskData:
    """Two classes of 4x4 images told apart by which half is bright: learnable in ~20 steps
    (or, with random_labels, not learnable at all)."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 2, (n,), generator=g)
        x = noise * torch.randn(n, 1, 4, 4, generator=g)
        x[y == 0, :, :2] += 1.0
        x[y == 1, :, 2:] += 1.0
        if random_labels:
            y = torch.randint(0, 2, (n,), generator=g)
        return x, y

    x_train, y_train = split(num_train)
    x_val, y_val = split(num_val)
    return TaskData(x_train, y_train, x_val, y_val, num_classes=2, input="image", chance=0.5)


def _toy_tokens(seed: int, *, num_train: int = 64, num_val: int = 32) -> TaskData:
    """Per-token labels at even positions only (the answer is the token id mod 3)."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, 6, (n, 8), generator=g)
        y = torch.full_like(x, IGNORE_INDEX)
        y[:, ::2] = x[:, ::2] % 3
        return x, y

    x_train, y_train = split(num_train)
    x_val, y_val = split(num_val)
    return TaskData(
        x_train,
        y_train,
        x_val,
        y_val,
        num_classes=3,
        input="tokens",
        per_token=True,
        vocab_size=6,
        chance=1 / 3,
    )


class ToyPlugin:
    """Tasks and a deliberately broken optimizer, registered like any plugin."""

    @mixbench.hookimpl
    def register_tasks(self, register: Any) -> None:
        register("toy", _toy_images, description="two-class 4x4 toy images")
        register("toy_tokens", _toy_tokens, description="per-token toy labels")

    @mixbench.hookimpl
    def register_optimizers(self, register: Any) -> None:
        register("poison", _poisoned_sgd, description="SGD that writes NaN into the weights")


def _poisoned_sgd(params: Any, lr: float, *, at_step: int = 3) -> torch.optim.Optimizer:
    """Plain SGD that corrupts the weights after ``at_step`` steps: a divergence on cue."""

    class Poisoned(torch.optim.SGD):
        taken = 0

        def step(self, closure: Any = None) -> Any:
            loss = super().step(closure)
            self.taken += 1
            if self.taken == at_step:
                with torch.no_grad():
                    for group in self.param_groups:
                        for p in group["params"]:
                            p.fill_(float("nan"))
            return loss

    return Poisoned(params, lr=lr)


@pytest.fixture(autouse=True)
def _toys() -> None:
    register_plugin(ToyPlugin(), "toys")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Toy models gain nothing from intra-op threads, and on a busy 2-core machine a second
    thread waiting at every barrier makes each step 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "mixer": "attention",
        "mixer_options": {},
        "optimizer": "adamw",
        "optimizer_options": {},
        "task": "toy",
        "task_options": {},
        "seed": 0,
        "preset": "tiny",
        "depth": 1,
        "dim": 16,
        "steps": 20,
        "epochs": None,
        "batch_size": 16,
        "lr": 1e-2,
        "schedule": "cosine",
        "warmup": 0.1,
        "eval_every": 5,
        "target_acc": None,
        "stop_train_loss": None,
        "dtype": "float32",
        "sharpness": False,
        "sharpness_rho": 0.05,
        "sharpness_steps": 2,
        "sharpness_batch": 64,
        "hessian": False,
        "device": "cpu",
    }
    base.update(changes)
    return base


def test_same_seed_gives_identical_losses_and_another_seed_does_not() -> None:
    first = train.train_cell(config())
    second = train.train_cell(config())
    other = train.train_cell(config(seed=1))
    assert first.row["status"] == "ok"
    assert first.curves["train"]["loss"] == second.curves["train"]["loss"]
    assert first.curves["eval"]["val_acc"] == second.curves["eval"]["val_acc"]
    assert first.row["metrics"]["train_loss"] == second.row["metrics"]["train_loss"]
    assert first.row["key"] == second.row["key"] != other.row["key"]
    assert first.curves["train"]["loss"] != other.curves["train"]["loss"]


def test_the_row_is_complete_plain_data() -> None:
    outcome = train.train_cell(config(), run_id="run-x")
    row = outcome.row
    assert row["schema"] == 1 and row["kind"] == "train" and row["run_id"] == "run-x"
    m = row["metrics"]
    for name in (
        "final_val_acc",
        "best_val_acc",
        "final_val_loss",
        "best_val_loss",
        "train_loss",
        "train_loss_last_epoch",
        "steps",
        "grad_evals",
        "train_time_s",
        "median_step_s",
        "params",
        "steps_to_target",
        "time_to_target_s",
    ):
        assert name in m, name
    assert m["steps"] == 20 and m["grad_evals"] == 20
    assert m["best_val_acc"] >= m["final_val_acc"]
    assert m["final_val_acc"] > 0.8  # the toy task is easy
    assert outcome.curves["eval"]["step"] == [5, 10, 15, 20]
    assert len(outcome.curves["train"]["loss"]) == 20
    json.dumps(row, allow_nan=False)


def test_sam_costs_two_gradient_evaluations_per_step() -> None:
    sgd = train.train_cell(config(optimizer="sgd", lr=0.05, steps=6))
    sam = train.train_cell(
        config(optimizer="sam", optimizer_options={"base": "sgd"}, lr=0.05, steps=6)
    )
    assert sgd.row["metrics"]["grad_evals"] == 6
    assert sam.row["metrics"]["grad_evals"] == 12
    assert sam.row["metrics"]["grad_evals_per_step"] == 2.0


def test_sam_logs_the_unperturbed_loss() -> None:
    """The first logged loss of SAM is L(w0) and equals SGD's, which starts at the same w0."""
    sgd = train.train_cell(config(optimizer="sgd", lr=0.05, steps=2))
    sam = train.train_cell(
        config(optimizer="sam", optimizer_options={"base": "sgd", "rho": 0.5}, lr=0.05, steps=2)
    )
    assert sam.curves["train"]["loss"][0] == pytest.approx(sgd.curves["train"]["loss"][0], abs=1e-7)


def test_a_huge_learning_rate_is_reported_as_diverged() -> None:
    outcome = train.train_cell(config(optimizer="sgd", lr=1e6, steps=30, warmup=0))
    row = outcome.row
    assert row["status"] == "diverged"
    step = row["metrics"]["diverged_at_step"]
    assert 1 <= step <= 30 and f"step {step}" in row["reason"]
    assert row["metrics"]["final_val_acc"] is None
    assert all(math.isfinite(v) for v in outcome.curves["train"]["loss"])


def test_divergence_is_caught_at_the_step_it_happens() -> None:
    row = train.train_cell(config(optimizer="poison", optimizer_options={"at_step": 3})).row
    assert row["status"] == "diverged"
    assert row["metrics"]["diverged_at_step"] == 4  # weights broken after step 3
    assert row["metrics"]["steps"] == 4


def test_per_token_accuracy_counts_only_labelled_positions() -> None:
    logits = torch.zeros(1, 4, 3)
    logits[0, 0, 2] = logits[0, 1, 0] = logits[0, 2, 1] = logits[0, 3, 1] = 5.0
    targets = torch.tensor([[2, IGNORE_INDEX, 0, IGNORE_INDEX]])  # right, -, wrong, -
    loss, correct, labelled = train.loss_and_correct(logits, targets)
    assert (correct, labelled) == (1, 2)
    by_hand = torch.nn.functional.cross_entropy(logits[0, [0, 2]], torch.tensor([2, 0]))
    assert float(loss) == pytest.approx(float(by_hand))


def test_per_token_task_trains_and_reports_query_accuracy() -> None:
    row = train.train_cell(config(task="toy_tokens", steps=30, lr=2e-2)).row
    assert row["status"] == "ok", row["reason"]
    assert row["metrics"]["final_val_acc"] > 0.9  # id mod 3 is a per-token lookup


def test_target_accuracy_bookkeeping() -> None:
    reached = train.train_cell(config(target_acc=0.75)).row["metrics"]
    assert reached["steps_to_target"] in (5, 10, 15, 20)
    assert 0 < reached["time_to_target_s"] <= reached["train_time_s"]
    assert reached["grad_evals_to_target"] == reached["steps_to_target"]
    never = train.train_cell(config(target_acc=1.0, task_options={"random_labels": True})).row[
        "metrics"
    ]
    assert never["steps_to_target"] is None and never["time_to_target_s"] is None


def test_stop_at_a_training_loss() -> None:
    row = train.train_cell(config(steps=200, stop_train_loss=0.3)).row
    m = row["metrics"]
    assert row["status"] == "ok" and "stopped_early" in m
    assert m["steps"] < 200 and m["steps"] % 5 == 0
    assert m["train_loss"] <= 0.3


def test_epochs_resolve_to_whole_passes() -> None:
    m = train.train_cell(config(steps=None, epochs=2, batch_size=32)).row["metrics"]
    assert m["steps"] == 2 * (96 // 32) and m["epochs"] == 2


def test_sharpness_and_hessian_land_in_the_row() -> None:
    m = train.train_cell(config(sharpness=True, hessian=True, steps=10)).row["metrics"]
    assert m["rho_sharpness"] >= 0
    assert m["sharpness_rho"] == 0.05 and m["sharpness_steps"] == 2
    assert math.isfinite(m["hessian_top_eig"]) and m["hessian_iters"] >= 1


def test_bfloat16_autocast_trains() -> None:
    row = train.train_cell(config(dtype="bfloat16", steps=5)).row
    assert row["status"] == "ok", row["reason"]


def test_default_learning_rates_come_from_the_registrations() -> None:
    from mixbench.core.plugin_loader import get_registry

    def registered(name: str) -> float:
        return float(get_registry().get("optimizer", name).metadata["default_lr"])

    assert train.default_lr("adamw") == registered("adamw") == 3e-3
    assert train.default_lr("sgd") == registered("sgd") == 0.05
    assert "default_lr" not in get_registry().get("optimizer", "sam").metadata
    assert train.default_lr("sam") == registered("sgd")  # SAM's default base
    assert train.default_lr("sam", {"base": "adam"}) == registered("adam")
    assert train.default_lr("poison") == train.FALLBACK_LR
