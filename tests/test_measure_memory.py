"""Peak memory above the live baseline, validated against sizes known in advance: a plain
tensor allocation, and math-path attention whose score matrices are B*H*N*N*4 bytes."""

from __future__ import annotations

import torch

from mixbench.measure.memory import CPU_METHOD, measure_peak_memory, peak_of_events

MIB = 1024**2


def test_a_known_allocation_is_measured_exactly() -> None:
    def step() -> None:
        buffer = torch.empty(1 << 20)  # 4 MiB of float32, freed at once
        del buffer

    result = measure_peak_memory(step, "cpu")
    assert result.method == CPU_METHOD
    assert result.peak_bytes == 4 * MIB
    assert result.allocations == 1


def test_math_attention_peaks_at_two_score_matrices() -> None:
    """softmax(QK^T) V on the math path holds the scores and the softmax of them at once."""
    b, h, n, d = 2, 4, 1024, 16
    q, k, v = (torch.randn(b, h, n, d) for _ in range(3))
    scores_bytes = b * h * n * n * 4  # 32 MiB

    def step() -> torch.Tensor:
        with torch.no_grad():
            weights = torch.softmax((q @ k.transpose(-1, -2)) * d**-0.5, dim=-1)
            return weights @ v

    result = measure_peak_memory(step, "cpu")
    assert result.peak_bytes is not None
    output_bytes = b * h * n * d * 4
    assert 2 * scores_bytes <= result.peak_bytes <= 2 * scores_bytes + output_bytes + MIB


def test_the_baseline_excludes_what_was_alive_before() -> None:
    """Weights and inputs allocated before the step are not counted. Freeing one of them
    during the step is not credited either (the profiler does not see the size of a block
    allocated before it started), so the figure is the peak of the step's own allocations."""
    held = [torch.ones(1 << 20)]  # 4 MiB alive before the step

    def step() -> None:
        held.pop()  # frees the 4 MiB: invisible to the profiler
        fresh = torch.empty(1 << 19)  # 2 MiB
        del fresh

    result = measure_peak_memory(step, "cpu")
    assert result.peak_bytes == 2 * MIB


def test_peak_of_events_is_the_running_maximum_from_the_start() -> None:
    assert peak_of_events([]) == 0
    assert peak_of_events([100, 50, -100, 200, -250]) == 250
    assert peak_of_events([-100, 50]) == 0
