"""MLP-Mixer's token-mixing MLP: one learned mixing of all N token positions, per channel.

Tolstikhin et al. 2021, "MLP-Mixer: An all-MLP Architecture for Vision",
https://arxiv.org/abs/2105.01601.

Linear(N, hidden) -> GELU -> Linear(hidden, N) along the token axis, with the weights shared
by every channel. Its weights are indexed by token position, so a mixer is built for one
grid and cannot take another: a forward with a different N is an IncompatibleError naming
the grid it was built for (the benchmark records such a cell as skipped).

Hidden width: MLP-Mixer ties its token-MLP width to the channel width (D_S = C / 2); here it
is ``round(N * expansion)``, tied to the token count, so the mixer's cost grows as O(N^2) as
the grid grows, the scaling the benchmark compares against attention, and the mixer's size
does not depend on which stage's width it sits in. The default 0.5 keeps the 56 x 56 stage
of s12 at about 9.8 M parameters per block.
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


class TokenMLP(nn.Module):
    """Two-layer MLP across the N tokens, shared across channels.

    Options:
        expansion: hidden width as a fraction of N (hidden = round(N * expansion), at
            least 1).
    """

    def __init__(self, dim: int, grid: tuple[int, ...], *, expansion: float = 0.5) -> None:
        super().__init__()
        if not expansion > 0:
            raise OptionError(f"mixer 'mlp': expansion must be > 0, got {expansion}")
        self.grid = tuple(int(size) for size in grid)
        self.num_tokens = math.prod(self.grid)
        if self.num_tokens < 1:
            raise IncompatibleError(f"mixer 'mlp': grid {self.grid} has no tokens")
        self.dim = dim
        self.hidden = max(1, round(self.num_tokens * expansion))
        self.fc1 = nn.Linear(self.num_tokens, self.hidden)
        self.fc2 = nn.Linear(self.hidden, self.num_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.num_tokens:
            raise IncompatibleError(
                f"mixer 'mlp' was built for grid {self.grid} ({self.num_tokens} tokens) and "
                f"cannot mix {x.shape[1]} tokens; build it for that grid"
            )
        # (B, N, C) -> (B, C, N): the Linear layers then act on the token axis.
        mixed: torch.Tensor = self.fc2(F.gelu(self.fc1(x.transpose(1, 2))))
        return mixed.transpose(1, 2)

    def model_flops(self, batch_size: int) -> FlopTally:
        """Per forward: the two token-axis matmuls (batch * dim rows of N x hidden each)
        and the GELU on every hidden unit of every channel (docs/conventions.md). What runs
        is exactly this, so the executed count agrees. Linear-layer bias adds are not
        counted, the same convention as the counter and the attention mixers."""
        rows = batch_size * self.dim
        return (
            FlopTally()
            .matmul("fc1", rows * self.num_tokens * self.hidden)
            .gelu("GELU", rows * self.hidden)
            .matmul("fc2", rows * self.hidden * self.num_tokens)
        )

    def extra_flops(self, batch_size: int) -> FlopTally:
        """What ``FlopCounterMode`` does not count (it counts the matmuls): the GELU."""
        return FlopTally().gelu("GELU", batch_size * self.dim * self.hidden)

    def runtime_info(self) -> dict[str, object]:
        """The token count the mixer is bound to and its hidden width."""
        return {"tokens": self.num_tokens, "hidden": self.hidden}


@mixbench.hookimpl
def register_mixers(register: Callable[..., object]) -> None:
    register(
        "mlp",
        TokenMLP,
        description="MLP-Mixer token-mixing MLP (fixed token count)",
        complexity="O(N^2)",
        paper="Tolstikhin et al. 2021, MLP-Mixer, https://arxiv.org/abs/2105.01601",
    )
