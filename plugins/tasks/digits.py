"""Handwritten digits: scikit-learn's bundled 8x8 images (1797 of them, 10 classes).

The task is tiny and ships with scikit-learn, so it trains in seconds anywhere and needs no
download. It is a smoke test more than a benchmark: it barely separates mixers (even the
identity mixer reaches ~0.97), but with ``label_noise`` it becomes a quick probe of how an
optimizer copes with memorising wrong labels.

The split is stratified (each class keeps the same share in validation) and drawn from the seed;
pixels (0..16) are scaled to [0, 1] and then standardised with the training split's mean and
standard deviation, so nothing about the validation images leaks into training.
"""

from __future__ import annotations

from typing import Any

import torch

import mixbench
from mixbench.errors import OptionError, UsageError
from mixbench.tasks import TaskData
from mixbench_plugins.tasks._noise import flip_labels

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
    labels: torch.Tensor, val_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices): ``round(val_fraction * n_c)`` of each class c to val.

    Both index sets come back shuffled, so neither split is ordered by class.
    """
    train_parts, val_parts = [], []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        n_val = round(val_fraction * members.numel())
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    train = torch.cat(train_parts)
    val = torch.cat(val_parts)
    train = train[torch.randperm(train.numel(), generator=generator)]
    val = val[torch.randperm(val.numel(), generator=generator)]
    return train, val


def make_digits(seed: int, *, val_fraction: float = 0.2, label_noise: float = 0.0) -> TaskData:
    """Digits split by ``seed``; ``label_noise`` flips that fraction of training labels."""
    if not 0.0 < val_fraction < 1.0:
        raise OptionError(f"digits: val_fraction must be in (0, 1), got {val_fraction}")
    images, labels = _load()
    generator = torch.Generator().manual_seed(seed)
    train_idx, val_idx = stratified_split(labels, val_fraction, generator)
    if train_idx.numel() == 0 or val_idx.numel() == 0:
        raise OptionError(f"digits: val_fraction={val_fraction} leaves one split empty")

    x_train, x_val = images[train_idx], images[val_idx]
    mean, std = x_train.mean(), x_train.std()
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std

    y_train, flipped = flip_labels(labels[train_idx], label_noise, NUM_CLASSES, seed)
    info: dict[str, Any] = {
        "source": "sklearn.datasets.load_digits",
        "num_train": int(train_idx.numel()),
        "num_val": int(val_idx.numel()),
        "label_noise": label_noise,
        "labels_flipped": flipped,
    }
    return TaskData(
        x_train=x_train.contiguous(),
        y_train=y_train,
        x_val=x_val.contiguous(),
        y_val=labels[val_idx],
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
    )
