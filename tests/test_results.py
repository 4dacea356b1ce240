"""Reading run directories: flattening, run facts, forgiving reads, the metric registry.

The helpers at the top write synthetic run directories exactly as the runners do (rows
through ``mixbench.runs.store.append_row``, a manifest with ``environment``); the other report
tests import them from here.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

import mixbench
from mixbench.errors import UsageError
from mixbench.report.results import ResultsWarning, load_results, read_results, resolve_metric
from mixbench.runs.cells import cell_key
from mixbench.runs.store import append_row, write_json_atomic

ENVIRONMENT = {
    "device_name": "Test CPU 9000",
    "cpu": "Test CPU 9000",
    "cores": 2,
    "torch": "2.13.0",
    "python": "3.11.9",
    "mixbench": "0.1.0",
    "machine": "testhost",
    "git": {"id": "0123456789abcdef0123", "dirty": False},
}


def write_manifest(run: Path, **environment: Any) -> None:
    run.mkdir(parents=True, exist_ok=True)
    env = {**ENVIRONMENT, **environment}
    write_json_atomic(run / "manifest.json", {"run_id": run.name, "environment": env})


def bench_config(mixer: str, tokens: int, **overrides: Any) -> dict[str, Any]:
    config = {
        "level": "block", "mixer": mixer, "mixer_options": {}, "optimizer": "sgd",
        "optimizer_options": {}, "mode": "infer", "tokens": tokens, "grid": [tokens],
        "dim": 64, "batch_size": 8, "device": "cpu", "dtype": "float32", "threads": 2,
        "compile": False, "preset": None, "seed": 0,
    }  # fmt: skip
    config.update(overrides)
    return config


def bench_row(
    config: dict[str, Any],
    samples: Sequence[float] | None = None,
    *,
    status: str = "ok",
    run_id: str = "run",
    **metrics: Any,
) -> dict[str, Any]:
    """A bench row whose metrics follow from ``samples`` (ms per iteration)."""
    row: dict[str, Any] = {
        "schema": 1, "kind": "bench", "key": cell_key("bench", config), "status": status,
        "reason": None if status == "ok" else f"{status} in test", "config": config,
        "metrics": {}, "samples_ms": [], "measurement": {"number": 4},
        "runtime": {"complexity": "O(N)"}, "started_at": "2026-01-01T00:00:00+00:00",
        "duration_s": 1.0, "run_id": run_id,
    }  # fmt: skip
    if status == "ok" and samples is not None:
        ordered = sorted(samples)
        n = len(ordered)
        median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        iqr = ordered[(3 * n) // 4] - ordered[n // 4]
        batch, tokens = config["batch_size"], config["tokens"]
        width = tokens if config["mixer"] == "attention" else 64  # the N x N score matrix
        row["samples_ms"] = list(samples)
        row["metrics"] = {
            "latency_ms_median": median, "latency_ms_iqr": iqr,
            "latency_ms_ci95": [ordered[n // 4], ordered[(3 * n) // 4]],
            "noisy": iqr / median > 0.1, "samples_per_s": batch / median * 1e3,
            "tokens_per_s": batch * tokens / median * 1e3,
            "peak_mem_bytes": 4 * batch * tokens * width,
            "params": 1000, "flops": 2.0e6 * tokens, "memory_method": "profiler",
        }  # fmt: skip
    row["metrics"].update(metrics)
    return row


def latency_model(mixer: str, tokens: int) -> float:
    """Synthetic latencies: attention quadratic, everything else linear in N."""
    if mixer == "attention":
        return 40.0 * (tokens / 1024) ** 2
    return {"pooling": 5.0, "window": 8.0}.get(mixer, 6.0) * tokens / 1024


def write_bench_run(
    run: Path,
    mixers: Iterable[str] = ("attention", "pooling"),
    tokens: Iterable[int] = (256, 1024, 4096),
    *,
    slowdown: float = 1.0,
    jitter: float = 0.02,
    samples: int = 25,
    seed: int = 0,
    environment: dict[str, Any] | None = None,
    processes: int = 1,
    **overrides: Any,
) -> Path:
    """A bench run directory with one row per (mixer, tokens), each from ``processes``
    processes (``mixbench.runs.repeats.combine_processes``) when more than one."""
    from mixbench.runs.repeats import combine_processes

    rng = random.Random(seed)
    write_manifest(run, **(environment or {}))
    for mixer in mixers:
        for n in tokens:
            config = bench_config(mixer, n, **overrides)
            parts = []
            for _ in range(processes):
                base = latency_model(mixer, n) * slowdown
                values = [base * (1 + jitter * rng.random()) for _ in range(samples)]
                parts.append(bench_row(config, values, run_id=run.name))
            row = combine_processes(parts) if processes > 1 else parts[0]
            append_row(run / "results.jsonl", row)
    return run


def train_config(mixer: str, optimizer: str, seed: int, task: str = "recall") -> dict[str, Any]:
    return {
        "mixer": mixer, "mixer_options": {}, "optimizer": optimizer, "optimizer_options": {},
        "task": task, "task_options": {"vocab": 16}, "seed": seed, "steps": 100,
        "lr": 0.002 if optimizer == "adam" else 0.05, "batch_size": 32, "preset": "tiny",
        "device": "cpu", "dtype": "float32",
    }  # fmt: skip


def write_train_run(
    run: Path,
    accuracy: dict[tuple[str, str], Sequence[float]],
    *,
    step_s: dict[str, float] | None = None,
    task: str = "recall",
) -> Path:
    """A train run: ``accuracy[(mixer, optimizer)]`` lists the final accuracy per seed.

    Curves are stored as the training runner stores them: columns under ``eval``.
    """
    write_manifest(run)
    (run / "curves").mkdir(exist_ok=True)
    for (mixer, optimizer), per_seed in accuracy.items():
        seconds = (step_s or {}).get(mixer, 0.01)
        for seed, final in enumerate(per_seed):
            config = train_config(mixer, optimizer, seed, task)
            key = cell_key("train", config)
            steps = list(range(10, 101, 10))
            curve = {
                "step": steps,
                "time_s": [s * seconds for s in steps],
                "val_loss": [2.0 / (1 + s / 20) for s in steps],
                "val_acc": [final * (1 - 0.9 ** (s / 5)) / (1 - 0.9**20) for s in steps],
            }
            curves = {"key": key, "config": config, "train": {"step": steps}, "eval": curve}
            (run / "curves" / f"{key}.json").write_text(json.dumps(curves))
            append_row(run / "results.jsonl", {
                "schema": 1, "kind": "train", "key": key, "status": "ok", "reason": None,
                "config": config, "curves_file": f"curves/{key}.json", "run_id": run.name,
                "metrics": {"final_val_acc": final, "best_val_acc": final,
                            "final_val_loss": 0.5, "median_step_s": seconds, "batch_size": 32,
                            "steps": 100, "train_time_s": 100 * seconds, "params": 5000},
            })  # fmt: skip
    return run


# -- tests ---------------------------------------------------------------------------------


def test_rows_are_flattened_with_run_facts(tmp_path: Path) -> None:
    run = write_bench_run(tmp_path / "bench-a", mixers=["attention"], tokens=[256, 1024])
    frame = load_results(run)
    assert len(frame) == 2
    assert set(frame["mixer"]) == {"attention"}
    assert sorted(frame["tokens"]) == [256, 1024]
    assert {"latency_ms_median", "latency_ms_ci95_lo", "latency_ms_ci95_hi"} <= set(frame.columns)
    assert frame["grid"].tolist() == ["256", "1024"]  # lists become groupable text
    assert frame["measurement.number"].tolist() == [4, 4]
    assert frame["run_id"].tolist() == ["bench-a", "bench-a"]
    assert frame["device_name"].iloc[0] == "Test CPU 9000"
    assert frame["torch_version"].iloc[0] == "2.13.0"
    assert frame["commit"].iloc[0] == "0123456789ab"
    assert isinstance(frame["samples_ms"].iloc[0], list)
    assert "mixer" in frame.attrs["config_columns"]
    assert "latency_ms_median" in frame.attrs["metric_columns"]


def test_nested_options_and_colliding_metric_names(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_manifest(run)
    config = bench_config("window", 64, mixer_options={"window": 4, "shift": True}, grid=[8, 8])
    append_row(run / "results.jsonl", bench_row(config, [1.0, 1.1, 1.2], batch_size=99))
    frame = load_results(run)
    assert frame["mixer_options"].iloc[0] == "shift=True,window=4"
    assert frame["grid"].iloc[0] == "8x8"
    assert frame["batch_size"].iloc[0] == 8  # the config keeps its name ...
    assert frame["metrics.batch_size"].iloc[0] == 99  # ... the metric is prefixed


def test_torn_and_corrupt_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    run = write_bench_run(tmp_path / "run", mixers=["pooling"], tokens=[256, 1024])
    results = run / "results.jsonl"
    lines = results.read_text().splitlines()
    lines.insert(1, '{"kind": "bench", "key": "x", "status": "ok", "config": {"mix')  # corrupt
    results.write_text("\n".join(lines) + "\n" + '{"kind": "bench", "ke')  # torn tail
    with pytest.warns(ResultsWarning) as caught:
        frame = load_results(run)
    assert len(frame) == 2  # both good rows survive
    messages = [str(w.message) for w in caught]
    assert any(f"{results}:2: not JSON" in m for m in messages)
    assert any(f"{results}:4: torn last line" in m for m in messages)
    assert len(frame.attrs["problems"]) == 2

    found = read_results([run])
    assert [(p.path, p.line) for p in found.problems] == [(results, 2), (results, 4)]


def test_kind_filter_duplicates_and_bad_paths(tmp_path: Path) -> None:
    bench = write_bench_run(tmp_path / "runs" / "bench", mixers=["pooling"], tokens=[256])
    write_train_run(tmp_path / "runs" / "train", {("attention", "adam"): [0.9]})
    assert len(load_results(tmp_path / "runs")) == 2  # searched recursively
    assert set(load_results(tmp_path / "runs", kind="train")["kind"]) == {"train"}
    assert len(load_results([bench, bench, bench / "results.jsonl"])) == 1  # counted once
    with pytest.raises(UsageError, match="no such file"):
        load_results(tmp_path / "missing")
    with pytest.raises(UsageError, match="bench or train"):
        load_results(bench, kind="inference")


def test_public_api_is_lazy_attribute(tmp_path: Path) -> None:
    run = write_bench_run(tmp_path / "run", mixers=["pooling"], tokens=[256])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean run warns about nothing
        assert len(mixbench.load_results([run])) == 1


def test_metric_registry_resolves_aliases_per_kind() -> None:
    assert resolve_metric("latency", "bench").name == "latency_ms_median"
    assert resolve_metric("latency", "train").name == "median_step_s"
    assert resolve_metric(None, "train").name == "final_val_acc"
    assert resolve_metric("memory", "bench").higher_is_better is False
    assert resolve_metric("throughput", "bench").higher_is_better is True
    assert resolve_metric("accuracy", "train").higher_is_better is True
    custom = resolve_metric("my_score", "bench", columns=["my_score"])
    assert (custom.known, custom.higher_is_better) == (False, True)
    with pytest.raises(UsageError, match="unknown metric 'nope'"):
        resolve_metric("nope", "bench", columns=["latency_ms_median"])
