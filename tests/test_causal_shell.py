"""Causal tasks in the shell: every mixer built causal, a prediction per token, the whole
model blind to the future; and what cannot be causal is refused (a skipped cell), never run
bidirectionally."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

import mixbench
from mixbench.core import plugin_loader as plugins
from mixbench.core.api import create_model
from mixbench.errors import IncompatibleError, OptionError
from mixbench.tasks import IGNORE_INDEX, TaskData
from mixbench.train import cell as train

CAUSAL_BUILTINS = ["attention", "identity", "mlp", "pooling", "window"]


def _causal_task(tokens: int = 12, num: int = 32, vocab: int = 6) -> TaskData:
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (num, tokens), generator=generator)
    y = torch.full_like(x, IGNORE_INDEX)
    y[:, 1:] = x[:, :-1] % 3  # "the previous token, mod 3": needs the past only
    return TaskData(
        x_train=x, y_train=y, x_val=x[:8], y_val=y[:8], x_test=x[8:16], y_test=y[8:16],
        num_classes=3, input="tokens", per_token=True, vocab_size=vocab, causal=True,
    )  # fmt: skip


@pytest.mark.parametrize("mixer", CAUSAL_BUILTINS)
def test_a_causal_model_never_looks_ahead_and_predicts_per_token(mixer: str) -> None:
    task = _causal_task()
    options = {"window_size": 4} if mixer == "window" else {}
    torch.manual_seed(0)
    model = create_model(mixer, task=task, depth=2, dim=16, options=options).eval()
    assert all(block.mixer.causal for block in model.stages[0])
    x = task.x_train[:1]
    with torch.no_grad():
        base = model(x)
        assert base.shape == (1, 12, 3)
        for t in range(11):
            changed = x.clone()
            changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % 6
            assert torch.allclose(model(changed)[:, : t + 1], base[:, : t + 1], atol=1e-5), t


def test_create_model_can_build_a_decoder_without_a_task() -> None:
    model = create_model("attention", seq_len=9, vocab_size=5, num_classes=5, causal=True)
    assert model(torch.zeros(2, 9, dtype=torch.long)).shape == (2, 9, 5)


class Bidirectional(nn.Module):
    """A plugin mixer that declares no causal support."""

    def __init__(self, dim: int, grid: tuple[int, ...]) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean(dim=1, keepdim=True).expand_as(x))


class Plugin:
    @mixbench.hookimpl
    def register_mixers(self, register: Any) -> None:
        register("everywhere", Bidirectional)


@pytest.fixture
def bidirectional_plugin() -> Iterator[None]:
    plugins.register_plugin(Plugin(), "bidirectional-plugin")
    yield
    plugins.reset()


def test_a_mixer_without_causal_is_refused_with_the_reason(bidirectional_plugin: None) -> None:
    with pytest.raises(IncompatibleError, match="has no 'causal' option") as error:
        create_model("everywhere", task=_causal_task())
    assert "bidirectional-plugin" in str(error.value)


def test_a_causal_task_cell_with_such_a_mixer_is_skipped_not_trained(
    bidirectional_plugin: None,
) -> None:
    config = {
        "mixer": "everywhere", "mixer_options": {}, "optimizer": "adamw",
        "optimizer_options": {}, "task": "inline", "task_options": {}, "seed": 0,
        "preset": "tiny", "depth": 1, "dim": 16, "steps": 3, "epochs": None,
        "batch_size": 8, "lr": 1e-3, "schedule": "cosine", "warmup": 0.0, "eval_every": 1,
        "target_acc": None, "stop_train_loss": None, "dtype": "float32", "sharpness": False,
        "sharpness_rho": 0.05, "sharpness_steps": 1, "sharpness_batch": 8, "hessian": False,
        "device": "cpu",
    }  # fmt: skip
    row = train.train_cell(config, task=_causal_task()).row
    assert row["status"] == "skipped"
    assert "has no 'causal' option" in row["reason"]
    assert "steps" not in row["metrics"], "nothing was trained"


@pytest.mark.parametrize(
    ("preset", "reason"),
    [("s12", "isotropic preset"), ("iso12", "GroupNorm takes its statistics over all tokens")],
)
def test_presets_that_mix_tokens_outside_the_mixer_are_refused(preset: str, reason: str) -> None:
    with pytest.raises(IncompatibleError, match=reason):
        create_model("attention", preset=preset, task=_causal_task())


def test_image_inputs_cannot_be_causal() -> None:
    with pytest.raises(IncompatibleError, match="no token order"):
        create_model("attention", image_size=8, in_channels=1, num_classes=2, causal=True)


def test_causal_false_contradicts_a_causal_task() -> None:
    with pytest.raises(OptionError, match="causal=false contradicts"):
        create_model("attention", task=_causal_task(), options={"causal": False})


def test_a_causal_task_must_be_a_per_token_sequence_task() -> None:
    x = torch.zeros(4, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="per_token=True"):
        TaskData(x, torch.zeros(4, dtype=torch.long), x, torch.zeros(4, dtype=torch.long),
                 num_classes=2, input="tokens", vocab_size=2, causal=True)  # fmt: skip
    with pytest.raises(ValueError, match="x_test and y_test"):
        TaskData(x, x, x, x, num_classes=2, input="tokens", vocab_size=2, x_test=x)
