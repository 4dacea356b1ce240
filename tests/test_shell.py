"""The MetaFormer shell: layouts, presets, inputs, and PoolFormer-S12's published size."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mixbench
from mixbench.core.metaformer import MetaFormerBlock
from mixbench.errors import IncompatibleError, UnknownNameError, UsageError


def test_s12_pooling_matches_published_poolformer_s12() -> None:
    # PoolFormer-S12 (Yu et al. 2022, Table 1): 11.9M parameters, 1.8G MACs at 224x224.
    model = mixbench.create_model("pooling", preset="s12", num_classes=1000)
    params = sum(p.numel() for p in model.parameters())
    assert params == pytest.approx(11.9e6, rel=0.02)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    macs = counter.get_total_flops() / 2
    assert macs == pytest.approx(1.8e9, rel=0.02)
    assert model.grids == [(56, 56), (28, 28), (14, 14), (7, 7)]


def test_block_is_residual_with_layer_scale() -> None:
    block = mixbench.create_block("identity", dim=8, grid=(4,), layer_scale_init=0.0)
    x = torch.randn(2, 4, 8)
    assert torch.equal(block(x), x)  # zero LayerScale: both branches vanish
    assert isinstance(block, MetaFormerBlock)


def test_index_reaches_mixers_that_accept_it() -> None:
    model = mixbench.create_model("window", preset="s12", num_classes=10, image_size=224)
    stage = model.stages[0]
    assert [blk.mixer.index for blk in stage] == [0, 1]


@pytest.mark.parametrize("mixer", ["attention", "pooling", "mlp", "identity", "lsh", "window"])
def test_sequence_inputs_tokens_and_features(mixer: str) -> None:
    tokens = mixbench.create_model(
        mixer, preset="tiny", num_classes=5, seq_len=64, vocab_size=20, per_token=True
    )
    out = tokens(torch.randint(0, 20, (2, 64)))
    assert out.shape == (2, 64, 5)
    feats = mixbench.create_model(mixer, preset="tiny", num_classes=3, seq_len=64, in_features=6)
    assert feats(torch.randn(2, 64, 6)).shape == (2, 3)


def test_isotropic_image_grid_and_overrides() -> None:
    model = mixbench.create_model(
        "pooling", preset="tiny", num_classes=10, image_size=32, in_channels=3, depth=3, dim=48
    )
    assert model.grids == [(16, 16)]  # auto patch size 2 for 32 px
    assert len(model.stages[0]) == 3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_bad_inputs_are_usage_errors() -> None:
    with pytest.raises(UnknownNameError, match="preset 'huge'"):
        mixbench.create_model("pooling", preset="huge")
    with pytest.raises(IncompatibleError, match="hierarchical preset needs images"):
        mixbench.create_model("pooling", preset="s12", seq_len=16, vocab_size=4)
    with pytest.raises(UsageError, match="exactly one of vocab_size or in_features"):
        mixbench.create_model("pooling", preset="tiny", seq_len=16)
    with pytest.raises(UsageError, match="isotropic"):
        mixbench.create_model("pooling", preset="s12", dim=32)


def test_an_input_of_another_size_says_what_the_model_was_built_for() -> None:
    model = mixbench.create_model("pooling", preset="tiny", num_classes=10, image_size=32)
    built = r"built for images .* \(batch, 3, 32, 32\); got \(2, 3, 16, 16\)"
    with pytest.raises(ValueError, match=built):
        model(torch.randn(2, 3, 16, 16))
    tokens = mixbench.create_model(
        "identity", preset="tiny", num_classes=4, seq_len=8, vocab_size=5
    )
    with pytest.raises(ValueError, match=r"token ids .* \(batch, 8\); got \(2, 9\)"):
        tokens(torch.zeros(2, 9, dtype=torch.long))
    assert tokens(torch.zeros(2, 8, dtype=torch.long)).shape == (2, 4)
