"""Short probes of this machine's own limits: matmul throughput and memory bandwidth.

A latency alone does not say whether a mixer is slow or the machine is. Each run probes,
once and in a few seconds, what this device reaches on

* a dense square matmul (GFLOP/s, at 2 FLOPs per multiply-add) in the run's dtype, the
  practical compute peak of the BLAS the mixers call; and
* a large tensor copy (GB/s, 10^9 bytes/s, counting bytes read plus bytes written), the
  practical memory bandwidth.

Both are stored in the run's manifest, and each cell reports its achieved GFLOP/s and the
fraction of the probed matmul peak. They are measured with the same timing protocol as the
cells and the same thread count, so the ratio compares like with like. A probe is a
practical peak, not the vendor's datasheet figure.
"""

from __future__ import annotations

from typing import Any

from mixbench.measure.timing import TimingConfig, measure

PROBE_TIMING = TimingConfig(
    warmup_iters=3, warmup_s=0.05, min_time_s=0.2, max_time_s=0.6, min_samples=5
)
QUICK_PROBE_TIMING = TimingConfig(
    warmup_iters=2, warmup_s=0.0, min_time_s=0.1, max_time_s=0.3, min_samples=3
)


def _dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def matmul_peak(
    device: str = "cpu",
    dtype: str = "float32",
    *,
    size: int | None = None,
    threads: int | None = None,
    config: TimingConfig = PROBE_TIMING,
) -> dict[str, Any]:
    """GFLOP/s of an n x n x n matmul (n = 1024 on CPU, 4096 on accelerators)."""
    import torch

    n = size or (1024 if device.split(":")[0] == "cpu" else 4096)
    a = torch.randn(n, n, device=device).to(_dtype(dtype))
    b = torch.randn(n, n, device=device).to(_dtype(dtype))
    out = torch.empty(n, n, device=device, dtype=a.dtype)
    result = measure(lambda: torch.mm(a, b, out=out), config, device=device, threads=threads)
    return {
        "matmul_gflops": 2.0 * n**3 / result.median_s / 1e9,
        "matmul_size": n,
        "matmul_rel_iqr": result.summary.rel_iqr,
    }


def memory_bandwidth(
    device: str = "cpu",
    *,
    nbytes: int | None = None,
    threads: int | None = None,
    config: TimingConfig = PROBE_TIMING,
) -> dict[str, Any]:
    """GB/s of copying a buffer far larger than the caches (64 MiB on CPU, 256 MiB else)."""
    import torch

    size = nbytes or ((64 if device.split(":")[0] == "cpu" else 256) << 20)
    src = torch.ones(size // 4, device=device)
    dst = torch.empty_like(src)
    result = measure(lambda: dst.copy_(src), config, device=device, threads=threads)
    return {
        "bandwidth_gbs": 2.0 * src.numel() * 4 / result.median_s / 1e9,
        "bandwidth_bytes": src.numel() * 4,
        "bandwidth_rel_iqr": result.summary.rel_iqr,
    }


def run_probes(
    device: str = "cpu", dtype: str = "float32", threads: int | None = None, quick: bool = False
) -> dict[str, Any]:
    """Both probes, as plain data for the manifest (``quick``: about half a second)."""
    import time

    from mixbench.measure.timing import thread_limit

    config = QUICK_PROBE_TIMING if quick else PROBE_TIMING
    begin = time.perf_counter()
    with thread_limit(threads) as used:
        probe: dict[str, Any] = {"device": device, "dtype": dtype, "threads": used}
        probe.update(matmul_peak(device, dtype, config=config))
        probe.update(memory_bandwidth(device, config=config))
    probe["probe_s"] = time.perf_counter() - begin
    return probe
