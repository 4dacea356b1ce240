"""Handwritten digits: scikit-learn's bundled 8x8 images (1797 of them, 10 classes).

The task is tiny and ships with scikit-learn, so it trains in seconds anywhere and needs no
download. It is a smoke test more than a benchmark: it barely separates mixers (even the
identity mixer reaches ~0.97), but with ``label_noise`` it becomes a quick probe of how an
optimizer copes with memorising wrong labels.

Three splits, stratified (each class keeps the same share in validation and in test) and
drawn from the seed: ``val_fraction`` (0.2) of each class to validation, ``test_fraction``
(0.2) to test, the rest to training: 1079 training, 359 validation and 359 test images at
the defaults, whatever the seed. Pixels (0..16) are scaled to [0, 1] and then standardised
with the training split's mean and standard deviation, so nothing about the held-out images
leaks into training.
"""

from __future__ import annotations

from typing import Any

import torch

import mixbench
from mixbench.errors import OptionError, UsageError
from mixbench.tasks import TaskData
from mixbench_builtins.tasks._noise import flip_labels

NUM_CLASSES = 10


def _load() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 images (num, 1, 8, 8) in [0, 1] and their labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError(
            "the digits task needs scikit-learn: pip install 'mixbench[train]'"
        ) from None
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    return images, labels


def stratified_split(
    labels: torch.Tensor, fractions: tuple[float, ...], generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """(train indices, then one index set per fraction): ``round(f * n_c)`` of each class c
    to each held-out split, disjoint, the rest to train.

    Every index set comes back shuffled, so no split is ordered by class.
    """
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        start = 0
        for split, fraction in enumerate(fractions, start=1):
            count = round(fraction * members.numel())
            parts[split].append(members[start : start + count])
            start += count
        parts[0].append(members[start:])
    joined = [torch.cat(part) for part in parts]
    return tuple(idx[torch.randperm(idx.numel(), generator=generator)] for idx in joined)


def make_digits(
    seed: int, *, val_fraction: float = 0.2, test_fraction: float = 0.2, label_noise: float = 0.0
) -> TaskData:
    """Digits split by ``seed``; ``label_noise`` flips that fraction of training labels."""
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < fraction < 1.0:
            raise OptionError(f"digits: {name} must be in (0, 1), got {fraction}")
    images, labels = _load()
    generator = torch.Generator().manual_seed(seed)
    train_idx, val_idx, test_idx = stratified_split(
        labels, (val_fraction, test_fraction), generator
    )
    if min(train_idx.numel(), val_idx.numel(), test_idx.numel()) == 0:
        raise OptionError(
            f"digits: val_fraction={val_fraction} and test_fraction={test_fraction} leave a "
            "split empty (their sum must stay well below 1)"
        )

    x_train, x_val, x_test = images[train_idx], images[val_idx], images[test_idx]
    mean, std = x_train.mean(), x_train.std()
    x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))

    y_train, flipped = flip_labels(labels[train_idx], label_noise, NUM_CLASSES, seed)
    info: dict[str, Any] = {
        "source": "sklearn.datasets.load_digits",
        "num_train": int(train_idx.numel()),
        "num_val": int(val_idx.numel()),
        "num_test": int(test_idx.numel()),
        "label_noise": label_noise,
        "labels_flipped": flipped,
    }
    return TaskData(
        x_train=x_train.contiguous(),
        y_train=y_train,
        x_val=x_val.contiguous(),
        y_val=labels[val_idx],
        x_test=x_test.contiguous(),
        y_test=labels[test_idx],
        num_classes=NUM_CLASSES,
        input="image",
        chance=1.0 / NUM_CLASSES,
        info=info,
    )


@mixbench.hookimpl
def register_tasks(register: Any) -> None:
    register(
        "digits",
        make_digits,
        description="8x8 handwritten digits bundled with scikit-learn (1797 images, 10 classes); "
        "label_noise flips training labels",
        default_for=("train",),  # mixbench train's task when --task is not given
    )
