"""Shared by the ``bench`` and ``train`` example studies: run one command, keep its rows."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

KEPT = ("manifest.json", "results.jsonl", "curves")


def run_example(root: Path, name: str, args: list[str]) -> None:
    """Run ``mixbench ARGS`` and keep its manifest, rows and curves in ``root/name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("regenerate", root / "regenerate.py")
    assert spec is not None and spec.loader is not None
    regenerate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regenerate)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = regenerate.mixbench(*args, out=Path(tmp))
        target = root / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for item in KEPT:
            source = run_dir / item
            if source.is_dir():
                shutil.copytree(source, target / item)
            elif source.exists():
                shutil.copy2(source, target / item)


def render_example(root: Path, name: str, kind: str) -> dict[str, str]:
    """Leaderboards (and figures, written beside them) from the committed rows."""
    from mixbench.report.artifacts import write_report

    target = root / name
    written = write_report([target], target, kind)
    return {p.name: p.read_text(encoding="utf-8") for p in written if p.suffix == ".md"}
