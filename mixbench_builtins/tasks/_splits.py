"""Disjoint train, validation and test splits for the synthetic sequence tasks, and the
``TaskData`` they share.

A synthetic task draws its examples from a seeded generator, so nothing stops the same input
sequence from landing in two splits; with a small vocabulary that happens, and a test example
seen in training measures memory, not the mixer. Every input is therefore kept at most once
across all splits: a repeat is dropped and replaced by a fresh draw from the same generator,
so the splits stay a function of the seed alone. Drawing goes split by split, in order, so
adding a split after the others leaves the earlier ones as they were.

The synthetic sequence tasks (mqar, selective_copy, induction) all feed token ids and score
a target at every position among ``num_values`` classes; :func:`token_task_data` builds
their ``TaskData`` from the three splits so that only what differs is written per task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from mixbench.errors import OptionError
from mixbench.tasks import TaskData

Draw = Callable[[int], tuple[torch.Tensor, torch.Tensor]]
# Rounds of top-up draws before giving up: each round replaces the repeats of the last one,
# so a task with room for its examples needs one or two.
MAX_ROUNDS = 20


def disjoint_splits(
    draw: Draw, sizes: Sequence[int], task: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) for each size in ``sizes``, no input row repeated anywhere.

    ``draw(n)`` returns ``n`` fresh examples from the task's seeded generator. An
    OptionError names the task when its options leave too few distinct sequences.
    """
    seen: set[bytes] = set()
    splits: list[tuple[torch.Tensor, torch.Tensor]] = []
    for size in sizes:
        inputs: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        have = 0
        for _ in range(MAX_ROUNDS):
            if have == size:
                break
            x, y = draw(size - have)
            keep = []
            for row, values in enumerate(x.numpy()):
                key = values.tobytes()
                if key not in seen:
                    seen.add(key)
                    keep.append(row)
            inputs.append(x[keep])
            targets.append(y[keep])
            have += len(keep)
        if have < size:
            raise OptionError(
                f"{task}: could not draw {size} examples unseen in the other splits (only "
                f"{have}); the options leave too few distinct sequences: make them longer or "
                "the vocabulary larger, or ask for fewer examples"
            )
        splits.append((torch.cat(inputs), torch.cat(targets)))
    return splits


def token_task_data(
    splits: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_values: int,
    vocab_size: int,
    causal: bool,
    info: dict[str, Any],
) -> TaskData:
    """``TaskData`` of a token task from its (train, val, test) splits: token inputs, a
    target per position among ``num_values`` classes, chance 1 / ``num_values``."""
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits
    return TaskData(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_values,
        input="tokens",
        per_token=True,
        causal=causal,
        vocab_size=vocab_size,
        chance=1.0 / num_values,
        info=info,
    )
