"""The built-in optimizers: each one minimises a convex quadratic through ``step(closure)``,
and options given as command-line strings are converted and validated."""

from __future__ import annotations

import pytest
import torch

from mixbench.core.api import create_optimizer
from mixbench.core.plugin_loader import get_registry
from mixbench.errors import OptionError

BUILTIN = ["sgd", "adam", "adamw", "sam"]
# Learning rates at which each optimizer makes clear progress in 100 steps on the problem below.
LR = {"sgd": 0.05, "adam": 0.3, "adamw": 0.3, "sam": 0.05}


def _quadratic(w: torch.Tensor) -> torch.Tensor:
    """Convex, badly conditioned (curvatures 1..10), minimum at w = 1."""
    curvature = torch.linspace(1.0, 10.0, w.numel(), dtype=w.dtype)
    return 0.5 * (curvature * (w - 1.0) ** 2).sum()


def _minimise(optimizer: torch.optim.Optimizer, w: torch.Tensor, steps: int) -> list[float]:
    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _quadratic(w)
        loss.backward()
        return loss

    return [optimizer.step(closure).item() for _ in range(steps)]


def test_builtins_are_registered() -> None:
    names = get_registry().names("optimizer")
    assert set(BUILTIN) <= set(names)


@pytest.mark.parametrize("name", BUILTIN)
def test_each_optimizer_decreases_a_convex_quadratic(name: str) -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8) * 3)
    losses = _minimise(create_optimizer(name, [w], lr=LR[name]), w, steps=100)
    assert losses[-1] < 0.05 * losses[0]
    assert torch.isfinite(w).all()


def test_sgd_options_convert_from_strings() -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    opt = create_optimizer(
        "sgd", [w], lr=0.1, options={"momentum": "0.5", "nesterov": "true", "weight_decay": "1e-4"}
    )
    group = opt.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.5, True, 1e-4)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_betas_convert_from_a_comma_separated_string(name: str) -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    opt = create_optimizer(name, [w], lr=1e-3, options={"betas": "0.8,0.99", "eps": "1e-6"})
    assert tuple(opt.param_groups[0]["betas"]) == (0.8, 0.99)
    assert opt.param_groups[0]["eps"] == 1e-6


def test_adamw_decays_weights_by_default_and_adam_does_not() -> None:
    w = torch.nn.Parameter(torch.zeros(1))
    assert create_optimizer("adamw", [w], lr=1e-3).param_groups[0]["weight_decay"] > 0
    assert create_optimizer("adam", [w], lr=1e-3).param_groups[0]["weight_decay"] == 0


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("sgd", {"momentum": "fast"}, "momentum"),
        ("sgd", {"momentom": "0.9"}, "accepted"),
        ("sgd", {"nesterov": "true", "momentum": "0"}, "nesterov"),
        ("sgd", {"momentum": "-0.1"}, "momentum"),
        ("adam", {"betas": "0.9"}, "betas"),
        ("adam", {"betas": "0.9,1.5"}, "betas"),
        ("adamw", {"eps": "0"}, "eps"),
    ],
)
def test_bad_options_are_option_errors(name: str, options: dict[str, str], fragment: str) -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(OptionError, match=fragment):
        create_optimizer(name, [w], lr=0.1, options=options)


def test_plain_optimizers_do_one_gradient_evaluation_per_step() -> None:
    """The trainer assumes 1 when the attribute is absent; only sam says otherwise."""
    w = torch.nn.Parameter(torch.zeros(2))
    for name in ["sgd", "adam", "adamw"]:
        assert getattr(create_optimizer(name, [w], lr=0.1), "grad_evals_per_step", 1) == 1
    assert create_optimizer("sam", [w], lr=0.1).grad_evals_per_step == 2
