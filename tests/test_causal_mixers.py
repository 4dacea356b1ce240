"""Causal mixers: each built-in's ``causal=True`` computes what its docstring says (checked
against a plain reference), and what cannot be causal is refused with the reason.

That no output looks ahead is the conformance kit's ``causality`` check, run over the whole
registry in test_conformance.py; here are the semantics behind it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixbench.core.api import create_mixer
from mixbench.errors import IncompatibleError, OptionError
from mixbench_builtins.mixers.mlp import causal_masks
from mixbench_builtins.mixers.window import sliding_window_band


def _x(tokens: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, tokens, dim, generator=torch.Generator().manual_seed(seed))


def test_causal_attention_is_attention_with_a_lower_triangular_mask() -> None:
    torch.manual_seed(0)
    mixer = create_mixer("attention", dim=8, grid=(11,), num_heads=2, causal=True).eval()
    x = _x(11)
    q, k, v = mixer.qkv(x).view(2, 11, 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
    allowed = torch.ones(11, 11, dtype=torch.bool).tril()
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    expected = mixer.proj(reference.transpose(1, 2).reshape(2, 11, 8))
    with torch.no_grad():
        assert torch.allclose(mixer(x), expected, atol=1e-5)
    assert mixer.runtime_info()["causal"] is True


@pytest.mark.parametrize(("tokens", "window"), [(11, 4), (12, 4), (9, 9), (7, 1)])
def test_causal_window_attends_to_the_window_size_tokens_ending_at_each_token(
    tokens: int, window: int
) -> None:
    torch.manual_seed(0)
    mixer = create_mixer(
        "window", dim=8, grid=(tokens,), window_size=window, num_heads=2, causal=True, index=1
    ).eval()
    with torch.no_grad():
        mixer.relative_position_bias.normal_()  # make the bias matter
    x = _x(tokens)
    q, k, v = mixer.qkv(x).view(2, tokens, 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
    position = torch.arange(tokens)
    offset = position[:, None] - position[None, :]  # query minus key
    allowed = (offset >= 0) & (offset < window)
    table = mixer.relative_position_bias  # (2w - 1, heads), offset o at index o + w - 1
    bias = table[(offset.clamp(-(window - 1), window - 1) + window - 1)].permute(2, 0, 1)
    mask = bias.masked_fill(~allowed, float("-inf"))
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    expected = mixer.proj(reference.transpose(1, 2).reshape(2, tokens, 8))
    with torch.no_grad():
        assert torch.allclose(mixer(x), expected, atol=1e-5)
    info = mixer.runtime_info()
    assert info["causal"] is True and info["keys_per_query_block"] == 2 * window


def test_sliding_window_band_by_hand() -> None:
    allowed, offset = sliding_window_band(5, 2)  # blocks [0 1] [2 3] [4 pad]
    assert allowed.shape == (3, 2, 4)
    # Query 0 of block 1 (token 2) sees keys token 1 (previous block, slot 1) and token 2.
    assert allowed[1, 0].tolist() == [False, True, True, False]
    assert allowed[1, 1].tolist() == [False, False, True, True]
    assert allowed[0, 0].tolist() == [False, False, True, False]  # nothing before token 0
    assert offset[0].tolist() == [2, 1, 0, -1]


def test_causal_window_is_refused_on_2d_grids_and_does_not_shift() -> None:
    with pytest.raises(
        IncompatibleError, match=r"causal window attention is defined on sequences \(1-D grids\)"
    ):
        create_mixer("window", dim=8, grid=(4, 4), window_size=2, causal=True)
    mixer = create_mixer("window", dim=8, grid=(12,), window_size=4, causal=True, index=1)
    assert mixer.shifts == (0,)
    # Causal cost: blocks of w queries against 2w keys.
    assert mixer.extra_flops(1).forward == 7 * 3 * 4 * 2 * 4 * 4


def test_causal_pooling_by_hand() -> None:
    mixer = create_mixer("pooling", dim=1, grid=(5,), pool_size=3, causal=True)
    x = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0]).view(1, 5, 1)
    means = torch.tensor([1.0, 1.5, 7 / 3, 14 / 3, 28 / 3])
    assert torch.allclose(mixer(x).flatten(), means - x.flatten())
    even = create_mixer("pooling", dim=1, grid=(5,), pool_size=2, causal=True)
    assert torch.allclose(even(x).flatten(), torch.tensor([0.0, -0.5, -1.0, -2.0, -4.0]))
    # Windows of 1, 2, 3, 3, 3 tokens: k + 1 FLOPs per token and channel.
    assert mixer.model_flops(2).forward == 2 * (1 + 2 + 3 + 3 + 3 + 5)
    assert mixer.runtime_info()["padding"] == [2, 0]


def test_causal_pooling_errors() -> None:
    with pytest.raises(IncompatibleError, match="1-D grids"):
        create_mixer("pooling", dim=4, grid=(4, 4), causal=True)
    with pytest.raises(OptionError, match="pool_size"):
        create_mixer("pooling", dim=4, grid=(8,), pool_size=0, causal=True)


def test_causal_mlp_masks_follow_made() -> None:
    in_mask, out_mask = causal_masks(4, 2)  # hidden units at positions 0 and 2
    assert in_mask.tolist() == [[1, 0, 0, 0], [1, 1, 1, 0]]
    assert out_mask.tolist() == [[1, 0], [1, 0], [1, 1], [1, 1]]
    # The product says which token reaches which: lower-triangular.
    reach = (out_mask @ in_mask) > 0
    assert torch.equal(reach, reach.tril())


def test_causal_mlp_uses_the_masked_weights_and_keeps_its_parameters() -> None:
    torch.manual_seed(0)
    plain = create_mixer("mlp", dim=3, grid=(6,))
    torch.manual_seed(0)
    causal = create_mixer("mlp", dim=3, grid=(6,), causal=True)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in causal.parameters()]
    x = _x(6, dim=3)
    hidden = F.gelu(
        F.linear(x.transpose(1, 2), causal.fc1.weight * causal.in_mask, causal.fc1.bias)
    )
    expected = F.linear(hidden, causal.fc2.weight * causal.out_mask, causal.fc2.bias)
    assert torch.allclose(causal(x), expected.transpose(1, 2))
    assert not torch.allclose(causal(x), plain(x))


def test_identity_accepts_causal() -> None:
    x = _x(5)
    assert torch.equal(create_mixer("identity", dim=8, grid=(5,), causal=True)(x), x)
