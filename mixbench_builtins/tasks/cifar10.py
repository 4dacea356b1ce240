"""CIFAR-10 (Krizhevsky 2009), read in the official *binary* format.

The data come from the "CIFAR-10 binary version" of https://www.cs.toronto.edu/~kriz/cifar.html,
either a local copy (``--task-option root=PATH``, the ``cifar-10-batches-bin`` folder itself
or the folder that contains it) or, with ``--task-option download=true``, the official archive
fetched once into ``root`` or the cache directory (``$MIXBENCH_CACHE_DIR/cifar10``; see
``_download.py``). A download is used only after its MD5 matches the published one; a corrupt
or partial one is deleted and reported. The archive's six batch files are copied out by name
(no path from the archive is ever written) into a temporary folder that takes its final name
only when all six are there, so a half-extracted copy is never read either. ``url`` and
``md5`` default to the official archive and its published checksum.

The binary format is read with numpy alone: the Python version of the data set is a pickle,
and unpickling a file from the internet can run arbitrary code, so it is not accepted.

Each record is 3073 bytes: one label byte (0..9), then 1024 red, 1024 green and 1024 blue
pixel bytes of a 32x32 image in row-major order. ``data_batch_1..5.bin`` are the 50,000
training images and ``test_batch.bin`` the 10,000 test images. Splits: test is the official
test set; validation is ``num_val`` (5,000) training images held out by the seed; training is
the other 45,000 (or a seeded ``limit_train`` of them). Pixels are normalised per channel with
the whole training set's mean and standard deviation.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mixbench
from mixbench.errors import OptionError, UsageError
from mixbench.tasks import TaskData
from mixbench_builtins.tasks._download import cache_dir, download_verified
from mixbench_builtins.tasks._noise import flip_labels

NUM_CLASSES = 10
RECORD_BYTES = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
SUBDIR = "cifar-10-batches-bin"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published on the page above
ARCHIVE = "cifar-10-binary.tar.gz"
# Per-channel statistics of the 50,000 training images in [0, 1]. (The often-copied std
# (0.2023, 0.1994, 0.2010) is a different statistic; these are the plain pixel std.)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def find_files(root: str) -> tuple[Path, list[Path], Path]:
    """(directory, training files, test file) under ``root`` or ``root/cifar-10-batches-bin``."""
    expected = ", ".join((*TRAIN_FILES, TEST_FILE))
    if not root:
        raise UsageError(
            "cifar10 reads the CIFAR-10 binary version: pass --task-option root=PATH, a folder "
            f"with {expected}, or --task-option download=true to fetch it"
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


def fetch(root: str, url: str, md5: str) -> Path:
    """The folder holding ``cifar-10-batches-bin`` under ``root`` (or the cache directory),
    downloaded, verified and extracted first unless a complete copy is already there."""
    base = Path(root).expanduser() if root else cache_dir("cifar10")
    names = (*TRAIN_FILES, TEST_FILE)
    missing = [name for name in names if not (base / SUBDIR / name).is_file()]
    if not missing:
        return base
    if (base / SUBDIR).exists():
        raise UsageError(
            f"cifar10: {base / SUBDIR} exists but lacks {', '.join(missing)}; remove it (or "
            "choose another root) to download a fresh copy"
        )
    archive = download_verified(url, md5, base / ARCHIVE, task="cifar10")
    try:
        with tempfile.TemporaryDirectory(dir=base, prefix=".extract-") as scratch:
            staging = Path(scratch) / SUBDIR
            staging.mkdir()
            with tarfile.open(archive, "r:gz") as tar:
                for name in names:
                    member = tar.getmember(f"{SUBDIR}/{name}")
                    source = tar.extractfile(member) if member.isfile() else None
                    if source is None:
                        raise KeyError(name)
                    with source, (staging / name).open("wb") as out:
                        shutil.copyfileobj(source, out)
            staging.replace(base / SUBDIR)
    except (KeyError, tarfile.TarError, OSError) as exc:
        raise UsageError(
            f"cifar10: {archive} passed its checksum but is not the CIFAR-10 binary archive "
            f"({type(exc).__name__}: {exc}); expected {SUBDIR}/ with {', '.join(names)}"
        ) from None
    finally:
        archive.unlink(missing_ok=True)  # the extracted batches are what is kept
    return base


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
    seed: int,
    *,
    root: str = "",
    download: bool = False,
    url: str = URL,
    md5: str = MD5,
    num_val: int = 5000,
    label_noise: float = 0.0,
    limit_train: int = 0,
) -> TaskData:
    """CIFAR-10 from ``root`` (fetched first with ``download``); ``num_val`` training images
    held out for validation, ``limit_train`` a seeded subset of the rest."""
    if limit_train < 0:
        raise OptionError(f"cifar10: limit_train must be >= 0 (0 = all), got {limit_train}")
    if not 0 < num_val < 50_000:
        raise OptionError(f"cifar10: num_val must be in 1..49999, got {num_val}")
    if download:
        root = str(fetch(root, url, md5))
    directory, train_files, test_file = find_files(root)
    batches = [read_batch(path) for path in train_files]
    all_pixels = np.concatenate([pixels for pixels, _ in batches])
    all_labels = np.concatenate([labels for _, labels in batches])
    test_pixels, test_labels = read_batch(test_file)
    if num_val >= len(all_labels):
        raise OptionError(
            f"cifar10: num_val={num_val} leaves no training images of {len(all_labels)}"
        )

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(all_labels), generator=generator).numpy()
    val_idx, train_idx = order[:num_val], order[num_val:]
    if 0 < limit_train < len(train_idx):
        train_idx = train_idx[:limit_train]  # already a seeded random order
    train_pixels, train_labels = all_pixels[train_idx], all_labels[train_idx]
    val_pixels, val_labels = all_pixels[val_idx], all_labels[val_idx]

    y_train, flipped = flip_labels(
        torch.from_numpy(train_labels.astype(np.int64)), label_noise, NUM_CLASSES, seed
    )
    info: dict[str, Any] = {
        "root": str(directory),
        "num_train": len(train_labels),
        "num_val": len(val_labels),
        "num_test": len(test_labels),
        "downloaded_from": url if download else None,
        "label_noise": label_noise,
        "labels_flipped": flipped,
    }
    return TaskData(
        x_train=_normalise(train_pixels),
        y_train=y_train,
        x_val=_normalise(val_pixels),
        y_val=torch.from_numpy(val_labels.astype(np.int64)),
        x_test=_normalise(test_pixels),
        y_test=torch.from_numpy(test_labels.astype(np.int64)),
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
        description="CIFAR-10, binary version: a local copy (root=PATH) or download=true "
        "(checksum-verified, cached); official test set as test, num_val training images "
        "as validation; label_noise flips training labels",
    )
