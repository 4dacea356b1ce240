"""Induction heads: after a trigger token reappears, predict the token that followed it.

Olsson et al. 2022, "In-context Learning and Induction Heads",
https://arxiv.org/abs/2209.11895; as a synthetic task in Gu & Dao 2023, "Mamba", section
4.1.2, https://arxiv.org/abs/2312.00752. An induction head is the two-step circuit "find
the earlier occurrence of the current token, copy what came after it", which Olsson et al.
tie to in-context learning. A mixer needs content-based lookup to do it at an arbitrary
distance: attention forms one in two layers; a fixed local mixer cannot.

One example of ``seq_len`` tokens::

    random tokens ... TRIGGER answer ... random tokens ... TRIGGER

The trigger occurs exactly twice: at a random position (followed by the answer) and as the
last token. The task is causal, read like a language model: only the last position is
scored, and its target is the answer. Ordinary tokens are ids 0..num_values-1 (the answer is
one of them), the trigger is ``num_values``; ``chance`` is 1 / num_values.

Mamba trains at sequence length 256 with 16 values. The defaults here are sized for a CPU:
the ``tiny`` preset's causal attention solves them within ``mixbench train``'s default
budget, while causal pooling stays near chance. Train, validation and test inputs are
disjoint (see ``_splits.py``).
"""

from __future__ import annotations

from typing import Any

import torch

import mixbench
from mixbench.errors import OptionError
from mixbench.tasks import IGNORE_INDEX, TaskData
from mixbench_builtins.tasks._splits import disjoint_splits, token_task_data


def generate(
    num: int, *, seq_len: int, num_values: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` examples: token ids (num, seq_len) and targets (IGNORE_INDEX but the last)."""
    trigger = num_values
    tokens = torch.randint(0, num_values, (num, seq_len), generator=generator)
    # First trigger anywhere that leaves room for its answer before the final trigger.
    first = torch.randint(0, seq_len - 2, (num,), generator=generator)
    rows = torch.arange(num)
    answers = tokens[rows, first + 1]
    tokens[rows, first] = trigger
    tokens[:, -1] = trigger
    targets = torch.full_like(tokens, IGNORE_INDEX)
    targets[:, -1] = answers
    return tokens, targets


def make_induction(
    seed: int,
    *,
    seq_len: int = 32,
    num_values: int = 16,
    num_train: int = 16384,
    num_val: int = 1024,
    num_test: int = 1024,
) -> TaskData:
    """Induction-head data for ``seed``: sequences of ``seq_len`` tokens over
    ``num_values`` values plus the trigger."""
    if seq_len < 3:
        raise OptionError(
            f"induction: seq_len must be >= 3 (trigger, answer, trigger), got {seq_len}"
        )
    if num_values < 2:
        raise OptionError(f"induction: num_values must be >= 2, got {num_values}")
    if min(num_train, num_val, num_test) < 1:
        raise OptionError("induction: num_train, num_val and num_test must be >= 1")
    generator = torch.Generator().manual_seed(seed)

    def draw(num: int) -> tuple[torch.Tensor, torch.Tensor]:
        return generate(num, seq_len=seq_len, num_values=num_values, generator=generator)

    splits = disjoint_splits(draw, (num_train, num_val, num_test), "induction")
    info: dict[str, Any] = {
        "source": "Olsson et al. 2022; Gu & Dao 2023 (Mamba), section 4.1.2",
        "seq_len": seq_len,
        "num_values": num_values,
        "num_train": num_train,
        "num_val": num_val,
        "num_test": num_test,
    }
    return token_task_data(
        splits, num_values=num_values, vocab_size=num_values + 1, causal=True, info=info
    )


@mixbench.hookimpl
def register_tasks(register: Any) -> None:
    register(
        "induction",
        make_induction,
        description="induction heads (Olsson et al. 2022; Mamba sec. 4.1.2), causal: after "
        "the trigger reappears, predict the token that followed it",
    )
