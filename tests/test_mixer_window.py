"""Swin window attention: window geometry, the shift mask, the relative position bias, the
padding path, and the mixer contract, each checked against something computed another way
(by hand, or by a per-token reference written straight from the paper)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mixbench.core.registry import RESERVED, read_options
from mixbench.errors import IncompatibleError, OptionError
from mixbench_builtins.mixers import window as window_module
from mixbench_builtins.mixers.window import (
    WindowAttention,
    attention_allowed,
    relative_position_index,
    window_layout,
    window_partition,
    window_reverse,
)

DIM = 16


def _grid_input(grid: tuple[int, ...], batch: int = 2, dim: int = DIM) -> torch.Tensor:
    return torch.randn(batch, math.prod(grid), dim, generator=torch.Generator().manual_seed(0))


# -- geometry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("grid", "window"), [((12,), 3), ((4, 6), 2), ((6, 6), 3), ((4, 4, 4), 2)])
def test_partition_then_reverse_is_the_identity(grid: tuple[int, ...], window: int) -> None:
    x = torch.randn(2, *grid, 5)
    windows = window_partition(x, window)
    assert windows.shape == (2, math.prod(g // window for g in grid), window ** len(grid), 5)
    assert torch.equal(window_reverse(windows, grid, window), x)


def test_partition_groups_the_tokens_of_each_window_row_major() -> None:
    tokens = torch.arange(16).view(1, 4, 4, 1)  # token ids of a 4 x 4 grid
    windows = window_partition(tokens, 2)[0, :, :, 0]
    assert windows.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_relative_position_index_of_a_2x2_window() -> None:
    # Tokens (row, col): 0=(0,0) 1=(0,1) 2=(1,0) 3=(1,1); index = (dy + 1) * 3 + (dx + 1)
    # with (dy, dx) = position of the query minus position of the key.
    assert relative_position_index(2, 2).tolist() == [
        [4, 3, 1, 0],
        [5, 4, 2, 1],
        [7, 6, 4, 3],
        [8, 7, 5, 4],
    ]
    assert relative_position_index(3, 1).tolist() == [[2, 1, 0], [3, 2, 1], [4, 3, 2]]


def test_relative_position_index_uses_every_table_entry_once_per_offset() -> None:
    index = relative_position_index(3, 2)
    assert index.shape == (9, 9)
    assert sorted(set(index.flatten().tolist())) == list(range(25))  # (2w - 1)^2 offsets
    assert torch.equal(index.diagonal(), torch.full((9,), 12))  # zero offset is the centre


def test_shift_mask_on_a_4x4_grid_window_2_shift_1_by_hand() -> None:
    # After rolling the grid back by one row and one column, the last window row and column
    # hold tokens that came from the opposite edge. Window 0 (shifted rows 0-1, cols 0-1)
    # holds original rows 1-2, cols 1-2: all neighbours. Window 1 (cols 2-3): col 3 is the
    # wrapped original col 0, so the two columns are kept apart. Window 2 (rows 2-3) splits
    # by row, and window 3 holds four tokens from four different corners.
    open_ = [[1, 1, 1, 1]] * 4
    by_column = [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]
    by_row = [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    alone = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    allowed = attention_allowed((4, 4), 2, (1, 1))
    assert allowed is not None
    assert allowed.int().tolist() == [open_, by_column, by_row, alone]


def test_shift_mask_blocks_exactly_the_pairs_that_were_not_neighbours() -> None:
    # Independent rule: two tokens of one shifted window were together before the roll iff
    # their original coordinates differ by less than the window along every axis.
    grid, window, shift = (6, 9), 3, (1, 1)
    allowed = attention_allowed(grid, window, shift)
    assert allowed is not None
    positions = torch.stack(torch.meshgrid(*(torch.arange(g) for g in grid), indexing="ij"), -1)
    rolled = torch.roll(positions, [-s for s in shift], (0, 1))  # original coords, rolled
    original = window_partition(rolled[None], window)[0]  # (nW, T, 2)
    distance = (original[:, :, None, :] - original[:, None, :, :]).abs()
    assert torch.equal(allowed, (distance < window).all(-1))


def test_unshifted_divisible_grid_needs_no_mask() -> None:
    assert attention_allowed((6, 6), 3, (0, 0)) is None


def test_padding_hides_pad_keys_from_real_queries() -> None:
    # Sequence of 3 tokens, windows of 2: [t0 t1] [t2 pad]. The pad key is visible only to
    # the pad query itself (whose output is dropped), so no softmax row is ever empty.
    allowed = attention_allowed((3,), 2, (0,))
    assert allowed is not None
    assert allowed.int().tolist() == [[[1, 1], [1, 1]], [[1, 0], [1, 1]]]


def test_window_layout_round_trips_every_token() -> None:
    for grid, window, shifts in [((5, 5), 2, (1, 1)), ((7,), 3, (1,)), ((8, 8), 7, (3, 3))]:
        window_order, token_order = window_layout(grid, window, shifts)
        n = math.prod(grid)
        assert torch.equal(window_order[token_order], torch.arange(n))


# -- the mixer against a per-token reference ---------------------------------------------------


def _reference(module: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Window attention token by token, from the definition: each query attends to the real
    tokens that share its window, after padding the grid and rolling it back by the shift,
    and that were not brought together by the roll; scores get the relative position bias."""
    batch, n, dim = x.shape
    w, heads, grid, shifts = module.window_size, module.num_heads, module.grid, module.shifts
    padded = [math.ceil(g / w) * w for g in grid]
    q, k, v = module.qkv(x).view(batch, n, 3, heads, dim // heads).unbind(2)
    places = []
    for coords in itertools.product(*(range(g) for g in grid)):  # row-major token order
        rolled = [(c - s) % p for c, s, p in zip(coords, shifts, padded, strict=True)]
        places.append(
            (
                tuple(r // w for r in rolled),  # which window
                tuple(r % w for r in rolled),  # where inside it
                tuple(s > 0 and r >= p - s for r, s, p in zip(rolled, shifts, padded, strict=True)),
            )
        )
    out = torch.zeros(batch, n, heads, dim // heads)
    for i, (win_i, inner_i, wrap_i) in enumerate(places):
        keys = [j for j, (win, _, wrap) in enumerate(places) if win == win_i and wrap == wrap_i]
        bias = []
        for j in keys:
            offset = 0
            for a, b in zip(inner_i, places[j][1], strict=True):
                offset = offset * (2 * w - 1) + (a - b + w - 1)
            bias.append(module.relative_position_bias[offset])  # (heads,)
        scores = torch.einsum("bhd,bkhd->bhk", q[:, i], k[:, keys]) / math.sqrt(dim // heads)
        weights = (scores + torch.stack(bias, -1)).softmax(-1)
        out[:, i] = torch.einsum("bhk,bkhd->bhd", weights, v[:, keys])
    return module.proj(out.reshape(batch, n, dim))


@pytest.mark.parametrize(
    ("grid", "window", "index"),
    [((4, 4), 2, 0), ((4, 4), 2, 1), ((5, 5), 2, 0), ((5, 7), 3, 1), ((7,), 3, 1), ((8, 8), 7, 1)],
)
def test_matches_per_token_reference(grid: tuple[int, ...], window: int, index: int) -> None:
    torch.manual_seed(0)
    module = WindowAttention(DIM, grid, window_size=window, num_heads=2, index=index)
    with torch.no_grad():
        module.relative_position_bias.normal_()  # make the bias matter
        x = _grid_input(grid)
        torch.testing.assert_close(module(x), _reference(module, x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("grid", "index"), [((8, 8), 1), ((6, 6), 0), ((8, 8), 0), ((9,), 1)])
def test_gradients_match_the_per_token_reference(grid: tuple[int, ...], index: int) -> None:
    """The backward of the gathers, the in-place mask add and the written-out softmax: the
    input, weight and bias gradients are the reference's (shifted, padded, plain, 1-D)."""
    torch.manual_seed(0)
    module = WindowAttention(DIM, grid, window_size=4, num_heads=2, index=index)
    with torch.no_grad():
        module.relative_position_bias.normal_()
    x = _grid_input(grid)
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    grads = []
    for forward in (module, lambda inp: _reference(module, inp)):
        module.zero_grad()
        inp = x.clone().requires_grad_()
        forward(inp).backward(upstream)
        grads.append([inp.grad, *(p.grad for p in module.parameters())])
    for ours, reference in zip(*grads, strict=True):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)


def test_shifted_block_is_the_unshifted_block_on_the_rolled_grid_when_the_mask_is_open() -> None:
    grid = (4, 4)
    torch.manual_seed(0)
    shifted = WindowAttention(DIM, grid, window_size=2, num_heads=2, index=1)
    plain = WindowAttention(DIM, grid, window_size=2, num_heads=2, index=0)
    plain.load_state_dict(shifted.state_dict())
    x = _grid_input(grid)

    def on_rolled_grid(module: WindowAttention) -> torch.Tensor:
        rolled = torch.roll(x.view(2, 4, 4, DIM), (-1, -1), (1, 2)).reshape(2, 16, DIM)
        out = module(rolled).view(2, 4, 4, DIM)
        return torch.roll(out, (1, 1), (1, 2)).reshape(2, 16, DIM)

    with torch.no_grad():
        expected = on_rolled_grid(plain)
        assert not torch.allclose(shifted(x), expected, atol=1e-4)  # the mask matters...
        assert shifted.window_mask is not None
        shifted.window_mask.zero_()  # ...and is the only difference
        torch.testing.assert_close(shifted(x), expected)


def test_unshifted_windows_do_not_exchange_information() -> None:
    grid = (4, 4)
    module = WindowAttention(DIM, grid, window_size=2, num_heads=2, index=0)
    x = _grid_input(grid, batch=1).requires_grad_(True)
    module(x)[0, 0].sum().backward()  # token 0 lives in the window {0, 1, 4, 5}
    assert x.grad is not None
    reached = x.grad[0].abs().sum(-1) > 0
    assert reached.nonzero().flatten().tolist() == [0, 1, 4, 5]


# -- options, errors, records ------------------------------------------------------------------


def test_shift_happens_on_odd_blocks_only_and_can_be_disabled() -> None:
    assert WindowAttention(DIM, (8, 8), window_size=4, index=0).shifts == (0, 0)
    assert WindowAttention(DIM, (8, 8), window_size=4, index=1).shifts == (2, 2)
    assert WindowAttention(DIM, (8, 8), window_size=4, index=3).shifts == (2, 2)
    assert WindowAttention(DIM, (8, 8), window_size=4, index=1, shift=False).shifts == (0, 0)
    # One window along an axis: shifting would only cut it apart (Swin's last stage).
    assert WindowAttention(DIM, (7, 14), window_size=7, index=1).shifts == (0, 3)


@pytest.mark.parametrize(
    ("grid", "dim", "expected_padding", "shifted"),
    [((56, 56), 64, [0, 0], True), ((28, 28), 128, [0, 0], True), ((14, 14), 320, [0, 0], True),
     ((7, 7), 512, [0, 0], False), ((8, 8), 32, [6, 6], True)],
)  # fmt: skip
def test_poolformer_s12_stage_grids_and_digits(
    grid: tuple[int, int], dim: int, expected_padding: list[int], shifted: bool
) -> None:
    module = WindowAttention(dim, grid, index=1)  # default window_size=7
    x = torch.randn(1, math.prod(grid), dim)
    with torch.no_grad():
        out = module(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    info = module.runtime_info()
    assert info["window_size"] == 7
    assert info["padding"] == expected_padding
    assert info["shifted"] is shifted


def test_errors_name_the_mixer_the_option_and_the_grid() -> None:
    with pytest.raises(IncompatibleError, match=r"window.*window_size=7.*\(4, 4\)"):
        WindowAttention(DIM, (4, 4), window_size=7)
    with pytest.raises(IncompatibleError, match=r"window.*window_size=5.*\(4, 8\)"):
        WindowAttention(DIM, (4, 8), window_size=5)
    with pytest.raises(IncompatibleError, match=r"window.*num_heads=3.*dim=16.*\(8, 8\)"):
        WindowAttention(DIM, (8, 8), num_heads=3)
    with pytest.raises(OptionError, match="window_size"):
        WindowAttention(DIM, (8, 8), window_size=0)
    module = WindowAttention(DIM, (8, 8), window_size=4)
    with pytest.raises(IncompatibleError, match=r"window.*\(8, 8\).*64 tokens.*100"):
        module(torch.randn(1, 100, DIM))


def test_attention_path_is_recorded_as_the_written_out_math_path() -> None:
    module = WindowAttention(DIM, (8, 8), window_size=4, index=1)
    assert module.runtime_info()["sdpa_backend"] is None  # nothing ran yet
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            module(_grid_input((8, 8)))
        assert module.runtime_info()["sdpa_backend"] == "math"
        assert module.runtime_info()["sdpa_flops_uncounted"] is False


def test_counted_plus_extra_flops_are_the_executed_work_with_and_without_grad() -> None:
    """The counter sees the written-out path's two matmuls and the projections; extra_flops
    adds the per-score work it misses, the same in training and inference."""
    batch, grid = 2, (8, 8)
    module = WindowAttention(DIM, grid, window_size=4, num_heads=2, index=1)
    x = _grid_input(grid, batch)
    totals = []
    for grad in (True, False):
        with torch.set_grad_enabled(grad), FlopCounterMode(display=False) as counter:
            module(x)
        totals.append(counter.get_total_flops() + module.extra_flops(batch).forward)
    assert totals[0] == totals[1]
    scores = batch * 4 * 2 * 16 * 16  # 4 windows, 2 heads, 16 x 16 scores per window
    projections = 2 * batch * 64 * DIM * (3 * DIM + DIM)
    assert totals[0] == projections + 2 * 2 * scores * (DIM // 2) + 7 * scores


def test_options_are_introspected_from_the_signature() -> None:
    options, var_kwargs, accepts_index = read_options(WindowAttention, RESERVED["mixer"])
    assert accepts_index and not var_kwargs
    assert {name: info.default for name, info in options.items()} == {
        "window_size": 7,
        "num_heads": 4,
        "shift": True,
        "causal": False,
    }
    assert options["shift"].convert("false") is False


def test_registration_hook() -> None:
    registered: dict[str, object] = {}

    def register(name: str, factory: object, **meta: object) -> None:
        registered[name] = factory
        assert "arxiv.org/abs/2103.14030" in str(meta["paper"])

    window_module.register_mixers(register=register)
    assert registered == {"window": WindowAttention}


# -- contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("grid", "window"), [((20,), 4), ((6, 6), 4)])
@pytest.mark.parametrize("index", [0, 1])
def test_contract(grid: tuple[int, ...], window: int, index: int) -> None:
    def build() -> WindowAttention:
        torch.manual_seed(3)
        return WindowAttention(DIM, grid, window_size=window, num_heads=2, index=index)

    module = build()
    x = _grid_input(grid, batch=3).requires_grad_(True)
    out = module(x)
    assert out.shape == x.shape
    # Every parameter learns, the input gets a finite gradient.
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    with torch.no_grad():  # (no_grad may pick another SDPA kernel: compare within it)
        reference = module(x)
        # Deterministic under the seed; samples never mix.
        torch.testing.assert_close(build()(x), reference, rtol=0, atol=0)
        changed = x.detach().clone()
        changed[1] = 5.0
        torch.testing.assert_close(module(changed)[[0, 2]], reference[[0, 2]])
        # bfloat16 after .to(): stays close to float32.
        low = build().to(torch.bfloat16)(x.to(torch.bfloat16))
        assert low.dtype == torch.bfloat16
        assert (low.float() - reference).abs().mean() < 0.05 * reference.abs().mean()
