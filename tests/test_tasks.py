"""The built-in tasks: determinism from the seed, the exact splits (train, validation, test,
disjoint) and noise they promise, the MQAR construction (answers only in the kv section), and
CIFAR-10's binary reader."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mixbench.core.api import create_task
from mixbench.core.plugin_loader import get_registry
from mixbench.errors import OptionError, UsageError
from mixbench.tasks import IGNORE_INDEX, TaskData
from mixbench_builtins.tasks import cifar10, mqar
from mixbench_builtins.tasks.cifar10 import make_cifar10
from mixbench_builtins.tasks.digits import make_digits
from mixbench_builtins.tasks.mqar import make_mqar

TENSORS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def _same(a: TaskData, b: TaskData) -> bool:
    return all(torch.equal(getattr(a, t), getattr(b, t)) for t in TENSORS)


def test_builtin_tasks_are_registered() -> None:
    assert {"digits", "mqar", "cifar10"} <= set(get_registry().names("task"))


# -- digits ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> TaskData:
    return make_digits(0)


def test_digits_is_deterministic_per_seed(digits: TaskData) -> None:
    assert _same(digits, make_digits(0))
    assert not torch.equal(digits.y_train, make_digits(1).y_train)


def test_digits_split_is_stratified(digits: TaskData) -> None:
    from sklearn.datasets import load_digits

    per_class = np.bincount(load_digits().target, minlength=10)
    val_counts = torch.bincount(digits.y_val, minlength=10).numpy()
    test_counts = torch.bincount(digits.y_test, minlength=10).numpy()
    train_counts = torch.bincount(digits.y_train, minlength=10).numpy()
    assert val_counts.tolist() == [round(0.2 * n) for n in per_class]
    assert test_counts.tolist() == [round(0.2 * n) for n in per_class]
    assert (val_counts + test_counts + train_counts).tolist() == per_class.tolist()
    # The sizes the module docstring documents.
    assert (len(digits.y_train), len(digits.y_val), len(digits.y_test)) == (1079, 359, 359)
    assert digits.x_train.shape == (int(train_counts.sum()), 1, 8, 8)
    assert digits.x_val.shape == (int(val_counts.sum()), 1, 8, 8)
    assert digits.x_train.dtype == torch.float32
    assert (digits.input, digits.num_classes, digits.shape) == ("image", 10, (8, 8))


def test_digits_splits_are_disjoint(digits: TaskData) -> None:
    rows = [{tuple(x.flatten().tolist()) for x in split} for split in
            (digits.x_train, digits.x_val, digits.x_test)]  # fmt: skip
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])


def test_digits_val_and_test_fraction_options(digits: TaskData) -> None:
    half = create_task("digits", seed=0, options={"val_fraction": "0.5", "test_fraction": "0.1"})
    assert abs(len(half.y_val) - 1797 / 2) <= 10
    assert abs(len(half.y_test) - 1797 / 10) <= 10
    with pytest.raises(OptionError, match="val_fraction"):
        make_digits(0, val_fraction=1.0)
    with pytest.raises(OptionError, match="test_fraction"):
        make_digits(0, test_fraction=0.0)
    with pytest.raises(OptionError, match="leave a split empty"):
        make_digits(0, val_fraction=0.6, test_fraction=0.4)


def test_digits_pixels_are_standardised_on_the_training_split(digits: TaskData) -> None:
    assert abs(digits.x_train.mean().item()) < 1e-4
    assert digits.x_train.std().item() == pytest.approx(1.0, abs=1e-4)


def test_digits_label_noise_flips_exactly_that_many_training_labels(digits: TaskData) -> None:
    noisy = create_task("digits", seed=0, options={"label_noise": "0.1"})
    n_train = len(digits.y_train)
    flipped = noisy.y_train != digits.y_train
    assert int(flipped.sum()) == round(0.1 * n_train) == noisy.info["labels_flipped"]
    # Same split, same images, clean validation labels.
    assert torch.equal(noisy.x_train, digits.x_train)
    assert torch.equal(noisy.y_val, digits.y_val)
    assert torch.equal(noisy.x_val, digits.x_val)


def test_digits_label_noise_goes_to_every_other_class_never_the_same(digits: TaskData) -> None:
    noisy = make_digits(0, label_noise=1.0)
    shift = (noisy.y_train - digits.y_train) % 10
    assert (shift != 0).all()
    counts = torch.bincount(shift, minlength=10)[1:]
    assert (counts > 0.5 * len(shift) / 9).all()  # ~uniform over the 9 other classes


def test_digits_rejects_bad_label_noise() -> None:
    with pytest.raises(OptionError, match="label_noise"):
        make_digits(0, label_noise=1.5)


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(UsageError, match=r"mixbench\[train\]"):
        make_digits(0)


# -- mqar --------------------------------------------------------------------------------

SMALL = {"num_train": 200, "num_val": 50, "num_test": 40}


def _kv_section(task: TaskData, tokens: torch.Tensor) -> list[dict[int, int]]:
    """Decode each example's kv section into {key: value}."""
    keys, values = task.info["num_keys"], task.info["num_values"]
    pairs = task.info["queries_per_example"]
    decoded = []
    for row in tokens.tolist():
        if task.info["layout"] == "pair":
            codes = [t - 1 - keys for t in row[:pairs]]
            decoded.append({c // values: c % values for c in codes})
        else:
            section = row[: 2 * pairs]
            decoded.append(
                {k - 1: v - 1 - keys for k, v in zip(section[0::2], section[1::2], strict=True)}
            )
    return decoded


@pytest.mark.parametrize("layout", ["pair", "zoology"])
def test_mqar_is_deterministic_per_seed(layout: str) -> None:
    a = make_mqar(3, layout=layout, **SMALL)
    assert _same(a, make_mqar(3, layout=layout, **SMALL))
    assert not torch.equal(a.x_train, make_mqar(4, layout=layout, **SMALL).x_train)


@pytest.mark.parametrize("layout", ["pair", "zoology"])
def test_mqar_queries_ask_for_the_value_stored_under_their_key(layout: str) -> None:
    task = make_mqar(0, layout=layout, **SMALL)
    pairs, kv_len = task.info["queries_per_example"], task.info["kv_section"]
    assert (task.input, task.per_token, task.vocab_size) == ("tokens", True, 256)
    assert task.num_classes == task.info["num_values"]
    assert task.chance == pytest.approx(1 / task.info["num_values"])
    assert task.x_train.shape == task.y_train.shape == (200, 64)
    assert int(task.x_train.max()) < task.vocab_size

    for tokens, targets in (
        (task.x_train, task.y_train),
        (task.x_val, task.y_val),
        (task.x_test, task.y_test),
    ):
        for row, (kv, tok, tgt) in enumerate(
            zip(_kv_section(task, tokens), tokens, targets, strict=True)
        ):
            assert len(kv) == pairs, f"keys not distinct in example {row}"
            query_positions = torch.nonzero(tgt != IGNORE_INDEX).flatten().tolist()
            assert len(query_positions) == pairs and min(query_positions) >= kv_len
            queried = [int(tok[p]) - 1 for p in query_positions]
            assert sorted(queried) == sorted(kv), "every key is queried once"
            for position, key in zip(query_positions, queried, strict=True):
                assert int(tgt[position]) == kv[key]


@pytest.mark.parametrize("layout", ["pair", "zoology"])
def test_mqar_no_value_appears_after_the_kv_section(layout: str) -> None:
    task = make_mqar(0, layout=layout, **SMALL)
    num_keys, kv_len = task.info["num_keys"], task.info["kv_section"]
    after = task.x_train[:, kv_len:]
    # Past the kv section only filler (0) and bare query keys (1..num_keys) occur.
    assert int(after.max()) <= num_keys
    filler = after == mqar.FILLER
    assert torch.equal(~filler, task.y_train[:, kv_len:] != IGNORE_INDEX)
    assert (task.y_train[:, :kv_len] == IGNORE_INDEX).all()


def test_mqar_test_split_is_sized_and_disjoint_and_leaves_train_and_val_as_they_were() -> None:
    task = make_mqar(0, **SMALL)
    assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (200, 50, 40)
    rows = [{tuple(r.tolist()) for r in x} for x in (task.x_train, task.x_val, task.x_test)]
    assert sum(map(len, rows)) == 290, "no input repeats, within or across splits"
    # Drawn after the others: asking for more test examples changes neither train nor val.
    more = make_mqar(0, **{**SMALL, "num_test": 80})
    assert torch.equal(more.x_train, task.x_train) and torch.equal(more.x_val, task.x_val)
    assert len(more.x_test) == 80


@pytest.mark.parametrize("layout", ["pair", "zoology"])
def test_mqar_causal_form_is_the_same_data_declared_causal(layout: str) -> None:
    plain = make_mqar(0, layout=layout, **SMALL)
    causal = create_task("mqar", seed=0, options={"layout": layout, "causal": "true", **SMALL})
    assert causal.causal and not plain.causal and causal.info["causal"] is True
    assert _same(plain, causal)
    # Next-token targets: the label sits on the queried key, and asks for its value, which
    # never occurs at or after the query (nothing to copy from the future even unmasked).
    kv_len = causal.info["kv_section"]
    assert (causal.y_train[:, :kv_len] == IGNORE_INDEX).all()


def test_mqar_value_bag_baseline_sits_between_chance_and_recall() -> None:
    task = make_mqar(0, **SMALL)
    assert task.chance < task.info["value_bag_accuracy"] < 0.5


def test_mqar_options_convert_and_sizes_are_checked() -> None:
    task = create_task(
        "mqar", seed=0, options={"vocab_size": "64", "layout": "zoology", "num_train": "10"}
    )
    assert (task.info["num_keys"], task.info["num_values"], len(task.y_train)) == (31, 32, 10)
    with pytest.raises(OptionError, match="vocab_size"):
        make_mqar(0, vocab_size=64, num_kv_pairs=8, layout="pair")  # 7 keys < 8 pairs
    with pytest.raises(OptionError, match="seq_len"):
        make_mqar(0, seq_len=20, num_kv_pairs=8, layout="zoology")
    with pytest.raises(OptionError, match="layout"):
        create_task("mqar", seed=0, options={"layout": "interleaved"})


# -- cifar10 -----------------------------------------------------------------------------

RECORDS = 5
VAL = 4  # training images held out for validation in these small fixtures


def _write_batch(path: Path, rng: np.random.Generator, labels: list[int] | None = None) -> None:
    records = rng.integers(0, 256, size=(RECORDS, cifar10.RECORD_BYTES), dtype=np.uint8)
    records[:, 0] = labels if labels is not None else rng.integers(0, 10, RECORDS)
    records.tofile(path)


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in (*cifar10.TRAIN_FILES, cifar10.TEST_FILE):
        _write_batch(folder / name, rng)
    return tmp_path


def test_cifar10_reads_the_binary_format(cifar_root: Path) -> None:
    task = create_task("cifar10", seed=0, options={"root": str(cifar_root), "num_val": str(VAL)})
    folder = cifar_root / "cifar-10-batches-bin"
    assert task.x_train.shape == (5 * RECORDS - VAL, 3, 32, 32)
    assert task.x_train.dtype == torch.float32
    assert task.x_val.shape == (VAL, 3, 32, 32)
    assert task.x_test is not None and task.x_test.shape == (RECORDS, 3, 32, 32)
    assert (task.input, task.num_classes, task.shape) == ("image", 10, (32, 32))

    raw = np.fromfile(folder / "data_batch_2.bin", dtype=np.uint8).reshape(RECORDS, -1)
    record = raw[0]  # the first record of the second file, wherever the split put it
    pixels = torch.from_numpy(record[1:].reshape(3, 32, 32).astype(np.float32) / 255.0)
    normalised = (pixels - torch.tensor(cifar10.MEAN).view(3, 1, 1)) / torch.tensor(
        cifar10.STD
    ).view(3, 1, 1)  # R, G and B planes of 1024 bytes each, row-major
    images = torch.cat([task.x_train, task.x_val])
    labels = torch.cat([task.y_train, task.y_val])
    found = torch.nonzero((images - normalised).abs().flatten(1).amax(1) < 1e-5).flatten()
    assert len(found) == 1 and int(labels[found[0]]) == record[0]
    test_raw = np.fromfile(folder / cifar10.TEST_FILE, dtype=np.uint8).reshape(RECORDS, -1)
    assert task.y_test is not None and task.y_test.tolist() == test_raw[:, 0].tolist()

    # The folder itself works as root too.
    assert _same(task, make_cifar10(0, root=str(folder), num_val=VAL))


def test_cifar10_validation_is_held_out_of_training_by_the_seed(cifar_root: Path) -> None:
    a = make_cifar10(0, root=str(cifar_root), num_val=VAL)
    assert (len(a.y_train), len(a.y_val)) == (5 * RECORDS - VAL, VAL)
    train = {tuple(x.flatten().tolist()) for x in a.x_train}
    assert not any(tuple(x.flatten().tolist()) in train for x in a.x_val)
    assert not torch.equal(a.x_val, make_cifar10(1, root=str(cifar_root), num_val=VAL).x_val)
    with pytest.raises(OptionError, match="num_val"):
        make_cifar10(0, root=str(cifar_root), num_val=5 * RECORDS)


def test_cifar10_limit_train_is_a_seeded_subset(cifar_root: Path) -> None:
    full = make_cifar10(0, root=str(cifar_root), num_val=VAL)
    a = make_cifar10(0, root=str(cifar_root), num_val=VAL, limit_train=7)
    assert len(a.y_train) == 7 == a.info["num_train"]
    assert _same(a, make_cifar10(0, root=str(cifar_root), num_val=VAL, limit_train=7))
    other = make_cifar10(1, root=str(cifar_root), num_val=VAL, limit_train=7)
    assert not torch.equal(a.x_train, other.x_train)
    # Every kept image is one of the training images.
    flat = full.x_train.flatten(1)
    assert all((flat == image.flatten()).all(dim=1).any() for image in a.x_train)
    assert torch.equal(a.x_val, full.x_val)


def test_cifar10_label_noise(cifar_root: Path) -> None:
    clean = make_cifar10(0, root=str(cifar_root), num_val=VAL)
    noisy = make_cifar10(0, root=str(cifar_root), num_val=VAL, label_noise=0.2)
    changed = noisy.y_train != clean.y_train
    assert int(changed.sum()) == round(0.2 * (5 * RECORDS - VAL)) == noisy.info["labels_flipped"]
    assert torch.equal(noisy.y_val, clean.y_val)


def test_cifar10_without_root_explains_the_option() -> None:
    with pytest.raises(UsageError, match="root="):
        make_cifar10(0)


def test_cifar10_missing_directory_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(UsageError, match="nowhere") as error:
        make_cifar10(0, root=str(missing))
    assert "data_batch_1.bin" in str(error.value)


def test_cifar10_missing_file_is_named(cifar_root: Path) -> None:
    (cifar_root / "cifar-10-batches-bin" / cifar10.TEST_FILE).unlink()
    with pytest.raises(UsageError, match=re.escape("test_batch.bin")):
        make_cifar10(0, root=str(cifar_root))


def test_cifar10_truncated_file_is_named(cifar_root: Path) -> None:
    path = cifar_root / "cifar-10-batches-bin" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UsageError, match=re.escape("data_batch_3.bin")):
        make_cifar10(0, root=str(cifar_root))


def test_cifar10_bad_label_is_named(cifar_root: Path) -> None:
    path = cifar_root / "cifar-10-batches-bin" / "data_batch_4.bin"
    _write_batch(path, np.random.default_rng(1), labels=[0, 1, 2, 57, 3])
    with pytest.raises(UsageError, match=re.escape("data_batch_4.bin")):
        make_cifar10(0, root=str(cifar_root))
