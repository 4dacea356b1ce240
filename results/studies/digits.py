"""Digits with the training defaults: mixers barely differ (README, "Training")."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _examples import run_example
from _tables import number, percent, text, train_table

TITLE = "the token MLP and the identity mixer on digits with the default settings, one thread"
ARGS = ["train", "-m", "mlp,identity", "-t", "digits", "--threads", "1"]


def run(root: Path) -> None:
    run_example(root, "digits", ARGS)


def render(root: Path) -> dict[str, str]:
    columns = [
        ("mixer", text("mixer")),
        ("optimizer", text("optimizer")),
        ("final val acc", percent("final_val_acc")),
        ("best val acc", percent("best_val_acc")),
        ("full train loss", number("train_loss")),
        ("median step", number("median_step_s", 1000, " ms")),
        ("train time", number("train_time_s", 1, " s")),
    ]
    return {"table.md": train_table(root / "digits", columns)}
