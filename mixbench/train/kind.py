"""The ``train`` kind of cell: registered with ``mixbench.runs.cell_kinds``.

Learning-rate tuning trials are train cells too (their config carries ``lr_tuning``): they
train and are recorded exactly as any other, so they need no kind of their own.
"""

from __future__ import annotations

from typing import Any

from mixbench.runs.cell_kinds import CellKind, register_cell_kind
from mixbench.train.options import KEYS


def train_cells(**given: Any) -> list[Any]:
    """The cells ``mixbench train`` would run first for these options, checked; trains
    nothing (a tuned plan's first stage: its trials). The kind's planner.

    ``given`` are sweep keys with command-line-shaped values (``mixer=["attention"]``,
    ``seed="0"``); missing ones take `TrainOptions`' defaults.
    """
    from mixbench.errors import UsageError
    from mixbench.sweep.grid_table import option_keys
    from mixbench.train.options import options_from_cli
    from mixbench.train.plan import plan_train

    unknown = set(given) - set(option_keys("train"))
    if unknown:
        raise UsageError(f"train: unknown option(s) {', '.join(sorted(unknown))}")
    if not given.get("mixer"):
        raise UsageError("--mixer: give at least one name")
    return plan_train(options_from_cli(given)).cells


register_cell_kind(
    CellKind(
        name="train",
        options="mixbench.train.options:TrainOptions",
        planner="mixbench.train.kind:train_cells",
        runner="mixbench.train.run:run_train_job",
        keys=KEYS,
    )
)
