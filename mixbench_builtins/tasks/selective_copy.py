"""Selective copying: reproduce the data tokens scattered in a noisy sequence, in order.

Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", section
4.1.1, https://arxiv.org/abs/2312.00752. The plain copying task has the data at fixed
positions, so a fixed (time-invariant) mixer solves it by a fixed shift; selective copying
scatters them at random positions among noise tokens, so a mixer has to decide *by content*
which tokens to keep and where they go. Mamba's paper uses it to separate input-dependent
mixers from convolutions with fixed kernels; here it separates content-based mixers
(attention) from fixed ones (pooling, token MLP).

One example, with ``num_tokens`` data tokens in a context of ``context_len`` positions::

    [ context: data tokens at random positions, NOISE elsewhere ][ MARKER x num_tokens ]

The task is causal, read like a language model: at the k-th marker the model predicts the
k-th data token of the context, and nothing else is scored. Ids: 0 is the noise token, data
tokens are 1..num_values, the marker is num_values + 1. The head predicts over the
``num_values`` data values, so ``chance`` is 1 / num_values.

The paper trains at context 4096 with 16 tokens from 16 values. The defaults here are sized
for a CPU: the ``tiny`` preset's causal attention solves them within ``mixbench train``'s
default budget, while causal pooling, which only sees a few neighbours, stays near chance.
Train, validation and test inputs are disjoint (see ``_splits.py``).
"""

from __future__ import annotations

from typing import Any

import torch

import mixbench
from mixbench.errors import OptionError
from mixbench.tasks import IGNORE_INDEX, TaskData
from mixbench_builtins.tasks._splits import disjoint_splits, token_task_data

NOISE = 0


def generate(
    num: int, *, context_len: int, num_tokens: int, num_values: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` examples: token ids (num, context_len + num_tokens) and per-token targets."""
    marker = num_values + 1
    data = torch.randint(1, num_values + 1, (num, num_tokens), generator=generator)
    # num_tokens distinct positions per row, sorted so the data keep their order.
    slots = torch.rand(num, context_len, generator=generator).argsort(dim=1)[:, :num_tokens]
    slots = slots.sort(dim=1).values
    context = torch.full((num, context_len), NOISE, dtype=torch.long)
    context.scatter_(1, slots, data)
    tokens = torch.cat([context, torch.full((num, num_tokens), marker, dtype=torch.long)], 1)
    targets = torch.full_like(tokens, IGNORE_INDEX)
    targets[:, context_len:] = data - 1  # class index of each value, in order
    return tokens, targets


def make_selective_copy(
    seed: int,
    *,
    context_len: int = 32,
    num_tokens: int = 4,
    num_values: int = 8,
    num_train: int = 16384,
    num_val: int = 1024,
    num_test: int = 1024,
) -> TaskData:
    """Selective-copying data for ``seed``: ``num_tokens`` values from ``num_values`` to
    copy out of a context of ``context_len`` positions."""
    if num_tokens < 1 or num_values < 2:
        raise OptionError(
            f"selective_copy: need num_tokens >= 1 and num_values >= 2, got num_tokens="
            f"{num_tokens}, num_values={num_values}"
        )
    if context_len < num_tokens:
        raise OptionError(
            f"selective_copy: context_len={context_len} cannot hold num_tokens={num_tokens}"
        )
    if min(num_train, num_val, num_test) < 1:
        raise OptionError("selective_copy: num_train, num_val and num_test must be >= 1")
    generator = torch.Generator().manual_seed(seed)

    def draw(num: int) -> tuple[torch.Tensor, torch.Tensor]:
        return generate(
            num, context_len=context_len, num_tokens=num_tokens, num_values=num_values,
            generator=generator,
        )  # fmt: skip

    splits = disjoint_splits(draw, (num_train, num_val, num_test), "selective_copy")
    info: dict[str, Any] = {
        "source": "Gu & Dao 2023 (Mamba), section 4.1.1",
        "context_len": context_len,
        "num_tokens": num_tokens,
        "num_values": num_values,
        "num_train": num_train,
        "num_val": num_val,
        "num_test": num_test,
    }
    return token_task_data(
        splits, num_values=num_values, vocab_size=num_values + 2, causal=True, info=info
    )


@mixbench.hookimpl
def register_tasks(register: Any) -> None:
    register(
        "selective_copy",
        make_selective_copy,
        description="selective copying (Gu & Dao 2023, Mamba, sec. 4.1.1), causal: reproduce "
        "the data tokens scattered among noise, in order",
    )
