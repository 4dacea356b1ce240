"""FLOP counts: 2 per multiply-add, MACs apart, the fused CPU attention kernel counted,
and a module's analytic ``extra_flops`` summed over submodules and forward passes; plus
the hardware probes that turn FLOP/s into a fraction of this machine's peak."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mixbench.measure.flops import count_flops, module_extra_flops
from mixbench.measure.probes import run_probes


class Counted(nn.Module):
    """A module that does work the counter cannot see, and says how much."""

    def __init__(self, per_sample: int) -> None:
        super().__init__()
        self.per_sample = per_sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sort(dim=-1).values

    def extra_flops(self, batch_size: int) -> int:
        return self.per_sample * batch_size


def test_linear_is_two_flops_per_multiply_add() -> None:
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64)
    result = count_flops(lambda: layer(x), layer, batch_size=8)
    assert result.counted_flops == 2 * 8 * 64 * 32
    assert result.macs == 8 * 64 * 32
    assert result.flops == result.counted_flops and result.extra_flops == 0


def test_training_step_counts_forward_and_backward() -> None:
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64)
    forward = 2 * 8 * 64 * 32
    result = count_flops(lambda: layer(x).sum().backward(), layer, batch_size=8)
    # backward of x @ W^T: one matmul for the weight gradient (the input needs none)
    assert result.counted_flops == 2 * forward


def test_cpu_flash_attention_is_counted() -> None:
    b, h, n, d = 2, 4, 128, 16
    q = torch.randn(b, h, n, d)
    result = count_flops(lambda: F.scaled_dot_product_attention(q, q, q), nn.Identity(), b)
    assert result.counted_flops == 2 * (2 * b * h * n * n * d)  # QK^T and PV


def test_extra_flops_summed_over_submodules_and_forward_passes() -> None:
    model = nn.Sequential(Counted(10), nn.Sequential(Counted(5)), nn.ReLU())
    assert module_extra_flops(model, batch_size=4) == 4 * (10 + 5)
    x = torch.randn(4, 16)
    passes = {"n": 0}

    def step() -> None:  # a SAM-like step: two forward passes
        for _ in range(2):
            passes["n"] += 1
            model(x)

    result = count_flops(step, model, batch_size=4, forward_passes=lambda: passes["n"])
    assert result.forward_passes == 2
    assert result.extra_flops == 2 * 4 * 15
    assert result.flops == result.counted_flops + result.extra_flops


def test_probes_report_positive_peaks_for_the_manifest() -> None:
    probe = run_probes("cpu", "float32", threads=1, quick=True)
    assert probe["threads"] == 1
    assert probe["matmul_gflops"] > 0 and probe["matmul_size"] == 1024
    assert probe["bandwidth_gbs"] > 0 and probe["bandwidth_bytes"] == 64 * 1024**2
