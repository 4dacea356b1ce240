"""Honest wall-clock timing of one step function, in the manner of torch.utils.benchmark.

The protocol, and why:

1. **Warm-up** for at least ``warmup_iters`` iterations *and* ``warmup_s`` seconds: the
   first calls pay for allocator growth, oneDNN/cuBLAS kernel selection, lazy module
   initialisation and cold caches, none of which is the steady-state cost.
2. **Blocked timing**: the step runs ``number`` times between two clock reads, so the cost
   of reading the clock (and of synchronising the device) is at most ``max_overhead`` of a
   block. Each sample is block time / ``number``.
3. **Adaptive sampling**: blocks are taken until the samples are stable
   (IQR / median <= ``target_rel_iqr``) after at least ``min_time_s`` and ``min_samples``,
   or until the ``max_time_s`` cap (which never cuts below ``min_samples``: a step slower
   than the cap still gets its minimum of samples); the reason for stopping is recorded.
4. **Devices**: on CUDA each block is timed with CUDA events after a synchronisation, so
   queued kernels are counted and host jitter is not; on MPS the host clock is read after
   ``torch.mps.synchronize()``.
5. **Threads** are set explicitly (``torch.set_num_threads``) for the duration of a
   measurement and restored afterwards, and the number used is reported.

The raw per-iteration samples are returned, so a row can keep them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mixbench.measure.stats import Summary, iqr, median, summarize


@dataclass(frozen=True)
class TimingConfig:
    """How long and how carefully to time. Defaults favour trust over speed."""

    warmup_iters: int = 10
    warmup_s: float = 0.5
    min_time_s: float = 1.0
    max_time_s: float = 10.0
    min_samples: int = 5
    max_samples: int = 2000
    target_rel_iqr: float = 0.05
    max_overhead: float = 1e-4  # timer overhead / block duration, as blocked_autorange
    min_block_s: float = 1e-3  # never time blocks shorter than this

    def __post_init__(self) -> None:
        if self.warmup_iters < 0 or self.warmup_s < 0:
            raise ValueError("warm-up must be non-negative")
        if self.min_samples < 1 or self.max_samples < self.min_samples:
            raise ValueError("need 1 <= min_samples <= max_samples")
        if self.max_time_s < self.min_time_s:
            raise ValueError("max_time_s must be at least min_time_s")


@dataclass
class TimingResult:
    """Per-iteration samples in seconds and how they were obtained."""

    samples_s: list[float]
    number: int  # iterations per timed block
    warmup_iters: int
    warmup_s: float
    overhead_s: float  # cost of one empty timed block (clock reads + synchronisation)
    total_s: float  # time spent in the measured blocks, warm-up excluded
    stop_reason: str  # stable | time_cap | max_samples
    threads: int
    device: str
    summary: Summary = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summarize(self.samples_s)

    @property
    def median_s(self) -> float:
        return self.summary.median

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a results row (samples are stored separately, in ms)."""
        return {
            "number": self.number,
            "warmup_iters": self.warmup_iters,
            "warmup_s": self.warmup_s,
            "overhead_s": self.overhead_s,
            "total_s": self.total_s,
            "stop_reason": self.stop_reason,
            "threads": self.threads,
            "device": self.device,
            "samples": self.summary.n,
            "ci_coverage": self.summary.ci_coverage,
        }


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[int]:
    """Run with ``torch.set_num_threads(threads)``; yields the thread count in effect."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None and threads > 0 and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for all queued work on ``device``."""
    import torch

    kind = device.split(":")[0]
    if kind == "cuda":
        return torch.cuda.synchronize
    if kind == "mps":
        return torch.mps.synchronize
    return lambda: None


def _block_timer(step: Callable[[], Any], device: str) -> Callable[[int], float]:
    """A function that runs ``step`` ``number`` times and returns the seconds it took."""
    sync = synchronizer(device)
    if device.split(":")[0] == "cuda":
        import torch

        def cuda_block(number: int) -> float:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            sync()
            start.record()
            for _ in range(number):
                step()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end)) / 1e3

        return cuda_block

    clock = time.perf_counter

    def host_block(number: int) -> float:
        sync()
        begin = clock()
        for _ in range(number):
            step()
        sync()
        return clock() - begin

    return host_block


def warm_up(
    step: Callable[[], Any], config: TimingConfig, device: str = "cpu"
) -> tuple[int, float]:
    """Run ``step`` until both warm-up minimums are met; returns (iterations, seconds)."""
    sync = synchronizer(device)
    begin = time.perf_counter()
    iterations = 0
    while iterations < config.warmup_iters or time.perf_counter() - begin < config.warmup_s:
        step()
        iterations += 1
        if iterations >= config.warmup_iters:
            sync()  # let queued device work count against the time minimum
    sync()
    return iterations, time.perf_counter() - begin


def _choose_number(block: Callable[[int], float], overhead: float, config: TimingConfig) -> int:
    """Smallest block size whose duration makes ``overhead`` negligible.

    Grows the block geometrically from one iteration, like ``blocked_autorange``, but aims
    at ``max(min_block_s, overhead / max_overhead)`` directly once one block has been seen.
    """
    target = max(config.min_block_s, overhead / config.max_overhead)
    number = 1
    while True:
        taken = block(number)
        if taken >= target or number >= 1 << 30:
            return number
        if taken <= 0:
            number *= 10
            continue
        # Aim 20 % past the target so one more round is rarely needed.
        number = max(number + 1, min(number * 100, int(number * 1.2 * target / taken) + 1))


def _stable(samples: list[float], config: TimingConfig) -> bool:
    mid = median(samples)
    return mid > 0 and iqr(samples) / mid <= config.target_rel_iqr


def measure(
    step: Callable[[], Any],
    config: TimingConfig | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
) -> TimingResult:
    """Warm up, then time ``step`` in blocks until the median is stable or time runs out."""
    config = config or TimingConfig()
    with thread_limit(threads) as threads_used:
        warm_iters, warm_s = warm_up(step, config, device)
        block = _block_timer(step, device)
        overhead = summarize([block(0) for _ in range(5)]).median
        number = _choose_number(block, overhead, config)

        samples: list[float] = []
        next_check = config.min_samples
        spent = 0.0
        reason = "max_samples"
        while len(samples) < config.max_samples:
            taken = block(number)
            spent += taken
            samples.append(taken / number)
            if spent >= config.max_time_s and len(samples) >= config.min_samples:
                reason = "time_cap"
                break
            if len(samples) >= next_check and spent >= config.min_time_s:
                if _stable(samples, config):
                    reason = "stable"
                    break
                # Checking costs O(n log n); check each sample early on, then every ~10 %.
                next_check = len(samples) + max(1, len(samples) // 10)
            elif len(samples) >= next_check:
                next_check = len(samples) + 1
    return TimingResult(
        samples_s=samples,
        number=number,
        warmup_iters=warm_iters,
        warmup_s=warm_s,
        overhead_s=overhead,
        total_s=spent,
        stop_reason=reason,
        threads=threads_used,
        device=device,
    )
