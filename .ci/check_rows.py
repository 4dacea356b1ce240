"""Fail unless every result row under the given run directories has status ``ok``.

Used by ``.ci/example-plugin.sh``: a plugin whose cells all errored still writes a
non-empty ``results.jsonl``, so "a file was written" proves nothing. Exit 1 (listing each
bad row) when a directory has no rows or any row is not ``ok``.

    python .ci/check_rows.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def problems(run_dir: Path) -> list[str]:
    files = sorted(run_dir.rglob("results.jsonl"))
    rows = [
        json.loads(line)
        for file in files
        for line in file.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    if not rows:
        return [f"{run_dir}: no result rows"]
    return [
        f"{run_dir}: {row.get('kind')} cell {row.get('config', {}).get('mixer')} is "
        f"{row.get('status')}: {row.get('reason')}"
        for row in rows
        if row.get("status") != "ok"
    ]


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    found = [problem for path in paths for problem in problems(Path(path))]
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print(f"every row ok in {', '.join(paths)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
