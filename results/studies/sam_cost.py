"""What a SAM step costs against an SGD step (README, "What SAM costs")."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _examples import run_example
from _tables import count, number, text, train_table

TITLE = "attention on digits with sgd and sam, 100 steps: gradient evaluations and step time"
ARGS = [
    "train",
    *("-m", "attention", "-t", "digits", "-o", "sgd,sam", "--steps", "100", "--threads", "1"),
]


def run(root: Path) -> None:
    run_example(root, "sam_cost", ARGS)


def render(root: Path) -> dict[str, str]:
    columns = [
        ("optimizer", text("optimizer")),
        ("peak lr", number("lr_peak")),
        ("grad evals", count("grad_evals")),
        ("median step", number("median_step_s", 1000, " ms")),
        ("step time IQR", number("step_time_iqr_s", 1000, " ms")),
    ]
    return {"table.md": train_table(root / "sam_cost", columns)}
