"""FourierMixer against the DFT written out as matrices, and its FLOP count."""

from __future__ import annotations

import math

import mixbench
import pytest
import torch
from mixbench.errors import ContractError
from mixbench.testing import check_mixer
from torch import nn

from mixbench_fourier.fourier import FourierMixer


def dft_matrix(n: int) -> torch.Tensor:
    """The unitary DFT matrix F[j, k] = exp(-2 pi i j k / n) / sqrt(n)."""
    index = torch.arange(n, dtype=torch.float64)
    return torch.exp(-2j * math.pi * torch.outer(index, index) / n) / math.sqrt(n)


def test_sequence_is_fnet_real_part_of_two_dft_matrices() -> None:
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    expected = (dft_matrix(6) @ x.to(torch.complex128) @ dft_matrix(4).T).real
    out = FourierMixer(4, (6,))(x)
    torch.testing.assert_close(out, expected)


def test_image_grid_transforms_height_width_and_channels() -> None:
    height, width, channels = 3, 5, 4
    x = torch.randn(2, height * width, channels, dtype=torch.float64)
    grid = x.reshape(2, height, width, channels).to(torch.complex128)
    expected = torch.einsum(
        "ah,bw,cd,nhwd->nabc", dft_matrix(height), dft_matrix(width), dft_matrix(channels), grid
    ).real.reshape(2, height * width, channels)
    torch.testing.assert_close(FourierMixer(channels, (height, width))(x), expected)


def test_without_channel_mixing_each_channel_is_transformed_alone() -> None:
    x = torch.randn(1, 8, 3, dtype=torch.float64)
    out = FourierMixer(3, (8,), mix_channels=False)(x)
    torch.testing.assert_close(out, (dft_matrix(8) @ x.to(torch.complex128)).real)


def test_backward_norm_is_the_papers_unnormalised_transform() -> None:
    x = torch.randn(1, 8, 4, dtype=torch.float64)
    ortho = FourierMixer(4, (8,))(x)
    torch.testing.assert_close(FourierMixer(4, (8,), norm="backward")(x), ortho * math.sqrt(32))


def test_bfloat16_in_bfloat16_out() -> None:
    x = torch.randn(2, 16, 8)
    out = FourierMixer(8, (4, 4))(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), FourierMixer(8, (4, 4))(x), atol=0.05, rtol=0.05)


def test_extra_flops_is_five_m_log2_m_per_transform() -> None:
    assert FourierMixer(32, (64,)).extra_flops(2) == 2 * 5 * 2048 * 11
    assert FourierMixer(8, (4, 4)).extra_flops(1) == 5 * 128 * 7
    assert FourierMixer(8, (16,), mix_channels=False).extra_flops(3) == 3 * 8 * 5 * 16 * 4


def test_registered_with_its_options(mixbench_only) -> None:
    registry = mixbench_only("mixbench-fourier")
    entry = registry.get("mixer", "fourier")
    assert set(entry.options) == {"mix_channels", "norm"}
    module = mixbench.create_mixer("fourier", dim=8, grid=(4, 4), options={"norm": "backward"})
    assert isinstance(module, FourierMixer) and module.norm == "backward"


class LeakyFourier(FourierMixer):
    """The bug the tutorial shows: ``fftn`` without ``dim=`` transforms the batch axis too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fftn(x, norm="ortho").real


class LeakyPlugin:
    @mixbench.hookimpl
    def register_mixers(self, register):  # type: ignore[no-untyped-def]
        register("leaky_fourier", LeakyFourier)


def test_the_kit_catches_a_transform_over_the_batch(mixbench_only) -> None:
    from mixbench import plugins

    mixbench_only("mixbench-fourier")
    plugins.register_plugin(LeakyPlugin(), "leaky")
    with pytest.raises(ContractError) as caught:
        check_mixer("leaky_fourier", grids=[(64,)])
    assert caught.value.check == "batch independence"
    assert "mixes information across the batch dimension" in str(caught.value)
    assert isinstance(LeakyFourier(4, (4,)), nn.Module)
