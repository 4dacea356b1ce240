"""IdentityFormer's token mixer: no mixing at all, the floor every other mixer must beat.

Yu et al. 2023, "MetaFormer Baselines for Vision", https://arxiv.org/abs/2210.13452.

With the identity as token mixer, tokens never exchange information inside a block; the
model still learns through the channel MLPs (and, in the hierarchical layout, through the
convolutional downsampling between stages). The gap between a mixer and this floor is what
the mixer itself contributes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import mixbench


class Identity(nn.Module):
    """Returns its input unchanged; no parameters, no FLOPs, any grid.

    Options:
        causal: accepted so that causal tasks can use the floor too; the identity never
            looks at another token, so it is causal either way.
    """

    def __init__(self, dim: int, grid: tuple[int, ...], *, causal: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.grid = tuple(int(size) for size in grid)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@mixbench.hookimpl
def register_mixers(register: Callable[..., object]) -> None:
    register(
        "identity",
        Identity,
        description="IdentityFormer: no token mixing (the floor of the comparison)",
        complexity="O(1)",
        paper="Yu et al. 2023, MetaFormer Baselines for Vision, https://arxiv.org/abs/2210.13452",
    )
