"""Symmetric label noise shared by the image tasks.

Noisy labels are how one asks whether an optimizer (SAM in particular) resists memorisation, so
the noise must be exact and reproducible: precisely ``round(fraction * n)`` labels change, each
to a uniformly random *other* class, chosen by a generator seeded from the task seed but
independent of the one that drew the train/validation split (changing the noise level must not
change the split).
"""

from __future__ import annotations

import torch

from mixbench.errors import OptionError

# Mixed into the task seed so the noise stream differs from the split stream of the same seed.
_NOISE_STREAM = 0x5EED_0F_1AB


def check_fraction(name: str, value: float) -> None:
    """Reject a noise level outside [0, 1] with an OptionError naming the option."""
    if not 0.0 <= value <= 1.0:
        raise OptionError(f"{name} must be in [0, 1], got {value}")


def flip_labels(
    labels: torch.Tensor, fraction: float, num_classes: int, seed: int
) -> tuple[torch.Tensor, int]:
    """A copy of ``labels`` with ``round(fraction * len(labels))`` of them changed.

    Returns (noisy labels, number flipped). Each chosen label moves to one of the other
    ``num_classes - 1`` classes with equal probability.
    """
    check_fraction("label_noise", fraction)
    count = round(fraction * labels.numel())
    noisy = labels.clone()
    if count == 0:
        return noisy, 0
    if num_classes < 2:
        raise OptionError("label_noise needs at least two classes")
    generator = torch.Generator().manual_seed((seed ^ _NOISE_STREAM) & 0x7FFF_FFFF_FFFF_FFFF)
    chosen = torch.randperm(labels.numel(), generator=generator)[:count]
    # Adding 1..C-1 modulo C lands on every other class with equal probability, never on itself.
    shift = torch.randint(1, num_classes, (count,), generator=generator, dtype=labels.dtype)
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    return noisy, count
