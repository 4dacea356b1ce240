"""Does ``mixbench compare`` cry wolf? Error rates of the CI gate at the recommended R
(README, "Gating CI on performance").

Three checks, each made of separately run ``mixbench bench`` commands, as CI would run them:

* A/A: the same command run ``AA_RUNS`` times; every ordered pair (base, new) compared, so
  each unordered pair is judged in both orders. Any exit 1 is a false regression.
* Detection of a known slowdown, the runs alternating so that drift in the machine's load
  favours neither side, every (base, new) pair compared; exit 1 is a detection:
  attention at N = 2048 with 2 threads (base) against 1 thread (new), and, one thread
  each, batch 2 (base) against batch 3 (new): 50 % more work per step, a slowdown that a
  busy machine cannot take away (a second thread helps only when a core is free).
* R = 1: two one-process runs of the A/A command, compared: cells must be reported as not
  judgeable, never as regressed.

The timing budget per process is cut (``--min-time 0.1``, two warm-up iterations; batch 2
for the N = 2048 cells) so the whole study fits in about ten minutes on two cores; the
number of processes is what the gate rests on.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

TITLE = "false-regression and detection rates of mixbench compare at --processes 5"
RECOMMENDED_R = 5
AA_RUNS = 4
DETECT_RUNS = 3  # per side
KEPT = ("manifest.json", "results.jsonl")
BUDGET = ["--min-time", "0.1", "--max-time", "0.3", "--warmup-iters", "2", "--warmup-time", "0.05"]
AA = [
    "bench",
    *("--mixer", "attention", "--mixer", "pooling", "--mixer", "mlp"),
    *("--tokens", "256,1024", "--threads", "1", *BUDGET, "--quiet"),
]
DETECT = ["bench", "--mixer", "attention", "--tokens", "2048", *BUDGET, "--quiet"]
GROUPS = {  # group: its runs' extra options ("one_thread" is the base of the batch check)
    "two_threads": ["--batch-size", "2", "--threads", "2"],
    "one_thread": ["--batch-size", "2", "--threads", "1"],
    "batch3": ["--batch-size", "3", "--threads", "1"],
}


def _regenerate(root: Path):  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("regenerate", root / "regenerate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(root: Path) -> None:
    regenerate = _regenerate(root)
    target = root / "gating"
    shutil.rmtree(target, ignore_errors=True)
    processes = ["--processes", str(RECOMMENDED_R)]
    plan: list[tuple[str, list[str]]] = []
    for index in range(max(AA_RUNS, DETECT_RUNS)):
        if index < AA_RUNS:
            plan.append(("aa", [*AA, *processes]))
        if index < DETECT_RUNS:
            plan += [(group, [*DETECT, *processes, *extra]) for group, extra in GROUPS.items()]
    plan += [("r1", [*AA, "--processes", "1"])] * 2
    with tempfile.TemporaryDirectory() as tmp:
        for group, args in plan:
            made = regenerate.mixbench(*args, out=Path(tmp) / group)
            kept = target / group / made.name
            kept.mkdir(parents=True)
            for name in KEPT:
                shutil.copy2(made / name, kept / name)


def _command(run_dir: Path) -> str:
    """The command line as the user typed it (the temporary --out left out)."""
    words = json.loads((run_dir / "manifest.json").read_text())["command"]
    if "--out" in words:
        at = words.index("--out")
        words = words[:at] + words[at + 2 :]
    return " ".join(words)


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f}" if low == high else f"{low:.1f} to {high:.1f}"


def _speed(run_dir: Path) -> float:
    """The geometric mean of a run's cell medians (ms): one number for how fast it ran."""
    from mixbench.report.results import load_results

    medians = load_results(run_dir)["latency_ms_median"].dropna()
    return float(math.exp(sum(math.log(m) for m in medians) / len(medians)))


def _judge(base: Path, new: Path):  # type: ignore[no-untyped-def]
    from mixbench.report.compare import compare_results
    from mixbench.report.results import load_results

    return compare_results(load_results(base), load_results(new))


def render(root: Path) -> dict[str, str]:
    from mixbench.report.compare import NOT_JUDGEABLE

    target = root / "gating"
    runs = {g: sorted((target / g).iterdir()) for g in ("aa", *GROUPS, "r1")}
    checks = [
        ("A/A: same command twice", list(itertools.permutations(runs["aa"], 2))),
        (
            "attention N=2048: 2 threads (base) vs 1 thread (new)",
            list(itertools.product(runs["two_threads"], runs["one_thread"])),
        ),
        (
            "attention N=2048: batch 2 (base) vs batch 3 (new), +50 % work",
            list(itertools.product(runs["one_thread"], runs["batch3"])),
        ),
        (
            "A/A at --processes 1",
            list(itertools.permutations(runs["r1"], 2)),
        ),
    ]
    lines = [
        "| check | runs | compares | exit 1 | cells regressed / judged | not judgeable "
        "| median new/base | median noise floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, pairs in checks:
        failures, regressed, judged, unjudged = 0, 0, 0, 0
        ratios, noise = [], []
        for base, new in pairs:
            comparison = _judge(base, new)
            failures += comparison.gate() == 1
            for pair in comparison.pairs:
                ratios.append(pair.ratio)
                if pair.noise is not None:
                    noise.append(pair.noise)
                if pair.verdict == NOT_JUDGEABLE:
                    unjudged += 1
                else:
                    judged += 1
                    regressed += pair.regressed
        count = len({p for pair in pairs for p in pair})
        noise_text = f"{statistics.median(noise):.1%}" if noise else "n/a"
        lines.append(
            f"| {label} | {count} | {len(pairs)} | {failures} ({failures / len(pairs):.0%}) "
            f"| {regressed} / {judged} | {unjudged} | {statistics.median(ratios):.3f} "
            f"| {noise_text} |"
        )
    drift = [_speed(run) for run in runs["aa"]]
    lines += [
        "",
        "Drift of the machine over the A/A runs, in run order (geometric mean of the cell "
        "medians, relative to the first run): "
        + ", ".join(f"{d / drift[0]:.2f}" for d in drift)
        + ".",
    ]
    commands = sorted({_command(p) for group in runs.values() for p in group})
    lines += ["", "Commands (each run separately; compared with `mixbench compare BASE NEW`):", ""]
    lines += [f"    {command}" for command in commands]
    manifest = json.loads((runs["aa"][0] / "manifest.json").read_text())
    env = manifest.get("environment") or {}
    busy = [
        json.loads((p / "manifest.json").read_text())["environment"].get("busy_cores_at_start")
        for group in runs.values()
        for p in group
    ]
    busy_known = [b for b in busy if b is not None]
    lines += [
        "",
        f"Measured {manifest.get('started_at', '?')[:16].replace('T', ' ')} UTC on "
        f"{env.get('cpu', '?')}, {env.get('cores', '?')} cores, torch {env.get('torch', '?')}"
        + (
            f"; other processes kept {_span(busy_known)} cores busy at the runs' starts."
            if busy_known
            else "."
        ),
    ]
    return {"gating.md": "\n".join(lines) + "\n"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through results/regenerate.py gating")
