"""FNet's Fourier token mixer: the real part of a discrete Fourier transform.

Lee-Thorp et al. 2021, "FNet: Mixing Tokens with Fourier Transforms",
https://arxiv.org/abs/2105.03824.

FNet replaces self-attention with ``Re(FFT_tokens(FFT_channels(x)))``: no parameters, every
token sees every other in O(N log N), and the paper reports most of BERT's accuracy at a
fraction of the cost. The point of measuring it in mixbench's shell is the same as
PoolFormer's: how much of a model's quality comes from the mixer at all?

Choices this implementation makes, and why:

* **2-D grids.** On an image grid the transform runs over H, W and the channels (a 3-D DFT),
  not over the flattened token sequence: row-major flattening would make the last token of
  one row the neighbour of the first of the next, a structure the image does not have, while
  the DFT over (H, W) respects the grid's two axes. On a sequence it is FNet's 2-D DFT over
  (N, channels). In general: every grid axis plus the channel axis, never the batch.
* **Scale.** ``norm="ortho"`` (the unitary DFT) by default, so the output has the input's
  scale whatever the grid size; the paper uses the unnormalised transform and relies on the
  post-norm that follows. ``norm="backward"`` reproduces the paper exactly.
* **Low precision.** ``torch.fft`` has no bfloat16 kernels (and float16 only on CUDA at powers
  of two), so those inputs are transformed in float32 and the result cast back.
* **FLOPs.** ``FlopCounterMode`` does not count FFTs, so ``extra_flops`` gives the analytic
  count (see there).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import mixbench
import torch
from torch import nn

Norm = Literal["ortho", "backward", "forward"]


class FourierMixer(nn.Module):
    """``Re(DFT(x))`` over the token grid and (optionally) the channels; no parameters.

    Options:
        mix_channels: transform over the channel axis too (FNet); ``False`` transforms over
            the tokens only, each channel on its own.
        norm: ``"ortho"`` (default, scale-preserving), or torch's ``"backward"`` (FNet's
            unnormalised transform) or ``"forward"``.
    """

    def __init__(
        self, dim: int, grid: tuple[int, ...], *, mix_channels: bool = True, norm: Norm = "ortho"
    ) -> None:
        super().__init__()
        self.dim = dim
        self.grid = tuple(int(size) for size in grid)
        self.mix_channels = mix_channels
        self.norm = norm
        # Axes of the (B, *grid, C) view to transform: every grid axis, then the channels.
        axes = list(range(1, len(self.grid) + 1))
        self.axes = tuple(axes + [-1]) if mix_channels else tuple(axes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        grid_view = x.reshape(batch, *self.grid, channels)
        if grid_view.dtype not in (torch.float32, torch.float64):
            grid_view = grid_view.float()  # torch.fft has no bfloat16 kernels
        mixed = torch.fft.fftn(grid_view, dim=self.axes, norm=self.norm).real
        return mixed.reshape(batch, tokens, channels).to(x.dtype)

    def extra_flops(self, batch_size: int) -> int:
        """FLOPs per forward, which ``FlopCounterMode`` does not see.

        A complex FFT of M points costs the conventional ``5 M log2 M`` real FLOPs (the
        radix-2 Cooley-Tukey count FFTW's benchmarks report; mixed-radix sizes are close).
        A multi-dimensional transform over axes of sizes n_1..n_d is d passes of 1-D FFTs,
        ``sum_i (M / n_i) * 5 n_i log2 n_i = 5 M log2 M`` with M = n_1 ... n_d. Without
        channel mixing there are ``dim`` independent transforms of the grid. Taking the real
        part and the dtype conversions cost no arithmetic.
        """
        points = math.prod(self.grid) * (self.dim if self.mix_channels else 1)
        transforms = 1 if self.mix_channels else self.dim
        return round(batch_size * transforms * 5 * points * math.log2(points))

    def runtime_info(self) -> dict[str, Any]:
        """Which axes were transformed and how, for the result row."""
        return {"fft_axes": list(self.axes), "norm": self.norm, "mix_channels": self.mix_channels}


@mixbench.hookimpl
def register_mixers(register: Any) -> None:
    register(
        "fourier",
        FourierMixer,
        description="FNet: real part of the DFT over tokens and channels (no parameters)",
        complexity="O(N log N)",
        paper=(
            "Lee-Thorp et al. 2021, FNet: Mixing Tokens with Fourier Transforms, "
            "https://arxiv.org/abs/2105.03824"
        ),
    )
