"""A fixed reference workload, timed in every measuring process: how fast the machine is now.

Why: two runs of identical code on one machine can differ by 20 % or more as a whole (a
neighbour on the host, the CPU's frequency, a VM's stolen time), and nothing inside a run's
own cells can tell that shift from a change of the code. A workload that never changes,
timed in the same process right before and right after the cell, moves with the machine and
not with the code; ``mixbench compare`` divides a cell's ratio by it (the machine drift)
when both runs have it. The workload is the same whatever the cell: one thread (a cell's
``--threads`` never changes it, so 1 thread against 2 is not corrected away), a small
matmul for arithmetic and a large copy for memory bandwidth, about 30 ms, timed as the
median of a few blocks so one preempted block does not count.

This module knows torch and a clock; nothing about cells, mixers or the CLI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mixbench.measure.stats import median
from mixbench.measure.timing import thread_limit

MATMUL_SIZE = 256  # a 256 x 256 float32 matmul: 34 MFLOP, cache-resident (~0.6 ms here)
MATMULS_PER_BLOCK = 4
COPY_BYTES = 16 * 2**20  # 16 MiB: beyond the caches of most CPUs (~2 ms here)
BLOCKS = 5
THREADS = 1
DESCRIPTION = (
    f"{THREADS} thread: {MATMULS_PER_BLOCK} float32 {MATMUL_SIZE}x{MATMUL_SIZE} matmuls and a "
    f"{COPY_BYTES // 2**20} MiB copy per block, median of {BLOCKS} blocks"
)


@dataclass(frozen=True)
class Reference:
    """The reference workload's block time, in ms (median of ``BLOCKS`` blocks)."""

    ms: float
    samples_ms: list[float]


def time_reference() -> Reference:
    """Time the reference workload here and now (one warm-up block, then ``BLOCKS``)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with thread_limit(THREADS), torch.no_grad():
        a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator)
        b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator)
        out = torch.empty(MATMUL_SIZE, MATMUL_SIZE)
        source = torch.full((COPY_BYTES // 4,), 1.0)
        target = torch.empty_like(source)

        def block() -> None:
            for _ in range(MATMULS_PER_BLOCK):
                torch.mm(a, b, out=out)
            target.copy_(source)

        block()
        samples = []
        for _ in range(BLOCKS):
            begin = time.perf_counter()
            block()
            samples.append((time.perf_counter() - begin) * 1e3)
    return Reference(median(samples), samples)
