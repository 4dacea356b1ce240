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

It runs on the cell's device (on an accelerator it measures that device, not the host),
with the timing protocol of ``mixbench.measure.timing``. This module knows nothing about
cells, mixers or the CLI.
"""

from __future__ import annotations

from mixbench.measure.timing import TimingConfig, measure

MATMUL_SIZE = 256  # a 256 x 256 float32 matmul: 34 MFLOP, cache-resident (~0.6 ms here)
MATMULS_PER_BLOCK = 4
COPY_BYTES = 16 * 2**20  # 16 MiB: beyond the caches of most CPUs (~2 ms here)
BLOCKS = 5
THREADS = 1
DESCRIPTION = (
    f"{THREADS} thread: {MATMULS_PER_BLOCK} float32 {MATMUL_SIZE}x{MATMUL_SIZE} matmuls and a "
    f"{COPY_BYTES // 2**20} MiB copy per block, median of {BLOCKS} blocks"
)
# Exactly BLOCKS blocks after one warm-up block, however fast: the reference's cost is fixed.
REFERENCE_TIMING = TimingConfig(
    warmup_iters=1, warmup_s=0.0, min_time_s=0.0, max_time_s=0.0, min_samples=BLOCKS,
    max_samples=BLOCKS, min_block_s=0.0, max_overhead=0.01,
)  # fmt: skip


def time_reference(device: str = "cpu") -> list[float]:
    """The reference workload's block times on ``device`` here and now, in ms."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator).to(device)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator).to(device)
    out = torch.empty_like(a)
    source = torch.full((COPY_BYTES // 4,), 1.0, device=device)
    target = torch.empty_like(source)

    def block() -> None:
        for _ in range(MATMULS_PER_BLOCK):
            torch.mm(a, b, out=out)
        target.copy_(source)

    with torch.no_grad():
        result = measure(block, REFERENCE_TIMING, device=device, threads=THREADS)
    return [s * 1e3 for s in result.samples_s]
