"""Peak memory of one step, above the baseline of what was alive before it.

"Memory" here means the largest amount of tensor memory the step holds at once *beyond*
what already existed when it started (weights, inputs, optimizer state from earlier steps):
activations, attention score matrices, gradients, the output. That is the number that
grows with the token count and decides whether a configuration fits.

Methods, by device (the name is stored in each row as ``memory_method``):

* ``cuda_max_memory_allocated``: the caching allocator's own statistics. We synchronise,
  call ``reset_peak_memory_stats``, read ``memory_allocated`` as the baseline, run the
  step, synchronise, and report ``max_memory_allocated - baseline``. These are bytes the
  allocator handed to tensors (rounded to its 512-byte blocks), not bytes reserved from
  the driver.
* ``profiler_cpu_allocations``: CPU has no allocator statistics, so the step runs under
  ``torch.profiler.profile(profile_memory=True)``. Every tensor allocation and free is
  recorded as an event with a signed size; summing them in time order gives the live
  bytes above the starting point, and its maximum is the peak. This sees exactly the
  tensor allocations (PyTorch's CPU allocator, oneDNN/MKLDNN buffers included), not
  Python objects or the allocator's free lists. One asymmetry: the profiler cannot size a
  block allocated before it started, so freeing such a tensor during the step is not
  credited; the figure is then the peak of the step's own allocations, an upper bound.
  (The bench runner sets gradients to None before this pass, so a training step's new
  gradients are counted rather than swapped for old ones.)
* ``unavailable`` (MPS and anything else): reported as None rather than guessed.

Profiling slows the step, so memory is measured in a separate pass from timing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from mixbench.measure.timing import synchronizer

CUDA_METHOD = "cuda_max_memory_allocated"
CPU_METHOD = "profiler_cpu_allocations"
NO_METHOD = "unavailable"


@dataclass(frozen=True)
class MemoryResult:
    """Peak bytes held by one step above the bytes alive when it started."""

    peak_bytes: int | None
    method: str
    allocations: int | None = None  # allocation events seen (CPU method only)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_peak_memory(step: Callable[[], Any], device: str = "cpu") -> MemoryResult:
    """Run ``step`` once and report its peak memory above the live baseline."""
    kind = device.split(":")[0]
    if kind == "cuda":
        return _cuda_peak(step, device)
    if kind == "cpu":
        return _cpu_peak(step)
    step()
    return MemoryResult(peak_bytes=None, method=NO_METHOD)


def _cuda_peak(step: Callable[[], Any], device: str) -> MemoryResult:
    import torch

    sync = synchronizer(device)
    sync()
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    step()
    sync()
    peak = torch.cuda.max_memory_allocated(device) - baseline
    return MemoryResult(peak_bytes=max(0, int(peak)), method=CUDA_METHOD)


def _cpu_peak(step: Callable[[], Any]) -> MemoryResult:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    sizes = cpu_allocation_events(prof)
    return MemoryResult(
        peak_bytes=peak_of_events(sizes),
        method=CPU_METHOD,
        allocations=sum(1 for size in sizes if size > 0),
    )


def cpu_allocation_events(prof: Any) -> list[int]:
    """Signed sizes of the CPU tensor allocation (+) and free (-) events, in time order."""
    from torch.autograd import DeviceType  # type: ignore[attr-defined]

    cpu_like = {DeviceType.CPU, DeviceType.MKLDNN, DeviceType.IDEEP}
    events = [
        event
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() in cpu_like
    ]
    events.sort(key=lambda event: event.start_ns())
    return [int(event.nbytes()) for event in events]


def peak_of_events(sizes: list[int]) -> int:
    """Maximum running sum of signed allocation sizes, floored at zero.

    A negative running sum (a free of a block allocated before the step, where the
    allocator reports it) lowers the live total; the peak is measured from the starting
    point, so only growth above it counts.
    """
    live = peak = 0
    for size in sizes:
        live += size
        peak = max(peak, live)
    return peak
