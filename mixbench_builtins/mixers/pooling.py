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

The bidirectional pool's backward is written out (``_AverageMinusInput``) because its
gradient is a pool too. With the average written P = D^-1 S (S the symmetric box sum with
zero padding, D each token's count of in-bounds neighbours), the gradient of P x - x is
S (D^-1 g) - g: g scaled by a grid-shaped table fixed at construction, pooled with the
pool's forward kernel, minus g in place. Autograd's backward instead zero-fills a gradient
buffer and (on CPU) scatters into it (the pool's backward), negates g for the subtraction
and adds the two: one more pass over the (B, C, N) gradient.
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

    The bidirectional pool trains through ``_AverageMinusInput``, whose backward needs only
    a table of the grid's inverse window counts (a non-persistent buffer, so the state dict
    is unchanged); the causal pool trains through autograd.

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
        # Causal: how many tokens each position's window really holds (fewer at the start).
        self.window_counts: torch.Tensor | None
        counts = torch.arange(1, self.num_tokens + 1).clamp(max=pool_size).float()
        self.register_buffer("window_counts", counts if causal else None, persistent=False)
        # Bidirectional: pool_size ** ndim over each token's in-bounds window count, what
        # the backward scales the gradient by (see _AverageMinusInput).
        self.scaled_inverse_count: torch.Tensor | None
        self.register_buffer(
            "scaled_inverse_count",
            None if causal else _scaled_inverse_count(self.grid, pool_size),
            persistent=False,
        )

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
        assert self.scaled_inverse_count is not None  # built with causal=False
        mixed: torch.Tensor = _AverageMinusInput.apply(
            spatial, self.scaled_inverse_count, self.pool_size
        )
        return mixed.reshape(batch, channels, tokens).transpose(1, 2)

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
            neighbours = math.prod(sum(_window_counts(size, self.pool_size)) for size in self.grid)
        return (
            FlopTally()
            .elementwise("average", batch_size * self.dim * neighbours)
            .elementwise("subtract input", batch_size * self.dim * self.num_tokens)
        )

    def extra_flops(self, batch_size: int) -> FlopTally:
        """``FlopCounterMode`` counts none of the work, and what runs is the model (no
        padded slot is summed, forward or backward), so the executed extras are
        :meth:`model_flops`. Not counted: the written-out backward's scale by the table
        (pool_size ** ndim / k), whose product with its pool's division by pool_size ** ndim
        is the model's one division by k, so one multiply per element of the backward is
        left out (as autograd's negation of the gradient was before it)."""
        return self.model_flops(batch_size)

    def runtime_info(self) -> dict[str, object]:
        """The pooling window used, and that edge averages exclude the padding."""
        return {
            "pool_size": self.pool_size,
            "padding": [self.pool_size - 1, 0] if self.causal else self.pool_size // 2,
            "count_include_pad": False,
            "causal": self.causal,
        }


def _window_counts(size: int, pool_size: int) -> list[int]:
    """How many in-bounds tokens the centred window of each position along one axis holds."""
    radius = pool_size // 2
    return [
        min(size - 1, position + radius) - max(0, position - radius) + 1 for position in range(size)
    ]


def _scaled_inverse_count(grid: tuple[int, ...], pool_size: int) -> torch.Tensor:
    """``pool_size ** len(grid)`` over each token's window count, shaped like the grid.

    A window's count is the product of its per-axis counts, so the table is an outer
    product. The numerator undoes the divisor of a pool that counts the padding, which
    ``avg_pool1d`` cannot override.
    """
    count = torch.ones(())
    for size in grid:
        count = count[..., None] * torch.tensor(_window_counts(size, pool_size))
    return pool_size ** len(grid) / count


class _AverageMinusInput(torch.autograd.Function):
    """``avg_pool(x, count_include_pad=False) - x`` on (B, C, *grid), with its derivatives.

    Forward: the pool, then the input subtracted in place into the pool's own output (one
    large buffer, not two); a channels-last input runs the pool's channels-last kernel.
    Backward: the average is P = D^-1 S, so the input gradient is S (D^-1 g) - g, computed
    as a pool that counts the padding (it divides by pool_size ** ndim) of g times the
    table pool_size ** ndim / D, minus g in place: three passes (scale, pool, subtract)
    where autograd's makes four on CPU (zero-fill and scatter, negate, add), and nothing
    saved from the forward but the table. Differentiable operations only, so second
    derivatives (Hessian-vector products for sharpness and SAM) still work. The map is
    linear, so its forward-mode derivative is the forward applied to the tangent; with
    ``setup_context`` and a generated vmap rule, ``torch.func`` transforms work as they do
    on the plain pool.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(spatial, scaled_inverse_count, pool_size):  # type: ignore[no-untyped-def,override]
        pooled = _POOLS[spatial.dim() - 2](
            spatial, pool_size, stride=1, padding=pool_size // 2, count_include_pad=False
        )
        return pooled.sub_(spatial)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def,override]
        _, scaled_inverse_count, pool_size = inputs
        ctx.save_for_backward(scaled_inverse_count)
        ctx.pool_size = pool_size

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def,override]
        (scaled_inverse_count,) = ctx.saved_tensors
        pool_size = ctx.pool_size
        spread = _POOLS[grad.dim() - 2](
            grad * scaled_inverse_count.to(grad),  # the gradient's dtype and device
            pool_size,
            stride=1,
            padding=pool_size // 2,
            count_include_pad=True,
        )
        return spread.sub_(grad), None, None

    @staticmethod
    def jvp(ctx, tangent, _table_tangent, _pool_size_tangent):  # type: ignore[no-untyped-def,override]
        return _AverageMinusInput.forward(tangent, None, ctx.pool_size)


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
