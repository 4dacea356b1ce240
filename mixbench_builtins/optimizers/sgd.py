"""Stochastic gradient descent with (Nesterov) momentum and coupled weight decay.

A thin wrapper over ``torch.optim.SGD`` whose only job is the plugin signature: typed keyword
options with defaults, so ``--optimizer-option momentum=0.9`` is validated and converted before
the optimizer is built, and an impossible combination is an ``OptionError`` naming the options
rather than a bare ``ValueError`` from torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

import mixbench
from mixbench.errors import OptionError


def make_sgd(
    params: Iterable[Any],
    lr: float,
    *,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    dampening: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD; momentum 0.9 by default because plain SGD is rarely what a benchmark means."""
    if lr <= 0:
        raise OptionError(f"sgd: lr must be positive, got {lr}")
    if momentum < 0:
        raise OptionError(f"sgd: momentum must be >= 0, got {momentum}")
    if weight_decay < 0:
        raise OptionError(f"sgd: weight_decay must be >= 0, got {weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise OptionError("sgd: nesterov=true needs momentum > 0 and dampening=0")
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        dampening=dampening,
    )


@mixbench.hookimpl
def register_optimizers(register: Any) -> None:
    register(
        "sgd",
        make_sgd,
        description="SGD with momentum (torch.optim.SGD); nesterov and weight_decay options",
        default_lr=0.05,  # peak rate under mixbench's protocol; --tune-lr searches around it
        default_for=("bench",),  # mixbench bench --mode train's optimizer by default
    )
