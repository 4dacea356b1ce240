"""The bench example: every built-in mixer at N = 256, 1024, 4096 (README, "The committed
examples")."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _examples import render_example, run_example

TITLE = "every built-in mixer timed at N = 256, 1024 and 4096, width 64, batch 8, one thread"
ARGS = [
    "bench",
    *("--mixer", "attention", "--mixer", "lsh", "--mixer", "window"),
    *("--mixer", "pooling", "--mixer", "mlp", "--mixer", "identity"),
    *("--tokens", "256,1024,4096", "--dim", "64", "--batch-size", "8", "--threads", "1"),
]


def run(root: Path) -> None:
    run_example(root, "bench", ARGS)


def render(root: Path) -> dict[str, str]:
    return render_example(root, "bench", "bench")
