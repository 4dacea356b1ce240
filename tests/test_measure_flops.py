"""FLOP counts: 2 per multiply-add, MACs apart, the fused CPU attention kernel counted,
a module's analytic ``extra_flops`` summed over submodules and forward passes (with their
backward in a training step), a module's stated ``model_flops`` replacing the counter's
figure for its subtree; plus the hardware probes that turn FLOP/s into a fraction of this
machine's peak."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mixbench import FlopTally
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


class Stated(nn.Module):
    """A linear layer that states its model FLOPs as half of what runs (as if half the
    rows were padding)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 16, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)  # type: ignore[no-any-return]

    def model_flops(self, batch_size: int) -> FlopTally:
        return FlopTally().matmul("half", batch_size * 16 * 16 // 2)


def test_linear_is_two_flops_per_multiply_add() -> None:
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64)
    result = count_flops(lambda: layer(x), layer, batch_size=8)
    assert result.counted_flops == 2 * 8 * 64 * 32
    assert result.macs == 8 * 64 * 32
    assert result.executed_flops == result.counted_flops and result.extra_flops == 0
    assert result.model_flops == result.executed_flops and result.model_source == "counter"


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
    assert module_extra_flops(model, batch_size=4).forward == 4 * (10 + 5)
    x = torch.randn(4, 16)
    passes = {"n": 0}

    def step() -> None:  # a SAM-like step: two forward passes
        for _ in range(2):
            passes["n"] += 1
            model(x)

    result = count_flops(step, model, batch_size=4, forward_passes=lambda: passes["n"])
    assert result.forward_passes == 2
    assert result.extra_flops == 2 * 4 * 15
    assert result.executed_flops == result.counted_flops + result.extra_flops


def test_probes_report_positive_peaks_for_the_manifest() -> None:
    probe = run_probes("cpu", "float32", threads=1, quick=True)
    assert probe["threads"] == 1
    assert probe["matmul_gflops"] > 0 and probe["matmul_size"] == 1024
    assert probe["bandwidth_gbs"] > 0 and probe["bandwidth_bytes"] == 64 * 1024**2


def test_tally_rules_per_operation() -> None:
    tally = (
        FlopTally()
        .matmul("mm", 10)
        .elementwise("add", 7)
        .softmax("softmax", 3)
        .gelu("gelu", 2)
        .no_grad("sort", 11)
    )
    assert tally.parts == {
        "mm": (20, 40),  # 2 per multiply-add; backward: both operands' gradients
        "add": (7, 7),
        "softmax": (15, 12),
        "gelu": (10, 14),
        "sort": (11, 0),
    }
    assert tally.step(backward=False) == 63 and tally.step(backward=True) == 63 + 73
    assert tally.add("add", 1, 2).parts["add"] == (8, 9)  # a part named twice adds up


def test_a_bare_int_extra_is_elementwise_and_gets_its_backward_in_training() -> None:
    model = Counted(10)
    x = torch.randn(4, 16, requires_grad=True)
    result = count_flops(lambda: model(x).sum().backward(), model, 4, backward=True)
    assert result.extra_flops == 2 * 4 * 10 and result.backward


def test_stated_model_flops_replace_the_counter_inside_the_subtree_only() -> None:
    """At the root the statement is the model figure; nested beside plain layers, the
    counter stands in for those layers (forward and backward) and the statement for its
    subtree, in inference and training alike."""
    stated, plain = Stated(), nn.Linear(16, 16, bias=False)
    batch, mm = 4, 4 * 16 * 16  # multiply-adds of one 16 x 16 layer on 4 rows
    x = torch.randn(batch, 16)
    alone = count_flops(lambda: stated(x), stated, batch)
    assert alone.model_source == "declared"
    assert alone.executed_flops == 2 * mm and alone.model_flops == mm
    net = nn.Sequential(plain, stated)
    leaf = torch.randn(batch, 16, requires_grad=True)

    def train() -> None:
        inputs = leaf.view_as(leaf)
        out = net(inputs)
        torch.autograd.grad(out, [inputs, *net.parameters()], torch.randn_like(out))

    infer = count_flops(lambda: net(x), net, batch)
    trained = count_flops(train, net, batch, backward=True)
    assert infer.model_source == trained.model_source == "declared + counter"
    assert infer.executed_flops == 2 * 2 * mm and infer.model_flops == 2 * mm + mm
    assert trained.executed_flops == 3 * 2 * 2 * mm
    assert trained.model_flops == 3 * 2 * mm + 3 * mm
    assert trained.model_parts == {"1: half": 3 * mm}
