"""One bench cell, run in this process: the row's schema and units, each mode and level,
and every failure turned into a status. Also home of the throwaway ``faulty`` mixer plugin
that the worker and CLI tests register (it is importable by module name in a worker)."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

import mixbench
from mixbench.bench.cell import optimizer_state_bytes, run_cell
from mixbench.core.plugin_loader import register_plugin

TINY_TIMING = {
    "warmup_iters": 1,
    "warmup_s": 0.0,
    "min_time_s": 0.005,
    "max_time_s": 0.05,
    "min_samples": 3,
}


class Faulty(nn.Module):
    """A mixer that fails on purpose, as ``failure`` says, when it runs forward."""

    def __init__(self, dim: int, grid: tuple[int, ...], *, failure: str = "none") -> None:
        super().__init__()
        self.failure = failure
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.failure == "raise":
            raise RuntimeError("faulty mixer: deliberate failure")
        if self.failure == "nan":
            return self.proj(x) * float("nan")
        if self.failure == "oom":
            torch.empty(1 << 42, dtype=torch.uint8)  # 4 TiB: the allocator refuses
        if self.failure == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.failure == "hang":
            time.sleep(3600)
        return self.proj(x)


@mixbench.hookimpl
def register_mixers(register: Callable[..., object]) -> None:
    register("faulty", Faulty, description="fails on purpose (tests)", complexity="O(N)")


@pytest.fixture
def faulty() -> Iterator[None]:
    import sys

    register_plugin(sys.modules[__name__], "faulty-tests")
    yield


def cell(**overrides: Any) -> dict[str, Any]:
    config = {
        "level": "mixer",
        "mixer": "pooling",
        "mixer_options": {},
        "optimizer": None,
        "optimizer_options": {},
        "lr": 1e-3,
        "mode": "infer",
        "tokens": 64,
        "grid": [8, 8],
        "image_size": None,
        "dim": 16,
        "batch_size": 2,
        "preset": None,
        "device": "cpu",
        "dtype": "float32",
        "threads": 1,
        "compile": False,
        "seed": 0,
    }
    config.update(overrides)
    return {
        "kind": "bench",
        "key": "k",
        "config": config,
        "settings": {"timing": TINY_TIMING, "probe": {"matmul_gflops": 10.0}},
        "run_id": "r",
    }


def test_ok_row_schema_and_units() -> None:
    row = run_cell(cell())
    assert row["status"] == "ok", row["reason"]
    json.dumps(row, allow_nan=False)  # plain JSON, nothing else
    assert {
        "schema",
        "kind",
        "key",
        "status",
        "reason",
        "config",
        "metrics",
        "samples_ms",
        "runtime",
        "measurement",
        "started_at",
        "duration_s",
        "run_id",
    } <= set(row)
    m = row["metrics"]
    assert len(row["samples_ms"]) == row["measurement"]["samples"] >= 3
    low, high = m["latency_ms_ci95"]
    assert low <= m["latency_ms_median"] <= high
    assert m["tokens_per_s"] == pytest.approx(m["samples_per_s"] * 64)
    assert m["samples_per_s"] == pytest.approx(2 / (m["latency_ms_median"] / 1e3))
    # pooling is invisible to the FLOP counter: all of its FLOPs are analytic
    assert m["flops_counted"] == 0 and m["executed_flops"] == m["flops_analytic_extra"] > 0
    assert row["conventions_version"] == 1 and m["model_flops"] == m["executed_flops"]
    seconds = m["latency_ms_median"] / 1e3
    for kind in ("model", "executed"):
        rate = m[f"{kind}_gflops_per_s"]
        assert rate == pytest.approx(m[f"{kind}_flops"] / seconds / 1e9)
        assert m[f"{kind}_frac_peak_flops"] == pytest.approx(rate / 10.0)
    assert m["weights_bytes"] == m["nonpersistent_buffers_bytes"] == 0
    assert m["peak_mem_bytes"] >= 2 * 64 * 16 * 4  # at least the output
    assert m["memory_method"] == "profiler_cpu_allocations"
    assert row["runtime"]["complexity"] == "O(N)"
    assert row["runtime"]["grid"] == [8, 8]
    # The reference workload was timed around the cell (what compare corrects drift with).
    measurement = row["measurement"]
    assert measurement["reference_workload"].startswith("1 thread")
    assert measurement["reference_ms"] > 0
    assert min(measurement["reference_before_ms"], measurement["reference_after_ms"]) > 0


def test_train_mode_counts_the_optimizer_state_and_sam_two_passes() -> None:
    adam = run_cell(cell(mixer="attention", mode="train", optimizer="adam"))
    assert adam["status"] == "ok", adam["reason"]
    params = adam["metrics"]["params"]
    assert adam["metrics"]["optimizer_state_bytes"] >= 2 * params * 4  # exp_avg, exp_avg_sq
    assert adam["runtime"]["forward_passes_per_step"] == 1
    sam = run_cell(cell(mixer="attention", mode="train", optimizer="sam"))
    assert sam["status"] == "ok", sam["reason"]
    assert sam["runtime"]["forward_passes_per_step"] == 2
    for kind in ("model_flops", "executed_flops"):
        assert sam["metrics"][kind] > 1.5 * adam["metrics"][kind]
    # a parameter-free mixer trains as forward and backward (to its input), no optimizer step
    pooling = run_cell(cell(mode="train", optimizer="sgd"))
    assert pooling["status"] == "ok", pooling["reason"]
    assert pooling["runtime"]["optimizer_step"] is False
    assert pooling["metrics"]["optimizer_state_bytes"] == 0


def test_block_and_model_levels() -> None:
    block = run_cell(cell(level="block"))
    mixer = run_cell(cell())
    assert block["status"] == "ok", block["reason"]
    assert block["metrics"]["params"] > mixer["metrics"]["params"]  # norms, MLP, scales
    model = run_cell(cell(level="model", preset="tiny", dim=None, tokens=64, grid=[64]))
    assert model["status"] == "ok", model["reason"]
    assert model["runtime"]["tokens"] == 64


def test_optimizer_state_bytes_of_a_plain_optimizer() -> None:
    layer = nn.Linear(10, 10)
    opt = torch.optim.Adam(layer.parameters())
    layer(torch.randn(2, 10)).sum().backward()
    opt.step()
    floats = sum(p.numel() for p in layer.parameters())
    assert optimizer_state_bytes(opt) >= 2 * floats * 4


def test_incompatible_grid_is_skipped_with_the_mixers_reason() -> None:
    row = run_cell(cell(mixer="window", mixer_options={"window_size": 16}))
    assert row["status"] == "skipped"
    assert "window_size" in row["reason"]


@pytest.mark.usefixtures("faulty")
@pytest.mark.parametrize(
    ("failure", "status", "words"),
    [
        ("raise", "error", "deliberate failure"),
        ("nan", "error", "non-finite"),
        ("oom", "oom", "allocate"),
    ],
)
def test_failures_become_statuses(failure: str, status: str, words: str) -> None:
    row = run_cell(cell(mixer="faulty", mixer_options={"failure": failure}))
    assert row["status"] == status
    assert words in row["reason"]
    assert math.isfinite(row["duration_s"])


def test_unknown_mixer_is_an_error_row_not_an_exception() -> None:
    row = run_cell(cell(mixer="no-such-mixer"))
    assert row["status"] == "error"
    assert "no-such-mixer" in row["reason"]


class BatchMixer(nn.Module):
    """Breaks the contract: every sample sees the batch mean."""

    def __init__(self, dim: int, grid: tuple[int, ...]) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x - x.mean(dim=0, keepdim=True))


class ContractBreakers:
    @mixbench.hookimpl
    def register_mixers(self, register: Callable[..., object]) -> None:
        register("batchy", BatchMixer)


@pytest.mark.parametrize("level", ["mixer", "block", "model"])
def test_a_contract_break_is_named_not_measured(level: str) -> None:
    register_plugin(ContractBreakers(), "breakers")
    row = run_cell(cell(mixer="batchy", level=level))
    assert row["status"] == "error"
    assert "'batchy' from plugin 'breakers' failed check 'batch independence'" in row["reason"]
    assert row["runtime"]["contract_check"] == "batch independence"
    assert row["metrics"] == {}
