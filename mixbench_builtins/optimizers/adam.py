"""Adam and AdamW: Kingma & Ba 2015 (https://arxiv.org/abs/1412.6980) and the decoupled
weight decay of Loshchilov & Hutter 2019 (https://arxiv.org/abs/1711.05101).

Both wrap ``torch.optim``. They share one module because they differ only in how weight decay
enters: Adam adds it to the gradient (so it is rescaled by the adaptive denominator), AdamW
shrinks the weights directly. ``betas`` accepts ``"0.9,0.999"`` from the command line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

import mixbench
from mixbench.errors import OptionError


def _check(name: str, lr: float, betas: tuple[float, ...], eps: float, weight_decay: float) -> None:
    if lr <= 0:
        raise OptionError(f"{name}: lr must be positive, got {lr}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise OptionError(f"{name}: betas must be two numbers in [0, 1), got {betas}")
    if eps <= 0:
        raise OptionError(f"{name}: eps must be positive, got {eps}")
    if weight_decay < 0:
        raise OptionError(f"{name}: weight_decay must be >= 0, got {weight_decay}")


def make_adam(
    params: Iterable[Any],
    lr: float,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
) -> torch.optim.Optimizer:
    """Adam with L2 regularisation added to the gradient (torch's defaults)."""
    betas = tuple(betas)  # type: ignore[assignment]
    _check("adam", lr, betas, eps, weight_decay)
    return torch.optim.Adam(
        params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


def make_adamw(
    params: Iterable[Any],
    lr: float,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    amsgrad: bool = False,
) -> torch.optim.Optimizer:
    """AdamW; weight_decay defaults to torch's 0.01 since decoupled decay is the point of it."""
    betas = tuple(betas)  # type: ignore[assignment]
    _check("adamw", lr, betas, eps, weight_decay)
    return torch.optim.AdamW(
        params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


@mixbench.hookimpl
def register_optimizers(register: Any) -> None:
    # default_lr: the peak rate that trains the built-in mixers well on the built-in tasks
    # under mixbench's protocol (warm-up, cosine decay); --tune-lr searches around it.
    register(
        "adam", make_adam, description="Adam (torch.optim.Adam), L2 weight decay", default_lr=3e-3
    )
    register(
        "adamw",
        make_adamw,
        description="AdamW (torch.optim.AdamW), decoupled weight decay",
        default_lr=3e-3,
        default_for=("train",),  # mixbench train's optimizer when --optimizer is not given
    )
