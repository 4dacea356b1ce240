"""SAM/ASAM checked against updates computed by hand, plus the wrapper's plumbing: the
closure contract, schedulers, checkpoints and base-optimizer lookup."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mixbench.core.api import create_optimizer
from mixbench.errors import OptionError, UnknownNameError
from mixbench_builtins.optimizers.sam import SAM, make_sam

A = (1.0, 3.0)  # curvatures: L(w) = 0.5 * (A0 * u^2 + A1 * v^2)
W0 = (1.0, -2.0)


def _problem() -> tuple[torch.Tensor, torch.Tensor]:
    """Two separate parameters, so the perturbation must use the global gradient norm."""
    u = torch.nn.Parameter(torch.tensor([W0[0]], dtype=torch.float64))
    v = torch.nn.Parameter(torch.tensor([W0[1]], dtype=torch.float64))
    return u, v


def _closure(opt: torch.optim.Optimizer, u: torch.Tensor, v: torch.Tensor, calls: list[int]):
    def closure() -> torch.Tensor:
        calls.append(1)
        opt.zero_grad()
        loss = 0.5 * (A[0] * u**2 + A[1] * v**2).sum()
        loss.backward()
        return loss

    return closure


def _sgd_sam(params: list[torch.Tensor], **options: object) -> torch.optim.Optimizer:
    return make_sam(params, 0.1, base="sgd", momentum=0.0, **options)


def test_sam_step_matches_hand_computation() -> None:
    rho, lr = 0.05, 0.1
    u, v = _problem()
    opt = _sgd_sam([u, v], rho=rho)
    loss = opt.step(_closure(opt, u, v, []))

    g = (A[0] * W0[0], A[1] * W0[1])  # (1, -6)
    norm = math.hypot(*g)
    e = (rho * g[0] / norm, rho * g[1] / norm)
    g_at_perturbed = (A[0] * (W0[0] + e[0]), A[1] * (W0[1] + e[1]))
    expected = (W0[0] - lr * g_at_perturbed[0], W0[1] - lr * g_at_perturbed[1])

    assert u.item() == pytest.approx(expected[0], abs=1e-6)
    assert v.item() == pytest.approx(expected[1], abs=1e-6)
    assert loss.item() == pytest.approx(0.5 * (A[0] * W0[0] ** 2 + A[1] * W0[1] ** 2), abs=1e-12)


def test_adaptive_sam_step_matches_hand_computation() -> None:
    rho, lr = 0.5, 0.1
    u, v = _problem()
    opt = _sgd_sam([u, v], rho=rho, adaptive=True)
    opt.step(_closure(opt, u, v, []))

    g = (A[0] * W0[0], A[1] * W0[1])
    norm = math.hypot(W0[0] * g[0], W0[1] * g[1])  # ||w * g||
    e = (rho * W0[0] ** 2 * g[0] / norm, rho * W0[1] ** 2 * g[1] / norm)
    g_at_perturbed = (A[0] * (W0[0] + e[0]), A[1] * (W0[1] + e[1]))
    expected = (W0[0] - lr * g_at_perturbed[0], W0[1] - lr * g_at_perturbed[1])

    assert u.item() == pytest.approx(expected[0], abs=1e-6)
    assert v.item() == pytest.approx(expected[1], abs=1e-6)


def test_step_returns_the_unperturbed_loss_and_calls_the_closure_twice() -> None:
    u, v = _problem()
    opt = _sgd_sam([u, v])
    calls: list[int] = []
    closure = _closure(opt, u, v, calls)
    for step in range(3):
        before = 0.5 * (A[0] * u.item() ** 2 + A[1] * v.item() ** 2)
        assert opt.step(closure).item() == pytest.approx(before, abs=1e-12)
        assert len(calls) == 2 * (step + 1)
    assert opt.grad_evals_per_step == 2


def test_step_without_a_closure_is_a_clear_error() -> None:
    u, v = _problem()
    with pytest.raises(TypeError, match="closure"):
        _sgd_sam([u, v]).step()


def test_rho_zero_is_the_base_optimizer() -> None:
    u, v = _problem()
    opt = _sgd_sam([u, v], rho=0.0)
    opt.step(_closure(opt, u, v, []))
    assert u.item() == pytest.approx(W0[0] - 0.1 * A[0] * W0[0], abs=1e-12)
    assert v.item() == pytest.approx(W0[1] - 0.1 * A[1] * W0[1], abs=1e-12)


def test_parameters_without_gradients_are_untouched() -> None:
    u, v = _problem()
    frozen = torch.nn.Parameter(torch.tensor([5.0], dtype=torch.float64))
    opt = _sgd_sam([u, v, frozen])
    opt.step(_closure(opt, u, v, []))
    assert frozen.item() == 5.0


def test_scheduler_lr_changes_reach_the_base() -> None:
    u, v = _problem()
    opt = _sgd_sam([u, v])
    assert opt.param_groups is opt.base.param_groups
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    closure = _closure(opt, u, v, [])
    opt.step(closure)
    scheduler.step()
    assert opt.base.param_groups[0]["lr"] == pytest.approx(0.05)

    # The next update really uses lr 0.05: rho=0 makes it plain SGD, easy to check.
    opt.param_groups[0]["rho"] = 0.0
    u0 = u.item()
    opt.step(closure)
    assert u.item() == pytest.approx(u0 - 0.05 * A[0] * u0, abs=1e-12)


def test_state_dict_round_trips_base_state_and_rho() -> None:
    def run(opt: torch.optim.Optimizer, u: torch.Tensor, v: torch.Tensor, steps: int) -> None:
        closure = _closure(opt, u, v, [])
        for _ in range(steps):
            opt.step(closure)

    u, v = _problem()
    opt = make_sam([u, v], 0.05, base="sgd", momentum=0.9, rho=0.2)
    run(opt, u, v, 3)
    state = copy.deepcopy(opt.state_dict())  # as torch.save/torch.load would give it
    assert len(state["state"]) == 2  # momentum buffers of the base are included

    u2 = torch.nn.Parameter(u.detach().clone())
    v2 = torch.nn.Parameter(v.detach().clone())
    restored = make_sam([u2, v2], 0.05, base="sgd", momentum=0.9, rho=0.05)
    restored.load_state_dict(state)
    assert restored.param_groups[0]["rho"] == 0.2
    assert restored.param_groups is restored.base.param_groups
    assert restored.state is restored.base.state

    run(opt, u, v, 2)
    run(restored, u2, v2, 2)
    assert torch.equal(u, u2) and torch.equal(v, v2)


def test_unknown_base_is_an_unknown_name_error() -> None:
    u, v = _problem()
    with pytest.raises(UnknownNameError, match="nope"):
        make_sam([u, v], 0.1, base="nope")


def test_sam_cannot_wrap_itself() -> None:
    u, v = _problem()
    with pytest.raises(OptionError, match="sam"):
        make_sam([u, v], 0.1, base="sam")


def test_bad_base_option_is_an_option_error() -> None:
    u, v = _problem()
    with pytest.raises(OptionError, match="betas"):
        create_optimizer("sam", [u, v], lr=0.1, options={"base": "sgd", "betas": "0.9,0.99"})
    with pytest.raises(OptionError, match="momentum"):
        create_optimizer("sam", [u, v], lr=0.1, options={"momentum": "fast"})
    with pytest.raises(OptionError, match="rho"):
        create_optimizer("sam", [u, v], lr=0.1, options={"rho": "-1"})


def test_base_options_convert_from_strings() -> None:
    u, v = _problem()
    opt = create_optimizer(
        "sam",
        [u, v],
        lr=0.01,
        options={"base": "adamw", "betas": "0.8,0.99", "rho": "0.1", "adaptive": "true"},
    )
    assert isinstance(opt, SAM) and isinstance(opt.base, torch.optim.AdamW)
    group = opt.param_groups[0]
    assert (tuple(group["betas"]), group["rho"], group["adaptive"]) == ((0.8, 0.99), 0.1, True)


@pytest.mark.parametrize(("base", "adaptive"), [("sgd", False), ("adam", False), ("sgd", True)])
def test_sam_decreases_a_convex_loss(base: str, adaptive: bool) -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, dtype=torch.float64) * 2)
    curvature = torch.linspace(1.0, 5.0, 6, dtype=torch.float64)
    lr = 0.1 if base == "adam" else 0.05
    opt = make_sam([w], lr, base=base, adaptive=adaptive, rho=0.05)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.5 * (curvature * (w - 1.0) ** 2).sum()
        loss.backward()
        return loss

    losses = [opt.step(closure).item() for _ in range(150)]
    assert losses[-1] < 0.02 * losses[0]
