"""PoolFormer's pooling mixer: average of each token's neighbourhood, minus the token itself.

Yu et al. 2022, "MetaFormer Is Actually What You Need for Vision",
https://arxiv.org/abs/2111.11418.

The paper's point is that the MetaFormer shell, not the token mixer, does most of the work:
a parameter-free local average already competes with attention. The subtraction of the
input is there because the block adds the mixer's output back to its input (a residual);
without it the mixer would pass the token through twice.

``count_include_pad=False`` makes the average over the neighbours that exist: at a corner a
3 x 3 pool averages 4 tokens, not 9 with five zeros. 2-D grids pool over (H, W), sequences
over N (``avg_pool1d``), 3-D grids over all three axes.

``causal=True`` (sequences only) makes the window one-sided: token t averages itself and the
``pool_size - 1`` tokens before it (fewer at the start, again without padding), minus itself,
so nothing after t reaches it. On a 2-D or 3-D grid no order is given in which "before"
would mean anything to a local average, so causal pooling there is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import mixbench
from mixbench import FlopTally
from mixbench.errors import IncompatibleError, OptionError

_POOLS: dict[int, Callable[..., torch.Tensor]] = {
    1: F.avg_pool1d,
    2: F.avg_pool2d,
    3: F.avg_pool3d,
}


class Pooling(nn.Module):
    """``avg_pool(x, pool_size, stride=1, padding=pool_size // 2) - x`` over the token grid.

    Options:
        pool_size: neighbourhood width along each axis; odd, so the grid keeps its size.
            The paper's 3 by default. (Causal pooling takes any positive width.)
        causal: on a 1-D grid, average token t with the ``pool_size - 1`` tokens before it
            only; refused (IncompatibleError) on 2-D and 3-D grids.
    """

    def __init__(
        self, dim: int, grid: tuple[int, ...], *, pool_size: int = 3, causal: bool = False
    ) -> None:
        super().__init__()
        self.grid = tuple(int(size) for size in grid)
        if causal and pool_size < 1:
            raise OptionError(f"mixer 'pooling': pool_size must be >= 1, got {pool_size}")
        if not causal and (pool_size < 1 or pool_size % 2 == 0):
            raise OptionError(
                f"mixer 'pooling': pool_size must be a positive odd number (a stride-1 pool of "
                f"even width would change the grid's size), got {pool_size}"
            )
        if len(self.grid) not in _POOLS or any(size < 1 for size in self.grid):
            raise IncompatibleError(
                f"mixer 'pooling' works on 1-D to 3-D grids of positive size, got grid {self.grid}"
            )
        if causal and len(self.grid) != 1:
            raise IncompatibleError(
                f"mixer 'pooling': causal pooling is defined on sequences (1-D grids); grid "
                f"{self.grid} has no token order for a one-sided window to follow"
            )
        self.dim = dim
        self.pool_size = pool_size
        self.causal = causal
        self.num_tokens = math.prod(self.grid)
        self._pool = _POOLS[len(self.grid)]
        # Causal: how many tokens each position's window really holds (fewer at the start).
        self.window_counts: torch.Tensor | None
        counts = torch.arange(1, self.num_tokens + 1).clamp(max=pool_size).float()
        self.register_buffer("window_counts", counts if causal else None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        if tokens != self.num_tokens:
            raise IncompatibleError(
                f"mixer 'pooling' was built for grid {self.grid} ({self.num_tokens} tokens), "
                f"got {tokens} tokens"
            )
        # (B, N, C) -> (B, C, *grid), a view with channels last in memory: the pool runs
        # its channels-last kernel (vectorised over C) and no layout is copied either way.
        spatial = x.transpose(1, 2).reshape(batch, channels, *self.grid)
        if self.causal:
            return self._causal_average(spatial).sub_(spatial).transpose(1, 2)
        pooled = self._pool(
            spatial,
            self.pool_size,
            stride=1,
            padding=self.pool_size // 2,
            count_include_pad=False,
        )
        # The input is subtracted in place, into the pool's own output (its backward needs
        # neither): one large buffer per forward, not two.
        return pooled.sub_(spatial).reshape(batch, channels, tokens).transpose(1, 2)

    def _causal_average(self, sequence: torch.Tensor) -> torch.Tensor:
        """(B, C, N) -> mean of each token and the ``pool_size - 1`` before it.

        Zeros padded on the left only, so a window never reaches past its token; the pool's
        mean over ``pool_size`` slots times ``pool_size`` is the window's sum, divided by the
        number of real tokens in it (no padding counted, as in the bidirectional pool).
        """
        padded = F.pad(sequence, (self.pool_size - 1, 0))
        assert self.window_counts is not None  # built with causal=True
        scale = self.pool_size / self.window_counts.to(padded.dtype)
        return F.avg_pool1d(padded, self.pool_size, stride=1).mul_(scale)

    def model_flops(self, batch_size: int) -> FlopTally:
        """FLOPs per forward, and the backward's, all elementwise (docs/conventions.md).

        Per channel and output token with k in-bounds neighbours: k - 1 additions and
        1 division for the average, 1 subtraction of the input, so k + 1 FLOPs; backward,
        the same (the average's gradient is shared out to its k inputs). The number of
        in-bounds neighbours factorises over axes, so the sum over tokens is the product
        over axes of each axis's sum (exact, edges included). Causal windows hold
        min(t + 1, pool_size) tokens at position t.
        """
        if self.causal:
            neighbours = sum(min(t + 1, self.pool_size) for t in range(self.num_tokens))
        else:
            radius = self.pool_size // 2
            neighbours = 1
            for size in self.grid:
                neighbours *= sum(
                    min(size - 1, position + radius) - max(0, position - radius) + 1
                    for position in range(size)
                )
        return (
            FlopTally()
            .elementwise("average", batch_size * self.dim * neighbours)
            .elementwise("subtract input", batch_size * self.dim * self.num_tokens)
        )

    def extra_flops(self, batch_size: int) -> FlopTally:
        """``FlopCounterMode`` counts none of the work, and what runs is the model (no
        padded slot is summed), so the executed extras are :meth:`model_flops`."""
        return self.model_flops(batch_size)

    def runtime_info(self) -> dict[str, object]:
        """The pooling window used, and that edge averages exclude the padding."""
        return {
            "pool_size": self.pool_size,
            "padding": [self.pool_size - 1, 0] if self.causal else self.pool_size // 2,
            "count_include_pad": False,
            "causal": self.causal,
        }


@mixbench.hookimpl
def register_mixers(register: Callable[..., object]) -> None:
    register(
        "pooling",
        Pooling,
        description="PoolFormer: local average pooling minus the input (no parameters)",
        complexity="O(N)",
        paper=(
            "Yu et al. 2022, MetaFormer Is Actually What You Need for Vision, "
            "https://arxiv.org/abs/2111.11418"
        ),
    )
