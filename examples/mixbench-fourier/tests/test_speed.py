"""Timing with pytest-benchmark: the Fourier mixer next to attention, one test per grid.

Skipped when pytest-benchmark is not installed; ``--benchmark-disable`` runs each once.
"""

import pytest


@pytest.mark.mixbench_benchmark(
    "fourier", "attention", grids=[(256,), (16, 16)], plugin="mixbench-fourier"
)
def test_forward_speed(mixbench_benchmark) -> None:
    out = mixbench_benchmark()
    assert out.shape == (8, 256, 64)
