"""CIFAR-10 (Krizhevsky 2009), read from a local copy in the official *binary* format.

mixbench never downloads data, so the user points the task at the "CIFAR-10 binary version"
from https://www.cs.toronto.edu/~kriz/cifar.html (``--task-option root=PATH``, either the
``cifar-10-batches-bin`` folder itself or the folder that contains it). The binary format is
read with numpy alone: the Python version of the data set is a pickle, and unpickling a file
from the internet can run arbitrary code, so it is not accepted.

Each record is 3073 bytes: one label byte (0..9), then 1024 red, 1024 green and 1024 blue
pixel bytes of a 32x32 image in row-major order. ``data_batch_1..5.bin`` are the 50,000
training images; ``test_batch.bin`` (10,000) is the validation split, as is customary.
Pixels are normalised per channel with the training set's mean and standard deviation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import mixbench
from mixbench.errors import OptionError, UsageError
from mixbench.tasks import TaskData
from mixbench_plugins.tasks._noise import flip_labels

NUM_CLASSES = 10
RECORD_BYTES = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
SUBDIR = "cifar-10-batches-bin"
# Per-channel statistics of the 50,000 training images in [0, 1]. (The often-copied std
# (0.2023, 0.1994, 0.2010) is a different statistic; these are the plain pixel std.)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def find_files(root: str) -> tuple[Path, list[Path], Path]:
    """(directory, training files, test file) under ``root`` or ``root/cifar-10-batches-bin``."""
    expected = ", ".join((*TRAIN_FILES, TEST_FILE))
    if not root:
        raise UsageError(
            "cifar10 reads a local copy of the CIFAR-10 binary version (nothing is downloaded): "
            f"pass --task-option root=PATH, a folder with {expected}"
        )
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UsageError(f"cifar10: {base} is not a directory; expected a folder with {expected}")
    directory = base / SUBDIR if (base / SUBDIR).is_dir() else base
    missing = [n for n in (*TRAIN_FILES, TEST_FILE) if not (directory / n).is_file()]
    if missing:
        raise UsageError(
            f"cifar10: {directory} lacks {', '.join(missing)}; expected the CIFAR-10 binary "
            f"version: {expected}"
        )
    return directory, [directory / n for n in TRAIN_FILES], directory / TEST_FILE


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 (n, 3, 32, 32), labels uint8 (n,)) of one binary batch file."""
    size = path.stat().st_size
    if size == 0 or size % RECORD_BYTES:
        raise UsageError(
            f"cifar10: {path} has {size} bytes, not a positive multiple of the "
            f"{RECORD_BYTES}-byte record; the file is truncated or not the binary version"
        )
    records = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0]
    if int(labels.max()) >= NUM_CLASSES:
        raise UsageError(
            f"cifar10: {path} has label {int(labels.max())} (CIFAR-10 labels are 0..9); "
            "is this CIFAR-100 or another file?"
        )
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _normalise(pixels: np.ndarray) -> torch.Tensor:
    images = torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32).div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return images.sub_(mean).div_(std)


def make_cifar10(
    seed: int, *, root: str = "", label_noise: float = 0.0, limit_train: int = 0
) -> TaskData:
    """CIFAR-10 from ``root``; ``limit_train`` keeps a seeded random subset of training images."""
    if limit_train < 0:
        raise OptionError(f"cifar10: limit_train must be >= 0 (0 = all), got {limit_train}")
    directory, train_files, test_file = find_files(root)
    batches = [read_batch(path) for path in train_files]
    train_pixels = np.concatenate([pixels for pixels, _ in batches])
    train_labels = np.concatenate([labels for _, labels in batches])
    val_pixels, val_labels = read_batch(test_file)

    if 0 < limit_train < len(train_labels):
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(train_labels), generator=generator)[:limit_train].numpy()
        train_pixels, train_labels = train_pixels[keep], train_labels[keep]

    y_train, flipped = flip_labels(
        torch.from_numpy(train_labels.astype(np.int64)), label_noise, NUM_CLASSES, seed
    )
    info: dict[str, Any] = {
        "root": str(directory),
        "num_train": len(train_labels),
        "num_val": len(val_labels),
        "label_noise": label_noise,
        "labels_flipped": flipped,
    }
    return TaskData(
        x_train=_normalise(train_pixels),
        y_train=y_train,
        x_val=_normalise(val_pixels),
        y_val=torch.from_numpy(val_labels.astype(np.int64)),
        num_classes=NUM_CLASSES,
        input="image",
        chance=1.0 / NUM_CLASSES,
        info=info,
    )


@mixbench.hookimpl
def register_tasks(register: Any) -> None:
    register(
        "cifar10",
        make_cifar10,
        description="CIFAR-10 from a local copy of the binary version (root=PATH; no download); "
        "test_batch is the validation split; label_noise flips training labels",
    )
