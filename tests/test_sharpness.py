"""Sharpness estimators against answers known in closed form.

For L(w) = 0.5 w^T A w with A symmetric positive semi-definite, at w = 0:

    max_{||e|| <= rho} L(e) - L(0) = 0.5 * rho^2 * lambda_max(A)

and the Hessian is A everywhere, so its top eigenvalue is lambda_max(A).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from mixbench.measure.sharpness import hessian_top_eigenvalue, rho_sharpness
from mixbench.train.schedule import lr_multiplier, warmup_steps_for


def _quadratic(seed: int = 0, sizes: tuple[int, ...] = (2, 3, 4)):  # type: ignore[no-untyped-def]
    """A random PSD quadratic over parameters split into several tensors, so the estimators
    must treat the global norm across tensors, not each tensor on its own."""
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    a = m @ m.T / n
    params = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in sizes]

    def loss() -> torch.Tensor:
        w = torch.cat(params)
        return 0.5 * w @ a @ w

    return a, params, loss


@pytest.mark.parametrize("rho", [0.05, 0.5])
def test_rho_sharpness_of_a_quadratic_is_half_rho_squared_lambda_max(rho: float) -> None:
    a, params, loss = _quadratic()
    lam = float(torch.linalg.eigvalsh(a).max())
    result = rho_sharpness(loss, params, rho=rho, steps=20)
    expected = 0.5 * rho**2 * lam
    assert result["rho_sharpness"] == pytest.approx(expected, rel=1e-3)
    assert result["rho_sharpness"] <= expected * (1 + 1e-9)  # a feasible point: never above
    assert result["perturbation_norm"] <= rho * (1 + 1e-6)
    assert (result["rho"], result["steps"]) == (rho, 20)


def test_more_ascent_steps_never_lower_the_estimate() -> None:
    _, params, loss = _quadratic(seed=1)
    estimates = [rho_sharpness(loss, params, rho=0.1, steps=s)["rho_sharpness"] for s in (1, 3, 10)]
    assert estimates == sorted(estimates)
    assert estimates[0] > 0


def test_sharpness_restores_the_weights_exactly() -> None:
    _, params, loss = _quadratic()
    with torch.no_grad():
        for p in params:
            p.add_(0.3)
    before = [p.detach().clone() for p in params]
    rho_sharpness(loss, params, rho=0.2, steps=5)
    hessian_top_eigenvalue(loss, params)
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p, b)


def test_sharpness_away_from_the_minimum_counts_the_gradient_too() -> None:
    """At w != 0 the best e aligns with the gradient as well: the estimate must exceed what
    curvature alone gives, 0.5 rho^2 lambda_max, and stay below ||g|| rho + that."""
    a, params, loss = _quadratic()
    with torch.no_grad():
        params[0].fill_(1.0)
    w = torch.cat([p.detach() for p in params])
    grad_norm = float((a @ w).norm())
    lam = float(torch.linalg.eigvalsh(a).max())
    rho = 0.1
    value = rho_sharpness(loss, params, rho=rho, steps=20)["rho_sharpness"]
    assert 0.5 * rho**2 * lam < value <= grad_norm * rho + 0.5 * rho**2 * lam + 1e-12


def test_hessian_top_eigenvalue_by_power_iteration() -> None:
    a, params, loss = _quadratic(seed=2)
    lam = float(torch.linalg.eigvalsh(a).max())
    result = hessian_top_eigenvalue(loss, params, iters=200, tol=1e-8)
    assert result["hessian_top_eig"] == pytest.approx(lam, rel=1e-4)
    assert result["converged"]


def test_hessian_of_a_diagonal_quadratic() -> None:
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    curvatures = torch.tensor([1.0, 4.0, 2.0], dtype=torch.float64)
    result = hessian_top_eigenvalue(
        lambda: 0.5 * (curvatures * w**2).sum(), [w], iters=100, tol=1e-10
    )
    assert result["hessian_top_eig"] == pytest.approx(4.0, rel=1e-6)


def test_bad_arguments_are_rejected() -> None:
    _, params, loss = _quadratic()
    with pytest.raises(ValueError):
        rho_sharpness(loss, params, rho=-1.0)
    with pytest.raises(ValueError):
        rho_sharpness(loss, params, steps=0)
    with pytest.raises(ValueError):
        hessian_top_eigenvalue(loss, params, iters=0)


def test_warmup_then_cosine_schedule() -> None:
    total, warmup = 100, 10
    factors = [lr_multiplier(s, total, warmup) for s in range(total)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(b <= a for a, b in itertools.pairwise(factors[10:]))
    assert lr_multiplier(50, total, warmup, "constant") == 1.0
    assert warmup_steps_for(300, 0.05) == 15
    assert warmup_steps_for(300, 20) == 20
    assert warmup_steps_for(300, 0) == 0


def test_hessian_top_eigenvalue_is_the_most_positive_one() -> None:
    """With eigenvalues -5, 1 and 2, power iteration alone would report -5."""
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    curvatures = torch.tensor([-5.0, 1.0, 2.0], dtype=torch.float64)
    result = hessian_top_eigenvalue(
        lambda: 0.5 * (curvatures * w**2).sum(), [w], iters=300, tol=1e-10
    )
    assert result["hessian_top_eig"] == pytest.approx(2.0, rel=1e-5)
