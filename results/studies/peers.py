"""mixbench's built-in mixers against timm and reformer-pytorch (README, "Against the
implementations you would otherwise use"): ``nox -s peers`` measures, this renders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

TITLE = "mixbench time / peer time per built-in mixer, inference and training, one process"


def run(root: Path) -> None:
    """``nox -s peers`` in its own environment (timm, reformer-pytorch, their torch)."""
    import importlib.util

    if importlib.util.find_spec("nox") is None:
        raise SystemExit("study peers runs `nox -s peers`: install nox (pip install nox)")
    out = root / "peers"
    command = [sys.executable, "-m", "nox", "-s", "peers", "--", "--out", str(out)]
    subprocess.run(command, check=True, cwd=root.parent)


def _ratio(timing: dict[str, float]) -> str:
    """The median pair ratio, with its confidence interval where the run recorded one."""
    if "ratio_low" not in timing:
        return f"{timing['ratio']:.2f}"
    return f"{timing['ratio']:.2f} [{timing['ratio_low']:.2f}, {timing['ratio_high']:.2f}]"


def _coverage(rows: list[dict[str, Any]]) -> float | None:
    """The intervals' coverage (one pair count per run), or None for rows without them."""
    coverages = {
        row[mode].get("ratio_coverage") for row in rows for mode in ("inference", "training")
    }
    return coverages.pop() if len(coverages) == 1 else None


def _floor(row: dict[str, Any], peak: float | None) -> str:
    """The arithmetic floor over the peer's time, inference / training ("-" if unknown)."""
    flops = row.get("model_flops")
    if peak is None or flops is None:
        return "-"
    ratios = [flops[mode] / (peak * 1e9) / row[mode]["peer"] for mode in ("inference", "training")]
    return " / ".join(f"{ratio:.2f}" for ratio in ratios)


def render(root: Path) -> dict[str, str]:
    data = json.loads((root / "peers" / "peers.json").read_text(encoding="utf-8"))
    env = data["environment"]
    peak = env.get("matmul_gflops")
    lines = [
        "| case | shape | peer (what its timed step runs) | inference | training "
        "| floor: inference / training | same function |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for row in data["rows"]:
        difference = row["max_abs_difference"]
        check = (
            f"{row['equality']}: max abs diff {difference:.1e}"
            if difference is not None
            else "not compared"
        )
        lines.append(
            f"| {row['case']} | {row['shape']} | {row.get('peer', '')} "
            f"| {_ratio(row['inference'])} "
            f"| {_ratio(row['training'])} | {_floor(row, peak)} | {check} |"
        )
    lines += [
        "",
        "mixbench time / peer time, median over back-to-back pairs"
        + (
            f" [its {coverage:.0%} confidence interval: an interval holding 1 is parity]"
            if (coverage := _coverage(data["rows"]))
            else ""
        )
        + "; measured "
        f"{env['date']} on {env['cpu']}, {env['cores']} cores, {env['threads']} torch threads, "
        f"torch {env['torch']}, "
        f"timm {env['timm']}, reformer-pytorch {env['reformer_pytorch']}; load average "
        f"{env['load_average_start']:.1f} at the start"
        + (f"; {env['allocator']}." if "allocator" in env else "."),
    ]
    if peak is not None:
        lines += [
            "",
            "Floor: mixbench's model FLOPs for the step at this machine's best measured matmul "
            f"rate ({peak:.0f} GFLOP/s, 1024-cube matmul, same threads), over the peer's time: "
            "the least ratio that work could reach on this machine.",
        ]
    return {"peers.md": "\n".join(lines) + "\n"}
