"""The causal sequence tasks, selective_copy and induction: the construction each paper
describes, determinism from the seed, sized and disjoint splits, and option errors."""

from __future__ import annotations

import pytest
import torch

from mixbench.core.api import create_task
from mixbench.core.plugin_loader import get_registry
from mixbench.errors import OptionError
from mixbench.tasks import IGNORE_INDEX, TaskData
from mixbench_builtins.tasks import selective_copy

SMALL = {"num_train": 300, "num_val": 40, "num_test": 50}


def _rows(task: TaskData) -> list[set[tuple[int, ...]]]:
    assert task.x_test is not None
    return [{tuple(r.tolist()) for r in x} for x in (task.x_train, task.x_val, task.x_test)]


@pytest.mark.parametrize("name", ["selective_copy", "induction"])
def test_causal_tasks_are_registered_sized_disjoint_and_seeded(name: str) -> None:
    assert name in get_registry().names("task")
    task = create_task(name, seed=0, options=SMALL)
    assert task.causal and task.per_token and task.input == "tokens"
    assert task.x_test is not None
    assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (300, 40, 50)
    assert sum(map(len, _rows(task))) == 390, "no input repeats, within or across splits"
    again = create_task(name, seed=0, options=SMALL)
    assert all(torch.equal(getattr(task, t), getattr(again, t)) for t in ("x_train", "x_test"))
    assert not torch.equal(task.x_train, create_task(name, seed=1, options=SMALL).x_train)
    assert int(task.x_train.max()) < (task.vocab_size or 0)
    assert task.chance == pytest.approx(1 / task.num_classes)


def test_selective_copy_asks_for_the_data_tokens_in_order_at_the_markers() -> None:
    task = create_task(
        "selective_copy", seed=0,
        options={"context_len": 10, "num_tokens": 3, "num_values": 5, **SMALL},
    )  # fmt: skip
    marker = 5 + 1
    assert task.x_train.shape == task.y_train.shape == (300, 13)
    assert task.num_classes == 5 and task.vocab_size == 7
    for tokens, targets in zip(task.x_train, task.y_train, strict=True):
        context = tokens[:10]
        data = context[context != selective_copy.NOISE]
        assert len(data) == 3 and (data >= 1).all() and (data <= 5).all()
        assert (tokens[10:] == marker).all()
        assert (targets[:10] == IGNORE_INDEX).all()
        assert targets[10:].tolist() == (data - 1).tolist()


def test_induction_asks_for_the_token_after_the_first_trigger() -> None:
    task = create_task("induction", seed=0, options={"seq_len": 9, "num_values": 4, **SMALL})
    trigger = 4
    assert task.x_train.shape == (300, 9) and task.vocab_size == 5 and task.num_classes == 4
    firsts = set()
    for tokens, targets in zip(task.x_train, task.y_train, strict=True):
        where = torch.nonzero(tokens == trigger).flatten().tolist()
        assert len(where) == 2 and where[1] == 8, "the trigger occurs twice, last at the end"
        assert where[0] <= 6, "room for the answer before the final trigger"
        firsts.add(where[0])
        assert (targets[:-1] == IGNORE_INDEX).all()
        assert int(targets[-1]) == int(tokens[where[0] + 1])
    assert firsts == set(range(7)), "the first trigger lands anywhere it fits"


def test_options_are_checked() -> None:
    with pytest.raises(OptionError, match="context_len"):
        create_task("selective_copy", seed=0, options={"context_len": 2, "num_tokens": 3})
    with pytest.raises(OptionError, match="num_values"):
        create_task("selective_copy", seed=0, options={"num_values": 1})
    with pytest.raises(OptionError, match="seq_len"):
        create_task("induction", seed=0, options={"seq_len": 2})
    with pytest.raises(OptionError, match="num_test"):
        create_task("induction", seed=0, options={"num_test": 0})


def test_too_few_distinct_sequences_is_an_option_error_not_a_repeat() -> None:
    # seq_len 3 leaves one sequence per answer: [T, a, T], so only 2 distinct inputs exist.
    with pytest.raises(OptionError, match="too few distinct sequences"):
        create_task("induction", seed=0, options={"seq_len": 3, "num_values": 2, **SMALL})
