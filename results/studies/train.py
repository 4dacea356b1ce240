"""The training example: every mixer with SGD, AdamW and SAM on digits, 300 steps (README,
"The committed examples")."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _examples import render_example, run_example

TITLE = "every built-in mixer with SGD, AdamW and SAM on digits, 300 steps, one seed"
ARGS = [
    "train",
    *("--mixer", "attention,lsh,window,pooling,mlp,identity"),
    *("--optimizer", "sgd,adamw,sam", "--task", "digits", "--seed", "0"),
    *("--steps", "300", "--threads", "1"),
]


def run(root: Path) -> None:
    run_example(root, "train", ARGS)


def render(root: Path) -> dict[str, str]:
    return render_example(root, "train", "train")
