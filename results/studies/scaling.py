"""How attention, LSH and pooling scale from N = 512 to 4096 (README, "How mixers scale")."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _examples import run_example
from _tables import bench_table

TITLE = "attention, lsh and pooling at N = 512 to 4096, width 64"
ARGS = [
    "bench",
    *("--mixer", "attention", "--mixer", "lsh", "--mixer", "pooling"),
    *("--tokens", "512,1024,2048,4096", "--dim", "64"),
]


def run(root: Path) -> None:
    run_example(root, "scaling", ARGS)


def render(root: Path) -> dict[str, str]:
    return {
        "latency.md": bench_table(root / "scaling", "latency"),
        "memory.md": bench_table(root / "scaling", "memory"),
    }
