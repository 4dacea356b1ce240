"""Multi-query associative recall separates mixers that mix by content (README, "MQAR")."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _examples import run_example
from _tables import count, number, percent, text, train_table

TITLE = "attention, pooling and identity on MQAR, 300 steps: steps and time to 90 % accuracy"
ARGS = [
    "train",
    *("-m", "attention,pooling,identity", "-t", "mqar", "--target-acc", "0.9"),
    *("--steps", "300", "--threads", "1"),
]


def run(root: Path) -> None:
    run_example(root, "mqar", ARGS)


def render(root: Path) -> dict[str, str]:
    columns = [
        ("mixer", text("mixer")),
        ("query acc (val)", percent("final_val_acc")),
        ("best", percent("best_val_acc")),
        ("chance", percent("chance")),
        ("full train loss", number("train_loss")),
        ("steps to 90 %", count("steps_to_target")),
        ("time to 90 %", number("time_to_target_s", 1, " s")),
        ("median step", number("median_step_s", 1000, " ms")),
    ]
    return {"table.md": train_table(root / "mqar", columns)}
