"""Which mixer for which task: the six built-in mixers on digits, mqar, selective_copy and
induction, AdamW with its learning rate tuned per (mixer, task), 3 seeds (README,
"Training protocol").

Few steps and a 3-rate grid around AdamW's registered rate, so the numbers rank mixers
under a small budget, not at convergence; the rendered table states the budget. Even so it
is 144 cells: the committed run's cells add up to about 1 h 45 min of one core each, so
about an hour on a 2-core CPU with two cells at once (the longest study here).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _tuned import render_tuned, run_tuned

TITLE = "the six mixers on four tasks, AdamW tuned per cell, 3 seeds: test accuracy and cost"
NAME = "mixers_by_task"
MIXERS = "attention,lsh,window,pooling,mlp,identity"
TASKS = "digits,mqar,selective_copy,induction"


def arguments(tasks: str = TASKS, steps: int = 150, lr_grid: str = "1e-3:1e-2:3") -> list[str]:
    return [
        "train", *("--mixer", MIXERS, "--optimizer", "adamw", "--task", tasks),
        *("--seed", "0,1,2", "--steps", str(steps), "--tune-lr", "--lr-grid", lr_grid),
        *("--threads", "1", "--executor", "subprocess", "--max-parallel", "2", "--quiet"),
    ]  # fmt: skip


def run(root: Path) -> None:
    run_tuned(root, NAME, arguments())


def render(root: Path) -> dict[str, str]:
    return render_tuned(root, NAME)
