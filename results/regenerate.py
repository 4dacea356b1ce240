"""Regenerate the committed example results: `nox -s results`.

Runs the documented bench and train commands through the CLI, as a user would, then copies
each run's ``manifest.json`` and ``results.jsonl`` here and renders its leaderboards and
plots with ``mixbench.commands.report.write_report``. Everything under ``results/bench`` and
``results/train`` is produced by this script on the machine named in the manifests; nothing
is edited by hand.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCH = [
    "bench",
    *("--mixer", "attention", "--mixer", "lsh", "--mixer", "window"),
    *("--mixer", "pooling", "--mixer", "mlp", "--mixer", "identity"),
    *("--tokens", "256,1024,4096", "--dim", "64", "--batch-size", "8", "--threads", "1"),
]
TRAIN = [
    "train",
    *("--mixer", "attention,lsh,window,pooling,mlp,identity"),
    *("--optimizer", "sgd,adamw,sam", "--task", "digits", "--seed", "0"),
    *("--steps", "300", "--threads", "1"),
]


def run(args: list[str], out: Path) -> Path:
    """Run one mixbench command into ``out`` and return the run directory it made."""
    before = set(out.glob("*"))
    subprocess.run([sys.executable, "-m", "mixbench", *args, "--out", str(out)], check=True)
    (run_dir,) = set(out.glob("*")) - before
    return run_dir


def main() -> None:
    from mixbench.commands.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        for name, args in (("bench", BENCH), ("train", TRAIN)):
            run_dir = run(args, Path(tmp))
            target = HERE / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for item in ("manifest.json", "results.jsonl", "curves"):
                source = run_dir / item
                if source.is_dir():
                    shutil.copytree(source, target / item)
                elif source.exists():
                    shutil.copy2(source, target / item)
            for path in write_report([target], target, name):
                print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
