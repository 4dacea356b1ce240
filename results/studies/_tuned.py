"""Shared by the tuned-training studies: run one ``mixbench train --tune-lr`` command, keep
its manifest and rows (no curves: small), and render the table with its budget stated."""

from __future__ import annotations

import shutil
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _examples import run_example


def run_tuned(root: Path, name: str, args: list[str]) -> None:
    """Run ``mixbench ARGS`` and keep its manifest and rows in ``root/name`` (no curves)."""
    run_example(root, name, args)
    shutil.rmtree(root / name / "curves", ignore_errors=True)


def budget(run_dir: Path) -> str:
    """What the run was allowed, from its manifest: the tuning protocol and the wall time."""
    from mixbench.runs.store import read_manifest

    manifest = read_manifest(run_dir)
    options = manifest["train_options"]
    config = manifest.get("config") or {}
    env = manifest.get("environment") or {}
    sessions = manifest.get("sessions") or [{}]
    wall = (
        datetime.fromisoformat(manifest["ended_at"])
        - datetime.fromisoformat(manifest["started_at"])
    ).total_seconds()
    grid = options.get("lr_grid")
    grid_text = ", ".join(f"{v:g}" for v in grid) if grid else "each optimizer's default ÷30 … ×30"
    seeds = ",".join(str(s) for s in options["seeds"])
    tune_seeds = ",".join(str(s) for s in options.get("tune_seeds") or options["seeds"][:1])
    return (
        f"Budget: {config.get('steps')} steps per cell, preset {options['preset']}, batch "
        f"{options['batch_size']}; learning rate tuned on seed {tune_seeds} over "
        f"{{{grid_text}}} by final validation accuracy, then seeds {seeds} at the chosen rate. "
        f"{config.get('threads')} thread(s) per cell, {sessions[-1].get('max_parallel')} cells at "
        f"once ({sessions[-1].get('executor')} executor) on {env.get('cpu') or '?'} "
        f"({env.get('cores') or '?'} cores); wall time {wall / 60:.1f} min"
        + (
            f" from first start to end, over {len(sessions)} sessions (paused and resumed "
            "with --resume while other measurements needed a quiet machine)."
            if len(sessions) > 1
            else "."
        )
    )


def render_tuned(root: Path, name: str) -> dict[str, str]:
    """The study's table from its committed rows (nothing before the study has been run)."""
    from mixbench.runs.store import read_rows
    from mixbench.train.summary import markdown_by_task

    run_dir = root / name
    if not (run_dir / "results.jsonl").exists():
        return {}
    rows, _ = read_rows(run_dir / "results.jsonl")
    return {"tuned.md": budget(run_dir) + "\n\n" + markdown_by_task(rows)}
