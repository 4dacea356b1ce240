"""Textbook (math-kernel) attention against LSH in memory (README, "How mixers scale").

The CPU's fused attention kernel never builds the N x N scores; ``backend=math`` does, which
is how most implementations run attention, and where LSH's linear memory pays off.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _examples import run_example
from _tables import bench_table

TITLE = "attention with backend=math against lsh: peak memory at N = 512 to 4096"
ARGS = [
    "bench",
    *("--mixer", "attention", "--mixer", "lsh", "--mixer-option", "attention.backend=math"),
    *("--tokens", "512,1024,2048,4096", "--dim", "64"),
    *("--processes", "1"),  # a memory study: peak bytes do not vary between processes
]


def run(root: Path) -> None:
    run_example(root, "attention_math", ARGS)


def _memory_ratios(run_dir: Path) -> str:
    """Attention's peak memory over LSH's at each N, from the rows."""
    peaks: dict[tuple[str, int], float] = {}
    for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["status"] == "ok":
            key = (row["config"]["mixer"], int(row["config"]["tokens"]))
            peaks[key] = float(row["metrics"]["peak_mem_bytes"])
    tokens = sorted({n for _, n in peaks})
    ratios = [
        f"N={n}: {peaks[('attention', n)] / peaks[('lsh', n)]:.1f}x"
        for n in tokens
        if ("attention", n) in peaks and ("lsh", n) in peaks
    ]
    return "Attention's peak memory over LSH's: " + ", ".join(ratios) + ".\n"


def render(root: Path) -> dict[str, str]:
    run_dir = root / "attention_math"
    return {"memory.md": bench_table(run_dir, "memory") + "\n" + _memory_ratios(run_dir)}
