"""How sharp is the minimum a run ended in: rho-sharpness and the Hessian's top eigenvalue.

Both are measured on a *fixed* batch (the same examples for every cell of a comparison) and
on a loss given as a zero-argument function, so they work for any model, and for the toy
quadratics the tests check them against.

* **rho-sharpness** (Keskar et al. 2017, https://arxiv.org/abs/1609.04836; the quantity SAM
  minimises, Foret et al. 2021, https://arxiv.org/abs/2010.01412):

      S_rho(w) = max_{||e||_2 <= rho} L(w + e) - L(w)

  estimated by projected, normalised gradient ascent inside the ball, as in Andriushchenko
  et al. 2023 (https://arxiv.org/abs/2302.07011): e <- P_rho(e + rho * g / ||g||) with
  g = grad L(w + e). The first step from e ~ 0 is exactly SAM's perturbation; later steps
  keep climbing along the sphere, which on a quadratic is a damped power iteration and
  finds the top curvature direction. Every iterate is a feasible point, so the best loss
  seen is a lower bound of the true maximum; more ``steps`` tighten it. A tiny random start
  makes the estimate work at an exact critical point, where the gradient is zero.

* **Hessian top eigenvalue** by power iteration on Hessian-vector products (Pearlmutter
  1994; double back-propagation, never the Hessian itself). Power iteration finds the
  eigenvalue of largest *magnitude*; at a minimum that is the largest positive one.

Caveat that decides how to use these numbers: sharpness measured at different training-loss
levels is not comparable (a run at loss 0.001 sits on a saturated softmax whatever the
optimizer), so compare cells at matched training loss or all trained to convergence.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

LossFn = Callable[[], torch.Tensor]

_TINY = 1e-12


def _global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One L2 norm over many tensors, in at least float32 (float64 stays float64)."""
    norms = [t.detach().to(torch.promote_types(t.dtype, torch.float32)).norm(2) for t in tensors]
    norm: torch.Tensor = torch.linalg.vector_norm(torch.stack(norms))
    return norm


