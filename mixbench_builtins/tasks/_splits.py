"""Disjoint train, validation and test splits for the synthetic sequence tasks.

A synthetic task draws its examples from a seeded generator, so nothing stops the same input
sequence from landing in two splits; with a small vocabulary that happens, and a test example
seen in training measures memory, not the mixer. Every input is therefore kept at most once
across all splits: a repeat is dropped and replaced by a fresh draw from the same generator,
so the splits stay a function of the seed alone. Drawing goes split by split, in order, so
adding a split after the others leaves the earlier ones as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mixbench.errors import OptionError

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
