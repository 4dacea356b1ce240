"""Multi-query associative recall (MQAR).

Zoology (Arora et al. 2023, https://arxiv.org/abs/2312.04927) showed that MQAR separates token
mixers where language-model perplexity barely does: a sequence first lists key-value pairs, then
asks for the value of several keys. A mixer has to route information from the matching pair to
each query, which content-based attention does easily and fixed-pattern mixers (pooling, token
MLPs) cannot.

Every example has the same shape::

    [ kv section ][ queries at random positions, filler (id 0) everywhere else ]

and a per-token target that is ``IGNORE_INDEX`` except at query positions, where it is the index
(0..num_values-1) of the value stored under the queried key. Keys are distinct within an
example; values are drawn independently (they may repeat); every key is queried once, in a
random order. Only the kv section carries values, and nothing after it does (queries are bare
key ids, filler is constant), so a bidirectional mixer gains nothing from looking ahead: the
answer has to be recalled from the pairs.

Two layouts of the kv section:

* ``pair`` (default): each pair is ONE token, id = 1 + K + key * V + value; queries are ids
  1..K. Recall needs no positional arithmetic, only matching a query to the pair token that
  contains its key, so it isolates a mixer's content-based routing. Uses 1 + K + K*V ids, with
  K = V the largest n such that 1 + n + n^2 <= vocab_size (vocab 256 gives 15 keys, 15 values).
* ``zoology``: ``k v k v ...`` as in the paper, keys 1..K and values K+1..K+V with K and V half
  of the remaining vocabulary each; queries repeat the key ids. Recall needs an induction-head
  pattern (find the key, read the token after it), so it also tests positional mechanisms.

The head predicts over the ``num_values`` value indices (``num_classes``), so ``chance`` is
1 / num_values.

``causal=true`` is the form Zoology trains: a causal language model reads the sequence left
to right and, at each queried key, predicts the next token, which is the key's value (Zoology
labels that position with the value and ignores every other one, exactly the targets here).
The data are the same; the task declares itself causal, so the shell builds every mixer
causal and a mixer has to recall the value from the pairs *before* the query. The default
stays bidirectional (``causal=false``), the setting of mixbench's earlier mqar results.

Train, validation (``num_val``) and test (``num_test``) inputs are disjoint, drawn in that
order from the seed (see ``_splits.py``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

import mixbench
from mixbench.errors import OptionError
from mixbench.tasks import IGNORE_INDEX, TaskData
from mixbench_builtins.tasks._splits import disjoint_splits, token_task_data

FILLER = 0
Layout = Literal["pair", "zoology"]


def alphabet(vocab_size: int, layout: Layout) -> tuple[int, int]:
    """(number of keys, number of values) that ``vocab_size`` ids allow in ``layout``."""
    if layout == "pair":
        n = 0
        while 1 + (n + 1) + (n + 1) ** 2 <= vocab_size:
            n += 1
        return n, n
    keys = (vocab_size - 1) // 2
    return keys, vocab_size - 1 - keys


def _rank_sample(num: int, population: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(num, count) distinct draws from range(population) per row, in random order."""
    return torch.rand(num, population, generator=generator).argsort(dim=1)[:, :count]


