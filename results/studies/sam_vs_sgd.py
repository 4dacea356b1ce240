"""SAM against SGD with both learning rates tuned (README, "Training protocol"): the
attention and pooling mixers on digits, each optimizer tuned over the same grid on seed 0,
then 3 seeds at the chosen rate.

The earlier comparison ran both at SGD's one default rate, which ranks the default, not
the optimizer (attention barely trains with SGD at 0.05). Sized for about 10 minutes on a
2-core CPU; the rendered table states the budget.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _tuned import render_tuned, run_tuned

TITLE = "SAM against SGD on digits, both learning rates tuned, 3 seeds"
NAME = "sam_vs_sgd"


def arguments(steps: int = 300, lr_grid: str = "3e-3:0.3:5") -> list[str]:
    return [
        "train", *("--mixer", "attention,pooling", "--optimizer", "sgd,sam", "--task", "digits"),
        *("--seed", "0,1,2", "--steps", str(steps), "--tune-lr", "--lr-grid", lr_grid),
        *("--threads", "1", "--executor", "subprocess", "--max-parallel", "2", "--quiet"),
    ]  # fmt: skip


def run(root: Path) -> None:
    run_tuned(root, NAME, arguments())


def render(root: Path) -> dict[str, str]:
    return render_tuned(root, NAME)
