"""Benchmarks of the measuring harness itself (pytest-benchmark), run by ``nox -s bench``.

What the harness adds to every cell, and whether it could distort a measurement:

* the cost of one empty timed block (two clock reads), which ``TimingConfig.max_overhead``
  keeps below 1e-4 of a block;
* the whole timing protocol around a no-op module, i.e. the floor of a cell's time;
* the statistics over a full set of samples (run repeatedly by the stopping rule);
* the FLOP-counting and memory-profiling passes on a small module.

Not part of the default test run (``pytest`` collects ``tests/`` only, with benchmarks
disabled): ``nox -s bench`` or ``pytest benchmarks --benchmark-enable``.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn

from mixbench.measure.flops import count_flops
from mixbench.measure.memory import measure_peak_memory
from mixbench.measure.stats import summarize
from mixbench.measure.timing import TimingConfig, _block_timer, measure

SHORT = TimingConfig(warmup_iters=10, warmup_s=0.01, min_time_s=0.05, max_time_s=0.2)


def test_empty_timed_block(benchmark: Any) -> None:
    """Clock reads around zero iterations: the overhead every block pays once."""
    block = _block_timer(lambda: None, "cpu")
    benchmark(block, 0)


def test_timing_protocol_on_a_no_op_module(benchmark: Any) -> None:
    """Warm-up, block sizing and adaptive sampling around ``nn.Identity``."""
    module, x = nn.Identity(), torch.randn(8, 64)

    def step() -> Any:
        with torch.no_grad():
            return module(x)

    result = benchmark.pedantic(measure, args=(step, SHORT), kwargs={"threads": 1}, rounds=5)
    benchmark.extra_info["noop_median_ns"] = result.median_s * 1e9
    benchmark.extra_info["block_size"] = result.number


def test_summary_of_2000_samples(benchmark: Any) -> None:
    rng = random.Random(0)
    samples = [rng.lognormvariate(0.0, 0.1) for _ in range(2000)]
    benchmark(summarize, samples)


def test_flop_count_pass(benchmark: Any) -> None:
    layer, x = nn.Linear(64, 64), torch.randn(8, 64)
    benchmark(count_flops, lambda: layer(x), layer, 8)


def test_memory_profiling_pass(benchmark: Any) -> None:
    layer, x = nn.Linear(64, 64), torch.randn(8, 64)

    def step() -> Any:
        with torch.no_grad():
            return layer(x)

    benchmark.pedantic(measure_peak_memory, args=(step, "cpu"), rounds=5)
