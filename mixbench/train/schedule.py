"""Learning-rate schedules for ``mixbench train``: linear warm-up, then cosine decay.

Warm-up matters more than it looks for a fair comparison: Adam's first steps divide by a
second-moment estimate built from a handful of gradients, and attention with a freshly
initialised softmax is easy to knock into a bad state; a short linear ramp removes most of the
sensitivity to the initial learning rate, for every optimizer alike. Cosine decay to a small
fraction of the peak then lets each run settle instead of ending mid-bounce, so "final"
accuracy means the same thing for every cell (Loshchilov & Hutter 2017, SGDR,
https://arxiv.org/abs/1608.03983; Goyal et al. 2017 for warm-up,
https://arxiv.org/abs/1706.02677).

The schedule is a multiplier of each parameter group's base learning rate, applied through
``torch.optim.lr_scheduler.LambdaLR``; SAM shares its groups with its base optimizer, so one
scheduler drives both.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mixbench.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

SCHEDULES = ("cosine", "constant")


def lr_multiplier(
    step: int, total_steps: int, warmup_steps: int, schedule: str = "cosine", floor: float = 0.0
) -> float:
    """The factor on the peak learning rate for the update made at ``step`` (0-based).

    Warm-up rises linearly from 1/warmup_steps to 1 over the first ``warmup_steps`` updates
    (never 0: a zero-lr first step would waste a gradient evaluation). After it, ``cosine``
    falls from 1 to ``floor`` at the last step; ``constant`` stays at 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(total_steps: int, warmup: float) -> int:
    """``warmup`` as a fraction of the run (0.05) or, when >= 1, a number of steps (100)."""
    if warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {warmup}")
    steps = int(warmup) if warmup >= 1 else round(warmup * total_steps)
    return min(steps, max(0, total_steps - 1))


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int,
    schedule: str = "cosine",
    floor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler over ``optimizer``; call ``.step()`` after each optimizer step."""
    import torch

    if schedule not in SCHEDULES:
        raise UsageError(f"--schedule: {schedule!r} is not one of {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(step, total_steps, warmup_steps, schedule, floor),
    )