def generate(
    num: int,
    *,
    seq_len: int,
    num_kv_pairs: int,
    num_keys: int,
    num_values: int,
    layout: Layout,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` examples: token ids (num, seq_len) and per-token targets (num, seq_len)."""
    pairs = num_kv_pairs
    keys = _rank_sample(num, num_keys, pairs, generator)  # (num, P), distinct per row
    values = torch.randint(0, num_values, (num, pairs), generator=generator)

    tokens = torch.full((num, seq_len), FILLER, dtype=torch.long)
    targets = torch.full((num, seq_len), IGNORE_INDEX, dtype=torch.long)
    if layout == "pair":
        tokens[:, :pairs] = 1 + num_keys + keys * num_values + values
        kv_len = pairs
        query_ids = 1 + keys
    else:
        tokens[:, 0 : 2 * pairs : 2] = 1 + keys
        tokens[:, 1 : 2 * pairs : 2] = 1 + num_keys + values
        kv_len = 2 * pairs
        query_ids = 1 + keys

    # Query every key once, in a random order, at random positions after the kv section.
    order = _rank_sample(num, pairs, pairs, generator)
    slots = _rank_sample(num, seq_len - kv_len, pairs, generator).sort(dim=1).values + kv_len
    tokens.scatter_(1, slots, query_ids.gather(1, order))
    targets.scatter_(1, slots, values.gather(1, order))
    return tokens, targets


def value_bag_accuracy(targets: torch.Tensor, num_kv_pairs: int) -> float:
    """Accuracy of guessing uniformly among the values present in each example.

    A mixer that learns *which* values occur but not *which key holds which* lands here, above
    ``chance``: it is the bar that separates recall from a bag-of-values shortcut.
    """
    values = targets[targets != IGNORE_INDEX].view(-1, num_kv_pairs).sort(dim=1).values
    distinct = 1 + (values[:, 1:] != values[:, :-1]).sum(dim=1)
    return float((1.0 / distinct).mean())


def make_mqar(
    seed: int,
    *,
    vocab_size: int = 256,
    seq_len: int = 64,
    num_kv_pairs: int = 8,
    layout: Layout = "pair",
    num_train: int = 8192,
    num_val: int = 1024,
    num_test: int = 1024,
    causal: bool = False,
) -> TaskData:
    """MQAR data for ``seed``; the defaults train to >90% with 2 attention blocks in a minute.
    ``causal`` makes it Zoology's causal (next-token) form."""
    num_keys, num_values = alphabet(vocab_size, layout)
    kv_len = num_kv_pairs * (1 if layout == "pair" else 2)
    if num_kv_pairs < 1:
        raise OptionError(f"mqar: num_kv_pairs must be >= 1, got {num_kv_pairs}")
    if num_values < 2 or num_keys < num_kv_pairs:
        raise OptionError(
            f"mqar: vocab_size={vocab_size} gives {num_keys} keys and {num_values} values in "
            f"layout {layout!r}; {num_kv_pairs} distinct keys per example need a larger vocab_size"
        )
    if seq_len < kv_len + num_kv_pairs:
        raise OptionError(
            f"mqar: seq_len={seq_len} cannot hold {kv_len} kv tokens and {num_kv_pairs} queries "
            f"(layout {layout!r} needs seq_len >= {kv_len + num_kv_pairs})"
        )
    if min(num_train, num_val, num_test) < 1:
        raise OptionError("mqar: num_train, num_val and num_test must be >= 1")

    generator = torch.Generator().manual_seed(seed)
    shape = {
        "seq_len": seq_len,
        "num_kv_pairs": num_kv_pairs,
        "num_keys": num_keys,
        "num_values": num_values,
        "layout": layout,
        "generator": generator,
    }
    splits = disjoint_splits(
        lambda num: generate(num, **shape),  # type: ignore[arg-type]
        (num_train, num_val, num_test),
        "mqar",
    )
    _, y_val = splits[1]
    info: dict[str, Any] = {
        "layout": layout,
        "causal": causal,
        "num_train": num_train,
        "num_val": num_val,
        "num_test": num_test,
        "value_bag_accuracy": value_bag_accuracy(y_val, num_kv_pairs),
        "num_keys": num_keys,
        "num_values": num_values,
        "kv_section": kv_len,
        "queries_per_example": num_kv_pairs,
        "ids_used": 1 + num_keys + (num_keys * num_values if layout == "pair" else num_values),
    }
    return token_task_data(
        splits, num_values=num_values, vocab_size=vocab_size, causal=causal, info=info
    )


@mixbench.hookimpl
def register_tasks(register: Any) -> None:
    register(
        "mqar",
        make_mqar,
        description="multi-query associative recall (Zoology, Arora et al. 2023): recall the "
        "value of each queried key; separates content-based mixers from fixed ones; "
        "causal=true is Zoology's causal next-token form",
    )
