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

``causal=True`` makes the token mixing lower-triangular through the hidden layer, with the
masks of MADE (Germain et al. 2015, https://arxiv.org/abs/1502.03509): hidden unit j is
given the position p(j) = floor(j * N / hidden); it reads tokens 0..p(j), and output token
t reads the hidden units with p(j) <= t. Output t then depends on tokens up to t and never
on a later one (grid order), and every output depends on token 0. Masked weights stay in
the parameters (multiplied by zero), so the model keeps its size and its init.
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
        causal: mask both layers so that token t mixes tokens 0..t only (MADE masks).
    """

    def __init__(
        self, dim: int, grid: tuple[int, ...], *, expansion: float = 0.5, causal: bool = False
    ) -> None:
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
        self.causal = causal
        self.in_mask: torch.Tensor | None
        self.out_mask: torch.Tensor | None
        in_mask, out_mask = causal_masks(self.num_tokens, self.hidden) if causal else (None, None)
        self.register_buffer("in_mask", in_mask, persistent=False)
        self.register_buffer("out_mask", out_mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.num_tokens:
            raise IncompatibleError(
                f"mixer 'mlp' was built for grid {self.grid} ({self.num_tokens} tokens) and "
                f"cannot mix {x.shape[1]} tokens; build it for that grid"
            )
        w1, w2 = self.fc1.weight, self.fc2.weight
        if self.in_mask is not None and self.out_mask is not None:
            w1, w2 = w1 * self.in_mask, w2 * self.out_mask
        hidden = token_linear(x, w1, self.fc1.bias)
        return token_linear(F.gelu(hidden), w2, self.fc2.bias)

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
        return {"tokens": self.num_tokens, "hidden": self.hidden, "causal": self.causal}


class _TokenLinear(torch.autograd.Function):
    """``W @ x[b] + bias`` for every sample b of x (B, N_in, C), W (N_out, N_in).

    Forward: one batched matmul with the weight broadcast over the batch and the bias added
    by the same kernel (baddbmm), so the tokens need no transpose and the output comes out
    (B, N_out, C) contiguous. Backward is written out because autograd's own backward of a
    broadcast weight builds a (B, N_out, N_in) gradient and then sums it over the batch:
    B copies of the weight at peak, which for the token MLP at N = 4096 is hundreds of MiB.
    Here the per-sample products are summed a few samples at a time, never more of them at
    once than ``PER_SAMPLE_BUDGET`` times the input's size.
    The backward uses differentiable operations only, so second derivatives (Hessian-vector
    products for sharpness) still work.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[no-untyped-def,override]
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias[:, None], weight.expand(x.shape[0], -1, -1), x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def,override]
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(weight.t().expand(x.shape[0], -1, -1), grad)  # contiguous
        if ctx.needs_input_grad[1]:  # the sum over samples of grad[b] @ x[b]^T
            # Batched over as many samples at once as keep the per-sample products within
            # the budget: sample by sample at large N, where each is a big matmul anyway.
            step = max(1, PER_SAMPLE_BUDGET * x.numel() // weight.numel())
            for start in range(0, x.shape[0], step):
                part = torch.bmm(grad[start : start + step], x[start : start + step].mT).sum(0)
                if grad_weight is None:
                    grad_weight = part
                elif torch.is_grad_enabled():  # a double backward: stay out of place
                    grad_weight = grad_weight + part
                else:
                    grad_weight += part
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=(0, 2))
        return grad_x, grad_weight, grad_bias


def token_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A linear map along the token axis of x (B, N_in, C): (B, N_out, C).

    While the per-sample weight gradients of all B samples together take at most twice the
    input's size, autograd's own backward (one bmm, then a sum) is the fastest and costs
    no more than the activations the step holds anyway; beyond that, `_TokenLinear`.
    """
    if x.shape[0] * weight.numel() <= PER_SAMPLE_BUDGET * x.numel():
        return torch.baddbmm(bias[:, None], weight.expand(x.shape[0], -1, -1), x)
    out: torch.Tensor = _TokenLinear.apply(x, weight, bias)
    return out


PER_SAMPLE_BUDGET = 2  # per-sample weight gradients held at once, in multiples of the input


def causal_masks(tokens: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MADE masks: (hidden, tokens) for the first layer, (tokens, hidden) for the second.

    Hidden unit j sits at position floor(j * tokens / hidden); it reads tokens at or before
    it, and is read by output tokens at or after it.
    """
    position = torch.arange(hidden) * tokens // hidden  # (hidden,), starts at 0
    token = torch.arange(tokens)
    in_mask = (token[None, :] <= position[:, None]).float()
    out_mask = (position[None, :] <= token[:, None]).float()
    return in_mask, out_mask


@mixbench.hookimpl
def register_mixers(register: Callable[..., object]) -> None:
    register(
        "mlp",
        TokenMLP,
        description="MLP-Mixer token-mixing MLP (fixed token count)",
        complexity="O(N^2)",
        paper="Tolstikhin et al. 2021, MLP-Mixer, https://arxiv.org/abs/2105.01601",
    )
