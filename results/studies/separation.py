"""Tasks that separate mixers: attention against pooling on selective copying and induction
heads with every training setting at its default (README, "Tasks that separate mixers").

The claim checked is the training-protocol issue's: at the defaults, attention learns both
tasks (test accuracy 0.9 or more) and pooling, which can only average a fixed neighbourhood,
cannot (0.5 or less). One seed per cell; the table reports test accuracy, which no choice
in the run looked at.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _examples import run_example
from _tables import number, percent, text, train_table

TITLE = "attention and pooling on selective_copy and induction, default training settings"
ARGS = [
    "train",
    *("--mixer", "attention,pooling", "--optimizer", "adamw"),
    *("--task", "selective_copy,induction", "--seed", "0"),
    *("--threads", "1", "--executor", "subprocess", "--max-parallel", "2"),
]  # threads and executor change how fast the cells run, not what they compute


def run(root: Path) -> None:
    run_example(root, "separation", ARGS)


def render(root: Path) -> dict[str, str]:
    columns = [
        ("mixer", text("mixer")),
        ("task", text("task")),
        ("test acc", percent("test_acc")),
        ("val acc", percent("final_val_acc")),
        ("chance", percent("chance")),
        ("full train loss", number("train_loss")),
        ("steps", number("steps")),
        ("median step", number("median_step_s", 1000, " ms")),
    ]
    return {"separation.md": train_table(root / "separation", columns)}
