"""Multi-head self-attention: against a hand-written softmax(QK^T / sqrt(d)) V, its options
and errors, the SDPA path it reports, and FLOP accounting that neither misses nor double
counts the attention matmuls whichever kernel ran."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mixbench
from mixbench.authoring.conformance import check_mixer
from mixbench.errors import IncompatibleError, OptionError
from mixbench_builtins.mixers.attention import Attention

SCALE_AND_SOFTMAX_PER_SCORE = 6  # 1 scale + 5 softmax (docs/conventions.md)

DIM = 16


def _input(grid: tuple[int, ...], batch: int = 2, dim: int = DIM, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, math.prod(grid), dim, generator=generator)


def reference_attention(module: Attention, x: torch.Tensor) -> torch.Tensor:
    """Self-attention written out by hand from the paper, one head at a time."""
    heads, head_dim = module.num_heads, module.head_dim
    q, k, v = module.qkv(x).split(module.dim, dim=-1)
    outputs = []
    for h in range(heads):
        part = slice(h * head_dim, (h + 1) * head_dim)
        scores = q[..., part] @ k[..., part].transpose(-1, -2) / math.sqrt(head_dim)
        outputs.append(torch.softmax(scores, dim=-1) @ v[..., part])
    return module.proj(torch.cat(outputs, dim=-1))


@pytest.mark.parametrize("grid", [(10,), (3, 5)])
@pytest.mark.parametrize(("num_heads", "qkv_bias"), [(1, False), (4, True)])
def test_matches_hand_written_attention(
    grid: tuple[int, ...], num_heads: int, qkv_bias: bool
) -> None:
    torch.manual_seed(0)
    module = Attention(DIM, grid, num_heads=num_heads, qkv_bias=qkv_bias).eval()
    x = _input(grid)
    with torch.no_grad():
        out = module(x)
        expected = reference_attention(module, x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_qkv_bias_option_adds_a_bias() -> None:
    assert Attention(DIM, (4,)).qkv.bias is None
    assert Attention(DIM, (4,), qkv_bias=True).qkv.bias is not None


def test_num_heads_must_divide_dim() -> None:
    with pytest.raises(IncompatibleError) as info:
        Attention(DIM, (7, 7), num_heads=3)
    message = str(info.value)
    assert "attention" in message and "num_heads=3" in message and "(7, 7)" in message


@pytest.mark.parametrize("options", [{"num_heads": 0}, {"dropout": 1.0}, {"dropout": -0.1}])
def test_invalid_option_values(options: dict[str, float]) -> None:
    with pytest.raises(OptionError):
        Attention(DIM, (4,), **options)


def test_dropout_is_active_in_training_only() -> None:
    torch.manual_seed(0)
    module = Attention(DIM, (12,), dropout=0.5)
    x = _input((12,))
    with torch.no_grad():
        module.train()
        first, second = module(x), module(x)
        module.eval()
        evaluated = module(x)
        expected = reference_attention(module, x)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(evaluated, expected, atol=1e-5, rtol=1e-5)


def test_runtime_info_reports_the_sdpa_path() -> None:
    """On CPU the flash kernel runs without a mask; attention dropout forces the math path."""
    module = Attention(DIM, (16,), dropout=0.1)
    x = _input((16,))
    module.eval()
    module(x)
    info = module.runtime_info()
    assert info["sdpa_mask"] is False
    assert info["sdpa_backend"] == "flash_attention"
    module.train()
    module(x)
    assert module.runtime_info()["sdpa_backend"] == "math"


@pytest.mark.parametrize("training", [False, True], ids=["flash", "math"])
def test_flops_count_the_attention_matmuls_exactly_once(training: bool) -> None:
    """Counter plus extra_flops must equal projections + QK^T + PV + softmax, whether the
    counter saw the attention matmuls (math path) or not (CPU flash kernel)."""
    batch, tokens, heads = 2, 24, 4
    module = Attention(DIM, (tokens,), num_heads=heads, dropout=0.1).train(training)
    x = _input((tokens,), batch=batch)
    with FlopCounterMode(display=False) as counter:
        module(x)
    projections = 2 * batch * tokens * DIM * (3 * DIM) + 2 * batch * tokens * DIM * DIM
    scores = batch * heads * tokens * tokens
    attention_matmuls = 2 * 2 * scores * (DIM // heads)
    total = counter.get_total_flops() + module.extra_flops(batch).forward
    assert total == projections + attention_matmuls + SCALE_AND_SOFTMAX_PER_SCORE * scores


def test_extra_flops_grow_quadratically() -> None:
    small, large = Attention(DIM, (256,)), Attention(DIM, (1024,))
    for module in (small, large):
        module(_input(module.grid, batch=1))
    assert large.extra_flops(3).forward == 16 * small.extra_flops(3).forward
    assert small.extra_flops(6).forward == 2 * small.extra_flops(3).forward


def test_conforms_with_non_default_options() -> None:
    check_mixer("attention", options={"num_heads": 2, "qkv_bias": True}, grids=((9,), (3, 4)))


def test_registered_options_convert_from_strings() -> None:
    module = mixbench.create_mixer(
        "attention", dim=DIM, grid=(4, 4), options={"num_heads": "8", "qkv_bias": "true"}
    )
    assert isinstance(module, Attention)
    assert module.num_heads == 8 and module.qkv.bias is not None
    assert module(_input((4, 4))).shape == (2, 16, DIM)


def test_harness_flop_count_agrees_once_the_cpu_kernel_has_a_formula() -> None:
    """mixbench.measure.flops teaches the counter the CPU flash kernel; the mixer then sees
    the matmuls counted and stops adding them itself."""
    from mixbench.measure.flops import count_flops

    batch, tokens, heads = 2, 24, 4
    module = Attention(DIM, (tokens,), num_heads=heads).eval()
    x = _input((tokens,), batch=batch)
    result = count_flops(lambda: module(x), module, batch)
    assert module.runtime_info()["sdpa_flops_uncounted"] is False
    scores = batch * heads * tokens * tokens
    assert result.extra_flops == SCALE_AND_SOFTMAX_PER_SCORE * scores
    projections = 2 * batch * tokens * DIM * (3 * DIM) + 2 * batch * tokens * DIM * DIM
    assert result.counted_flops == projections + 2 * 2 * scores * (DIM // heads)


def test_backend_math_forces_the_n_by_n_kernel_and_matches_auto() -> None:
    from mixbench.measure.memory import measure_peak_memory

    n, heads, batch = 512, 4, 2
    torch.manual_seed(0)
    auto = Attention(32, (n,), num_heads=heads)
    torch.manual_seed(0)
    math_ = Attention(32, (n,), num_heads=heads, backend="math")
    x = torch.randn(batch, n, 32)
    with torch.no_grad():
        a, b = auto(x), math_(x)
        scores = batch * heads * n * n * 4  # one float32 score matrix
        peak_math = measure_peak_memory(lambda: math_(x)).peak_bytes
        peak_auto = measure_peak_memory(lambda: auto(x)).peak_bytes
    assert math_.runtime_info()["sdpa_backend"] == "math"
    assert torch.allclose(a, b, atol=1e-5)
    assert peak_math is not None and peak_auto is not None
    assert peak_math >= scores  # the N x N matrix is really materialised
    assert peak_auto < scores / 4  # the flash kernel never builds it
