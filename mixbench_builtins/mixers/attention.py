"""Multi-head self-attention: the O(N^2) baseline every other mixer is compared against.

Vaswani et al. 2017, "Attention Is All You Need", https://arxiv.org/abs/1706.03762.

Written nanoGPT-style: one fused qkv projection, ``scaled_dot_product_attention`` for the
attention itself, one output projection. No mask is ever passed, so PyTorch is free to pick
its fused kernel; which kernel ran is recorded in :meth:`Attention.runtime_info`, because it
changes peak memory completely (the CPU flash kernel never materialises the N x N scores,
the math path does).

FLOP accounting (docs/conventions.md): :meth:`Attention.model_flops` states the operation
(projections, QK^T, scale, softmax, PV), the same whichever kernel runs.
:meth:`Attention.extra_flops` adds to the executed count what ``FlopCounterMode`` does not
see: the scale and softmax, the flash backward's recomputation of the softmax, and the
attention matmuls themselves when the CPU flash kernel ran uncounted
(``aten._scaled_dot_product_flash_attention_for_cpu`` is missing from torch 2.13's
``flop_registry``; ``mixbench.measure.flops`` registers it, other callers may not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

import mixbench
from mixbench import FlopTally
from mixbench.errors import IncompatibleError, OptionError

# FLOPs per score that the flash backward spends recomputing the softmax weights from the
# saved logsumexp: scale, subtract, exp.
FLASH_RECOMPUTE_PER_SCORE = 3

SdpaCall = tuple[tuple[int, ...], torch.dtype, torch.device, bool, float]


class Attention(nn.Module):
    """Multi-head self-attention over all N tokens of any grid (the grid is only a shape).

    Options:
        num_heads: number of heads; must divide ``dim``. The default 4 gives head_dim 16 at
            the benchmark's usual width 64, and 16..128 across the s12 stages.
        qkv_bias: add a bias to the fused q, k, v projection (off, as in most modern models).
        dropout: dropout on the attention weights and on the output projection, in training
            mode only. Note that on CPU a non-zero attention dropout forces SDPA's math path.
        backend: ``auto`` lets PyTorch choose the SDPA kernel (on CPU a flash kernel whose
            memory grows as O(N)); ``math`` forces the textbook kernel that materialises the
            N x N score matrix, to measure attention as most implementations run it.
        causal: no look-ahead: token t attends to tokens 0..t in grid order (SDPA's
            ``is_causal``, a flag rather than a mask, so the fused kernels still run).
    """

    def __init__(
        self,
        dim: int,
        grid: tuple[int, ...],
        *,
        num_heads: int = 4,
        qkv_bias: bool = False,
        dropout: float = 0.0,
        backend: Literal["auto", "math"] = "auto",
        causal: bool = False,
    ) -> None:
        super().__init__()
        if num_heads < 1:
            raise OptionError(f"mixer 'attention': num_heads must be >= 1, got {num_heads}")
        if dim % num_heads != 0:
            raise IncompatibleError(
                f"mixer 'attention': num_heads={num_heads} does not divide dim={dim} "
                f"(grid {tuple(grid)})"
            )
        if not 0.0 <= dropout < 1.0:
            raise OptionError(f"mixer 'attention': dropout must be in [0, 1), got {dropout}")
        self.dim = dim
        self.grid = tuple(grid)
        self.num_tokens = _prod(self.grid)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.backend = backend
        self.causal = causal
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_dropout = nn.Dropout(dropout)
        self._last_call: SdpaCall | None = None  # shape, dtype, device, grad, dropout
        self._backend_choices: dict[SdpaCall, str] = {}
        self._last_tokens = self.num_tokens
        self._last_device_type = "cpu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        # (B, N, 3C) -> three tensors of shape (B, heads, N, head_dim)
        q, k, v = (
            self.qkv(x)
            .view(batch, tokens, 3, self.num_heads, self.head_dim)
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        dropout_p = self.dropout if self.training else 0.0
        self._record_backend(q, k, v, dropout_p)
        if self.backend == "math":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(SDPBackend.MATH):
                y = F.scaled_dot_product_attention(
                    q, k, v, dropout_p=dropout_p, is_causal=self.causal
                )
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=self.causal)
        y = y.transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj_dropout(self.proj(y))

    def _record_backend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float
    ) -> None:
        """Remember what SDPA was called with. Which kernel that picks is asked only when
        :attr:`_last_backend` is read (runtime_info, extra_flops), outside the timed step:
        the peer (timm) asks nothing per forward, so neither does this hot path."""
        self._last_tokens = q.shape[-2]
        self._last_device_type = q.device.type
        self._last_call = (tuple(q.shape), q.dtype, q.device, q.requires_grad, dropout_p)

    @property
    def _last_backend(self) -> str | None:
        """The SDPA kernel PyTorch picks for the last forward's inputs, asked once per
        input description. ``torch._fused_sdp_choice`` is the function SDPA itself consults;
        fresh tensors of the same shape, dtype, device and grad mode get the same answer
        (the projections' q, k, v views also have a unit last stride)."""
        if self.backend == "math":
            return "math"
        if self._last_call is None:
            return None
        choice = self._backend_choices.get(self._last_call)
        if choice is None:
            shape, dtype, device, requires_grad, dropout_p = self._last_call
            q, k, v = (
                torch.empty(shape, dtype=dtype, device=device, requires_grad=requires_grad)
                for _ in range(3)
            )
            try:
                from torch.nn.attention import SDPBackend

                fused = torch._fused_sdp_choice(q, k, v, None, dropout_p, self.causal)
                choice = SDPBackend(fused).name.lower()
            except Exception:  # private API: record "unknown" rather than fail
                choice = "unknown"
            self._backend_choices[self._last_call] = choice
        return choice

    def runtime_info(self) -> dict[str, object]:
        """Facts about the last forward: the SDPA kernel that ran, and that no mask was used
        (so nothing here sends SDPA to the N x N math path except attention dropout)."""
        return {
            "sdpa_mask": False,
            "causal": self.causal,
            "sdpa_backend": self._last_backend,
            "sdpa_flops_uncounted": self._sdpa_uncounted(),
        }

    def _sdpa_uncounted(self) -> bool:
        """Whether FlopCounterMode missed the attention matmuls of the last forward."""
        if self._last_backend != "flash_attention" or self._last_device_type != "cpu":
            return False
        from torch.utils.flop_counter import flop_registry

        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu not in flop_registry

    def model_flops(self, batch_size: int) -> FlopTally:
        """The operation on N tokens (the last forward's N; the grid's before any), per
        forward, with S = batch_size * num_heads * N^2 scores: the qkv and output
        projections, QK^T and PV (S * head_dim multiply-adds each), the 1/sqrt(d) scale
        (1 per score) and the softmax. Linear-layer bias adds and dropout are not counted.
        Causal attention needs only the N (N + 1) / 2 pairs with the key at or before the
        query."""
        rows, dim, tokens = batch_size * self._last_tokens, self.dim, self._last_tokens
        pairs = tokens * (tokens + 1) // 2 if self.causal else tokens**2
        scores = batch_size * self.num_heads * pairs
        return (
            FlopTally()
            .matmul("qkv projection", rows * dim * 3 * dim)
            .matmul("QK^T", scores * self.head_dim)
            .elementwise("scale", scores)
            .softmax("softmax", scores)
            .matmul("PV", scores * self.head_dim)
            .matmul("output projection", rows * dim * dim)
        )

    def extra_flops(self, batch_size: int) -> FlopTally:
        """Executed work per forward (and its backward) that ``FlopCounterMode`` does not
        count: the scale and softmax of every score; after the flash kernel, the backward's
        recomputation of the softmax weights (``FLASH_RECOMPUTE_PER_SCORE``); and when that
        kernel ran uncounted, its matmuls (QK^T and PV forward, five of their size backward:
        QK^T again, then the gradients of P, V, Q and K)."""
        scores = batch_size * self.num_heads * self._last_tokens**2
        tally = FlopTally().elementwise("scale", scores).softmax("softmax", scores)
        if self._last_backend == "flash_attention":
            tally.add("flash backward: softmax recomputed", 0, FLASH_RECOMPUTE_PER_SCORE * scores)
        if self._sdpa_uncounted():
            matmul = 2 * scores * self.head_dim
            tally.add("QK^T, PV (uncounted flash kernel)", 2 * matmul, 5 * matmul)
        return tally


def _prod(values: tuple[int, ...]) -> int:
    result = 1
    for value in values:
        result *= value
    return result


@mixbench.hookimpl
def register_mixers(register: Callable[..., object]) -> None:
    register(
        "attention",
        Attention,
        description="Multi-head self-attention (scaled_dot_product_attention)",
        complexity="O(N^2)",
        paper="Vaswani et al. 2017, https://arxiv.org/abs/1706.03762",
    )
