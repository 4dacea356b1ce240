"""The quick run: ``mixbench bench --quick`` (README, "The quick run")."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _examples import run_example
from _tables import bench_table

TITLE = "mixbench bench --quick: every registered mixer at N = 64 and 256"
ARGS = ["bench", "--quick"]


def run(root: Path) -> None:
    run_example(root, "quick", ARGS)


def render(root: Path) -> dict[str, str]:
    return {
        "latency.md": bench_table(root / "quick", "latency"),
        "memory.md": bench_table(root / "quick", "memory"),
    }
