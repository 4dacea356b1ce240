"""The pooling, token-MLP and identity mixers: values computed by hand, their FLOP models,
their errors, and the mixer contract (shapes on 1-D and 2-D grids, batch independence,
gradients, determinism, bfloat16)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import mixbench
from mixbench.core.registry import RESERVED, read_options
from mixbench.errors import IncompatibleError, OptionError
from mixbench_builtins.mixers import identity, mlp, pooling
from mixbench_builtins.mixers.identity import Identity
from mixbench_builtins.mixers.mlp import TokenMLP
from mixbench_builtins.mixers.pooling import Pooling


def _tokens(grid: tuple[int, ...], values: torch.Tensor) -> torch.Tensor:
    """A (1, N, 1) input holding ``values`` laid out on ``grid`` (row-major)."""
    return values.reshape(1, math.prod(grid), 1).float()


# -- pooling -----------------------------------------------------------------------------------


def test_pooling_by_hand_on_a_4x4_grid() -> None:
    # x = 0..15 row-major. count_include_pad=False: the corner averages its 4 in-bounds
    # neighbours (0, 1, 4, 5), an edge token its 6, an interior token all 9.
    out = Pooling(1, (4, 4))(_tokens((4, 4), torch.arange(16))).view(4, 4)
    assert out[0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4 - 0)
    assert out[0, 1].item() == pytest.approx((0 + 1 + 2 + 4 + 5 + 6) / 6 - 1)
    assert out[3, 3].item() == pytest.approx((10 + 11 + 14 + 15) / 4 - 15)
    # A linear ramp averages to itself wherever the neighbourhood is symmetric.
    assert torch.allclose(out[1:3, 1:3], torch.zeros(2, 2), atol=1e-6)


def test_pooling_by_hand_on_a_sequence() -> None:
    out = Pooling(1, (4,))(_tokens((4,), torch.tensor([0.0, 1.0, 4.0, 9.0]))).flatten()
    expected = [(0 + 1) / 2 - 0, (0 + 1 + 4) / 3 - 1, (1 + 4 + 9) / 3 - 4, (4 + 9) / 2 - 9]
    assert out.tolist() == pytest.approx(expected)


def test_pooling_of_a_constant_is_zero_and_wider_pools_reach_further() -> None:
    assert Pooling(3, (5, 5))(torch.full((2, 25, 3), 7.0)).abs().max() == 0
    x = torch.zeros(1, 49, 1)
    x[0, 24] = 1.0  # a single spike in the middle of a 7 x 7 grid
    for pool_size, reach in [(3, 1), (5, 2)]:
        out = Pooling(1, (7, 7), pool_size=pool_size)(x).view(7, 7)
        touched = (out != 0).nonzero()
        assert (touched - 3).abs().max().item() == reach


def test_pooling_larger_than_the_grid_is_a_global_average() -> None:
    x = torch.randn(2, 4, 3)
    out = Pooling(3, (2, 2), pool_size=5)(x)
    torch.testing.assert_close(out, x.mean(1, keepdim=True) - x)


def test_pooling_flops_are_counted_by_hand() -> None:
    # 3 x 3 grid, pool 3: in-bounds neighbours per axis are 2, 3, 2 (sum 7), so 7 * 7 = 49
    # over the grid; each output token also costs 1 subtraction (9 tokens).
    assert Pooling(4, (3, 3)).extra_flops(batch_size=2).forward == 2 * 4 * (49 + 9)
    # Sequence of 4, pool 3: neighbours 2, 3, 3, 2 -> 10, plus 4 subtractions.
    assert Pooling(1, (4,)).extra_flops(batch_size=1).forward == 14
    # And the automatic counter really sees nothing, which is why the mixer counts itself.
    with FlopCounterMode(display=False) as counter:
        Pooling(4, (3, 3))(torch.randn(2, 9, 4))
    assert counter.get_total_flops() == 0


@pytest.mark.parametrize(
    ("grid", "pool_size", "causal"),
    [
        ((6, 5), 3, False),
        ((6, 5), 5, False),
        ((7,), 3, False),
        ((7,), 5, False),
        ((3, 4, 5), 3, False),
        ((5, 6, 5), 5, False),
        ((2, 2), 5, False),
        ((9,), 3, True),
    ],
)
def test_pooling_values_and_gradients_match_the_plain_formula(
    grid: tuple[int, ...], pool_size: int, causal: bool
) -> None:
    """The forward subtracts in place into the pool's output on a channels-last view; the
    plain formula (a contiguous (B, C, *grid) copy, avg_pool - x) gives the same values and
    input gradient."""
    module = Pooling(4, grid, pool_size=pool_size, causal=causal)
    x = torch.randn(2, math.prod(grid), 4, requires_grad=True)
    spatial = x.transpose(1, 2).reshape(2, 4, *grid).contiguous()
    if causal:
        padded = F.pad(spatial, (pool_size - 1, 0))
        sums = F.avg_pool1d(padded, pool_size, stride=1) * pool_size
        average = sums / torch.arange(1, grid[0] + 1).clamp(max=pool_size)
    else:
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(grid)]
        average = pool(
            spatial, pool_size, stride=1, padding=pool_size // 2, count_include_pad=False
        )
    expected = (average - spatial).flatten(2).transpose(1, 2)
    upstream = torch.randn(expected.shape)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    out = module(x)
    (grad,) = torch.autograd.grad(out, x, upstream)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize(
    ("grid", "pool_size"), [((5,), 3), ((5,), 5), ((5, 7), 3), ((5, 7), 5), ((3, 4, 5), 3)]
)
def test_pooling_backward_passes_gradcheck_and_gradgradcheck(
    grid: tuple[int, ...], pool_size: int
) -> None:
    """The backward through the in-place subtraction against finite differences, and itself
    differentiable: sharpness and SAM take Hessian-vector products through it."""
    mixer = mixbench.create_mixer("pooling", dim=3, grid=grid, pool_size=pool_size)
    x = torch.randn(2, math.prod(grid), 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mixer, (x,))
    assert torch.autograd.gradgradcheck(mixer, (x,))


def test_pooling_errors() -> None:
    with pytest.raises(OptionError, match="pool_size"):
        Pooling(8, (4, 4), pool_size=4)
    with pytest.raises(IncompatibleError, match=r"pooling.*\(4, 4\).*16 tokens.*15"):
        Pooling(8, (4, 4))(torch.randn(1, 15, 8))


# -- token MLP ---------------------------------------------------------------------------------


def test_mlp_hidden_width() -> None:
    assert TokenMLP(8, (8, 8)).hidden == 32  # round(64 * 0.5)
    assert TokenMLP(8, (10,), expansion=2.0).hidden == 20
    assert TokenMLP(8, (10,), expansion=0.01).hidden == 1  # never zero
    with pytest.raises(OptionError, match="expansion"):
        TokenMLP(8, (10,), expansion=0.0)


def test_mlp_mixes_tokens_with_weights_shared_across_channels() -> None:
    module = TokenMLP(3, (6,))
    x = torch.randn(2, 6, 3)
    out = module(x)
    for channel in range(3):  # the same MLP along the token axis of every channel
        expected = module.fc2(F.gelu(module.fc1(x[:, :, channel])))
        torch.testing.assert_close(out[:, :, channel], expected)


@pytest.mark.parametrize("causal", [False, True])
def test_mlp_values_and_gradients_match_linear_layers_on_the_transposed_tokens(
    causal: bool,
) -> None:
    """The forward is a broadcast baddbmm on (B, N, C); the textbook form (Linear layers
    on (B, C, N), masked weights when causal) gives the same values and gradients."""
    module = TokenMLP(5, (3, 4), causal=causal)
    x = torch.randn(2, 12, 5, requires_grad=True)
    w1, w2 = module.fc1.weight, module.fc2.weight
    if causal:
        assert module.in_mask is not None and module.out_mask is not None
        w1, w2 = w1 * module.in_mask, w2 * module.out_mask
    hidden = F.gelu(F.linear(x.transpose(1, 2), w1, module.fc1.bias))
    expected = F.linear(hidden, w2, module.fc2.bias).transpose(1, 2)
    upstream = torch.randn(expected.shape)
    inputs = (x, *module.parameters())
    expected_grads = torch.autograd.grad(expected, inputs, upstream)
    out = module(x)
    grads = torch.autograd.grad(out, inputs, upstream)
    torch.testing.assert_close(out, expected)
    for ours, reference in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(ours, reference)


def test_the_token_linear_map_has_exact_first_and_second_derivatives() -> None:
    """Its backward is written by hand (to keep the weight's gradient off the batch), so
    check it against finite differences, second order too (sharpness uses HVPs)."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, dtype=torch.double, requires_grad=True)
    weight = torch.randn(4, 5, dtype=torch.double, requires_grad=True)
    bias = torch.randn(4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(mlp.token_linear, (x, weight, bias))
    assert torch.autograd.gradgradcheck(mlp.token_linear, (x, weight, bias))


def test_mlp_training_step_does_not_hold_a_weight_gradient_per_sample() -> None:
    """A weight broadcast over the batch gets, from autograd, a gradient per sample summed
    afterwards: batch copies of the (hidden, N) weight at peak. The step's peak must stay
    below that much, whatever else it holds."""
    from mixbench.measure.memory import measure_peak_memory

    torch.manual_seed(0)
    batch, grid = 8, (32, 32)
    mixer = TokenMLP(64, grid)
    x = torch.randn(batch, math.prod(grid), 64, requires_grad=True)

    def step() -> None:
        mixer(x).sum().backward()

    step()
    per_sample_weight_grads = batch * mixer.fc1.weight.numel() * 4
    assert measure_peak_memory(step).peak_bytes < per_sample_weight_grads


def test_mlp_is_bound_to_its_grid() -> None:
    module = TokenMLP(8, (8, 8))
    with pytest.raises(IncompatibleError, match=r"mlp.*built for grid \(8, 8\).*100"):
        module(torch.randn(1, 100, 8))


def test_mlp_flops() -> None:
    module = TokenMLP(4, (10,))  # hidden 5
    x = torch.randn(3, 10, 4)
    with FlopCounterMode(display=False) as counter:
        module(x)
    assert counter.get_total_flops() == 2 * (2 * 3 * 4 * 10 * 5)  # two matmuls
    assert module.extra_flops(3).forward == 3 * 4 * 5 * 5  # GELU, 5 FLOPs, on B x C x hidden


# -- identity ----------------------------------------------------------------------------------


def test_identity_returns_its_input_and_has_nothing_to_learn() -> None:
    module = Identity(8, (4, 4))
    x = torch.randn(2, 16, 8)
    assert module(x) is x
    assert list(module.parameters()) == []


# -- registration and options ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name", "cls", "paper"),
    [
        (pooling, "pooling", Pooling, "2111.11418"),
        (mlp, "mlp", TokenMLP, "2105.01601"),
        (identity, "identity", Identity, "2210.13452"),
    ],
)
def test_registration_hook(module: object, name: str, cls: type, paper: str) -> None:
    registered: dict[str, tuple[object, dict[str, object]]] = {}
    module.register_mixers(register=lambda n, f, **meta: registered.update({n: (f, meta)}))  # type: ignore[attr-defined]
    assert list(registered) == [name]
    factory, meta = registered[name]
    assert factory is cls
    assert paper in str(meta["paper"]) and meta["complexity"]


def test_options_are_introspected_from_the_signatures() -> None:
    def options(factory: Callable[..., nn.Module]) -> dict[str, object]:
        found, var_kwargs, _ = read_options(factory, RESERVED["mixer"])
        assert not var_kwargs
        return {name: info.default for name, info in found.items()}

    assert options(Pooling) == {"pool_size": 3, "causal": False}
    assert options(TokenMLP) == {"expansion": 0.5, "causal": False}
    assert options(Identity) == {"causal": False}
    info, _, _ = read_options(TokenMLP, RESERVED["mixer"])
    assert info["expansion"].convert("0.25") == 0.25


# -- contract ----------------------------------------------------------------------------------

FACTORIES: dict[str, Callable[[int, tuple[int, ...]], nn.Module]] = {
    "pooling": Pooling,
    "mlp": TokenMLP,
    "identity": Identity,
}


@pytest.mark.parametrize("grid", [(12,), (4, 5)])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_contract(name: str, grid: tuple[int, ...]) -> None:
    dim = 6

    def build() -> nn.Module:
        torch.manual_seed(3)
        return FACTORIES[name](dim, grid)

    module = build()
    x = torch.randn(3, math.prod(grid), dim, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # Gradients reach the input and every parameter (identity has none).
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for param_name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name
    with torch.no_grad():
        torch.testing.assert_close(build()(x), out, rtol=0, atol=0)  # deterministic
        changed = x.detach().clone()
        changed[1] = 5.0
        torch.testing.assert_close(module(changed)[[0, 2]], out[[0, 2]])  # no batch mixing
        low = build().to(torch.bfloat16)(x.to(torch.bfloat16))
        assert low.dtype == torch.bfloat16
        assert (low.float() - out).abs().mean() <= 0.05 * out.abs().mean()