def _random_unit(params: Sequence[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """A random direction of global L2 norm 1, drawn on the CPU so that it is reproducible
    whatever the device."""
    noise = [
        torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.device, p.dtype)
        for p in params
    ]
    norm = _global_norm(noise)
    return [n / norm for n in noise]


@torch.no_grad()
def _set(
    params: Sequence[torch.Tensor],
    origin: Sequence[torch.Tensor],
    offset: Sequence[torch.Tensor] | None,
) -> None:
    for i, (p, w) in enumerate(zip(params, origin, strict=True)):
        p.copy_(w if offset is None else w + offset[i])


def rho_sharpness(
    loss_fn: LossFn,
    params: Sequence[torch.Tensor],
    *,
    rho: float = 0.05,
    steps: int = 5,
    seed: int = 0,
    start_scale: float = 1e-3,
) -> dict[str, Any]:
    """Estimate max_{||e|| <= rho} L(w + e) - L(w) by ``steps`` ascent steps.

    ``params`` are moved and restored exactly (copied back, not ``w + e - e``). Returns the
    estimate with everything needed to interpret it: ``rho``, ``steps``, the loss at ``w``,
    the best perturbed loss and the norm of the perturbation that reached it.
    """
    if rho < 0:
        raise ValueError(f"rho must be >= 0, got {rho}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    params = [p for p in params if p.requires_grad]
    origin = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            base = float(loss_fn())
        e = [u * (rho * start_scale) for u in _random_unit(params, generator)]
        best, best_norm = base, 0.0
        for step in range(steps + 1):
            _set(params, origin, e)
            last = step == steps
            with torch.set_grad_enabled(not last):
                loss = loss_fn()
            value = float(loss.detach())
            if value > best:  # every iterate lies in the ball: a valid lower bound
                best, best_norm = value, float(_global_norm(e))
            if last:
                break
            raw = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [
                torch.zeros_like(p) if g is None else g for p, g in zip(params, raw, strict=True)
            ]
            gnorm = float(_global_norm(grads))
            if not math.isfinite(gnorm) or gnorm < _TINY:
                break  # flat wherever we look, or broken: the best so far stands
            e = [ei + g * (rho / gnorm) for ei, g in zip(e, grads, strict=True)]
            enorm = float(_global_norm(e))
            if enorm > rho:
                e = [ei * (rho / enorm) for ei in e]
    finally:
        _set(params, origin, None)
    return {
        "rho_sharpness": best - base,
        "rho": rho,
        "steps": steps,
        "loss": base,
        "perturbed_loss": best,
        "perturbation_norm": best_norm,
    }


def hessian_top_eigenvalue(
    loss_fn: LossFn,
    params: Sequence[torch.Tensor],
    *,
    iters: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """The largest (most positive) eigenvalue of the Hessian of ``loss_fn`` at ``params``.

    Power iteration converges to the eigenvalue of largest *magnitude*. When that one is
    negative (a saddle, or early in training), a second run on the shifted operator
    H - lambda_neg I, whose spectrum is >= 0, finds the top one. Each run stops when the
    Rayleigh quotient moves by less than ``tol`` (relative), or after ``iters`` products;
    ``converged`` says which, ``iters`` counts the products used.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    params = [p for p in params if p.requires_grad]
    with torch.enable_grad():
        loss = loss_fn()
        raw = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    pairs = [(p, g) for p, g in zip(params, raw, strict=True) if g is not None]
    params, grads = [p for p, _ in pairs], [g for _, g in pairs]

    def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.enable_grad():
            hv = torch.autograd.grad(
                grads, params, grad_outputs=v, retain_graph=True, allow_unused=True
            )
        return [
            torch.zeros_like(p) if h is None else h.detach()
            for p, h in zip(params, hv, strict=True)
        ]

    generator = torch.Generator().manual_seed(seed)
    eigenvalue, used, converged = _power_iteration(
        hvp, _random_unit(params, generator), 0.0, iters, tol
    )
    if eigenvalue < 0 and math.isfinite(eigenvalue):
        shifted, more, converged = _power_iteration(
            hvp, _random_unit(params, generator), eigenvalue, iters, tol
        )
        eigenvalue, used = shifted + eigenvalue, used + more
    return {"hessian_top_eig": eigenvalue, "iters": used, "converged": converged, "tol": tol}


def _power_iteration(
    hvp: Callable[[list[torch.Tensor]], list[torch.Tensor]],
    v: list[torch.Tensor],
    shift: float,
    iters: int,
    tol: float,
) -> tuple[float, int, bool]:
    """(dominant eigenvalue of H - shift I, products used, converged) from start ``v``."""
    eigenvalue = 0.0
    for done in range(1, iters + 1):
        hv = [h - shift * x for h, x in zip(hvp(v), v, strict=True)]
        estimate = float(sum((h * x).sum() for h, x in zip(hv, v, strict=True)))
        norm = float(_global_norm(hv))
        if not math.isfinite(estimate):
            return float("nan"), done, False
        if norm < _TINY:  # v is (numerically) in the null space: eigenvalue 0
            return estimate, done, True
        if done > 1 and abs(estimate - eigenvalue) <= tol * max(abs(estimate), _TINY):
            return estimate, done, True
        eigenvalue = estimate
        v = [h / norm for h in hv]
    return eigenvalue, iters, False


def measure_model(
    model: torch.nn.Module,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seed: int,
    batch: int = 1024,
    rho: float | None = 0.05,
    steps: int = 5,
    hessian: bool = False,
) -> dict[str, Any]:
    """rho-sharpness (unless ``rho`` is None) and optionally the Hessian's top eigenvalue of
    ``loss_of(model(xb), yb)`` on a fixed batch: the first ``batch`` examples of a
    permutation drawn from ``seed``. Measured in eval mode and float32, whatever the
    training dtype, so that every cell of a comparison is measured alike."""
    size = min(batch, int(x.shape[0]))
    chosen = torch.randperm(int(x.shape[0]), generator=torch.Generator().manual_seed(seed))[:size]
    xb, yb = x[chosen.to(x.device)], y[chosen.to(y.device)]
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()

    def loss_fn() -> torch.Tensor:
        return loss_of(model(xb), yb)

    out: dict[str, Any] = {"sharpness_batch": size}
    try:
        with _math_attention():
            if rho is not None:
                s = rho_sharpness(loss_fn, params, rho=rho, steps=steps, seed=seed)
                out.update({"rho_sharpness": s["rho_sharpness"], "sharpness_rho": rho,
                            "sharpness_steps": steps, "sharpness_loss": s["loss"]})  # fmt: skip
            if hessian:
                h = hessian_top_eigenvalue(loss_fn, params, seed=seed)
                out.update({"hessian_top_eig": h["hessian_top_eig"], "hessian_iters": h["iters"],
                            "hessian_converged": h["converged"]})  # fmt: skip
    finally:
        model.train(was_training)
    return out


def _math_attention() -> Any:
    """Hessian-vector products need a double backward, which only the math kernel of
    ``scaled_dot_product_attention`` implements on CPU; select it while measuring."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)
