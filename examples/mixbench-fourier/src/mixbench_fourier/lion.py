"""Lion: the sign of an interpolated momentum as the update.

Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms",
https://arxiv.org/abs/2302.06675 (Algorithm 2).

Per parameter, with gradient g and momentum m (zero at the start):

    update = sign(beta1 * m + (1 - beta1) * g)
    p      = p - lr * (update + weight_decay * p)
    m      = beta2 * m + (1 - beta2) * g

Every coordinate moves by exactly ``lr`` (plus decay), so Lion's update has a larger norm
than Adam's: the paper uses a learning rate 3-10x smaller than AdamW's and a weight decay
3-10x larger to keep ``lr * weight_decay`` the same. It keeps one state tensor per
parameter (Adam keeps two), which is why it is interesting on a memory benchmark.

The default learning rate for ``mixbench train`` was measured, not copied: the FNet mixer
on digits, 300 steps of the standard protocol, reached 54 % validation accuracy at 2e-4 (a
tenth of AdamW's 2e-3 there), 81 % at 6e-4, 88 % at 1e-3 and 93 % at 2e-3, against AdamW's
91 %. Small models trained briefly tolerate a larger rate than the paper's large ones; 1e-3
keeps half of AdamW's rate in reserve for harder tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import mixbench
import torch
from mixbench.errors import OptionError


class Lion(torch.optim.Optimizer):
    """Lion with decoupled weight decay, as in the paper's Algorithm 2."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param)
                momentum = state["exp_avg"]
                update = (momentum * beta1 + grad * (1 - beta1)).sign_()
                param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(update, alpha=-group["lr"])
                momentum.mul_(beta2).add_(grad, alpha=1 - beta2)
        return loss


def make_lion(
    params: Iterable[Any],
    lr: float,
    *,
    betas: tuple[float, float] = (0.9, 0.99),
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Lion over ``params``; the paper's defaults (betas 0.9, 0.99; no weight decay)."""
    betas = tuple(betas)  # type: ignore[assignment]
    if lr <= 0:
        raise OptionError(f"lion: lr must be positive, got {lr}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise OptionError(f"lion: betas must be two numbers in [0, 1), got {betas}")
    if weight_decay < 0:
        raise OptionError(f"lion: weight_decay must be >= 0, got {weight_decay}")
    return Lion(params, lr=lr, betas=betas, weight_decay=weight_decay)


@mixbench.hookimpl
def register_optimizers(register: Any) -> None:
    register(
        "lion",
        make_lion,
        description="Lion (Chen et al. 2023): the sign of an interpolated momentum",
        paper=(
            "Chen et al. 2023, Symbolic Discovery of Optimization Algorithms, "
            "https://arxiv.org/abs/2302.06675"
        ),
        default_lr=1e-3,  # what `mixbench train` uses without --lr (see the docstring)
        test_lr=0.05,  # the conformance kit's "decreases loss" check
    )
