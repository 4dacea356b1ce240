"""Swin shifted-window attention: full attention inside fixed windows, O(N w^2) not O(N^2).

Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows",
https://arxiv.org/abs/2103.14030.

The grid is cut into non-overlapping windows of ``window_size`` tokens per axis (w x w on an
(H, W) grid, w tokens on an (N,) sequence). Each window runs multi-head attention with a
learnable relative position bias: one table entry per relative offset per head, (2w-1)^2
entries for 2-D windows and 2w-1 for 1-D. Odd blocks of a stage (``index % 2 == 1``) roll
the grid by w // 2 first, so that information crosses window borders from block to block;
tokens that the roll brought together from opposite edges of the grid are kept apart by an
attention mask, exactly as in the paper.

Decisions, all recorded in :meth:`WindowAttention.runtime_info`:

* **Grids not divisible by the window are padded** at the end of each axis up to a multiple
  of w; pad tokens are masked as keys and their outputs are cropped. The padded grid is then
  treated exactly like a larger grid (pad first, then roll), so the shift mask stays the
  paper's. A pad key is visible to its own query only, so no softmax row is ever empty.
  Padding, roll and partition are one fixed permutation of the tokens, computed once
  (:func:`window_layout`): the forward gathers whole rows of the qkv projection into
  window order and the attention output's rows back before the output projection (row
  gathers, the cheap kind), with no padded copy and no roll at run time. The shift/padding
  mask is one (num_windows, T, T) tensor broadcast over the batch, never copied per sample.
* **FLOPs**: :meth:`WindowAttention.model_flops` counts the pairs of real tokens sharing a
  window; the executed figure (:meth:`WindowAttention.extra_flops` and the counter) counts
  every padded window that ran (docs/conventions.md).
* **A window larger than the grid is an IncompatibleError**, never a silent clamp (Swin's
  reference code would shrink the window to ``min(resolution)``): ask for the window you
  want. A window equal to the grid along an axis is one window there; shifting along such
  an axis only cuts the window apart, so the shift is 0 on that axis (Swin's rule for its
  last 7x7 stage).
* **Attention is written out** (matmul, in-place add of bias and mask, softmax, matmul),
  as timm's Swin runs it by default, not handed to SDPA: with the bias as its mask, SDPA
  could only take its math path while the bias needs grad (adding per-call checks for fully
  masked rows, which cannot occur here), and without grad its fused CPU kernel was slower
  than the written-out path at Swin's window sizes (``nox -s peers``). Every window's
  w^d x w^d scores are materialised, in inference too; ``runtime_info`` records the path as
  ``sdpa_backend: "math"`` and ``FlopCounterMode`` sees both matmuls.
* **Causal** (``causal=True``, sequences only) is not a masked Swin window: a blocked window
  would let its first token see nothing before the block. It is sliding-window attention
  (as in Longformer and Mistral): token t attends to the ``window_size`` tokens t-w+1..t.
  The sequence is cut into blocks of w; each block's queries attend to its own block and the
  block before it (2w keys) under a band mask, so the cost stays O(N w). The relative
  position bias is the same table, read at offsets 0..w-1; there is nothing to shift. On a
  2-D grid "the previous w tokens" has no meaning a window can respect: refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import mixbench
from mixbench import FlopTally
from mixbench.errors import IncompatibleError, OptionError

# -- window geometry (pure functions of shapes; tested on their own) ---------------------------


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, *grid, C) with every grid size a multiple of w -> (B, num_windows, w^d, C).

    Windows are numbered row-major over the grid of windows, and tokens row-major inside
    each window, for any number d of grid axes.
    """
    batch, *grid, channels = x.shape
    d = len(grid)
    split: list[int] = [batch]
    for size in grid:
        split += [size // window_size, window_size]
    # (B, n1, w, n2, w, ..., C) -> (B, n1, n2, ..., w, w, ..., C)
    order = [0, *(1 + 2 * k for k in range(d)), *(2 + 2 * k for k in range(d)), 2 * d + 1]
    windows = x.reshape(*split, channels).permute(order)
    return windows.reshape(batch, -1, window_size**d, channels)


def window_reverse(windows: torch.Tensor, grid: Sequence[int], window_size: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B, num_windows, w^d, C) -> (B, *grid, C)."""
    batch, _, _, channels = windows.shape
    d = len(grid)
    counts = [size // window_size for size in grid]
    x = windows.reshape(batch, *counts, *([window_size] * d), channels)
    # (B, n1, n2, ..., w, w, ..., C) -> (B, n1, w, n2, w, ..., C)
    order = [0, *(i for k in range(d) for i in (1 + k, 1 + d + k)), 2 * d + 1]
    return x.permute(order).reshape(batch, *grid, channels)


def relative_position_index(window_size: int, ndim: int) -> torch.Tensor:
    """(w^d, w^d) index into the bias table: the relative offset of token i to token j.

    Offsets run from -(w-1) to w-1 per axis; shifted to 0..2w-2 and read as the digits of a
    base-(2w-1) number, first axis most significant (Swin's layout for 2-D).
    """
    axes = [torch.arange(window_size)] * ndim
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij")).flatten(1)  # (d, w^d)
    offsets = coords[:, :, None] - coords[:, None, :] + (window_size - 1)  # (d, w^d, w^d)
    index = torch.zeros(offsets.shape[1:], dtype=torch.long)
    for axis in range(ndim):
        index = index * (2 * window_size - 1) + offsets[axis]
    return index


def attention_allowed(
    grid: Sequence[int], window_size: int, shifts: Sequence[int]
) -> torch.Tensor | None:
    """(num_windows, w^d, w^d) bool: which query (row) may attend to which key (column).

    The grid is padded to a multiple of w and rolled back by ``shifts`` per axis. A token
    is *wrapped* along an axis when the roll moved it from the start of that axis to the
    end; two tokens of one window may attend to each other only when they are wrapped along
    the same axes (they were neighbours before the roll). Pad tokens are hidden as keys from
    every query but themselves. None when nothing is blocked (no shift, no padding).
    """
    padded = [math.ceil(size / window_size) * window_size for size in grid]
    if not any(shifts) and list(padded) == list(grid):
        return None
    region = torch.zeros(padded, dtype=torch.long)
    is_pad = torch.zeros(padded, dtype=torch.bool)
    for axis, (size, total, shift) in enumerate(zip(grid, padded, shifts, strict=True)):
        position = torch.arange(total)  # position after the roll
        source = (position + shift) % total  # position before the roll
        view = [1] * len(padded)
        view[axis] = total
        wrapped = (position >= total - shift) if shift else torch.zeros(total, dtype=torch.bool)
        region = region + (wrapped.long() << axis).view(view)
        is_pad = is_pad | (source >= size).view(view)
    region = window_partition(region[None, ..., None], window_size)[0, ..., 0]  # (nW, T)
    is_pad = window_partition(is_pad[None, ..., None], window_size)[0, ..., 0]
    same_region = region[:, :, None] == region[:, None, :]
    tokens = region.shape[1]
    key_visible = ~is_pad[:, None, :] | torch.eye(tokens, dtype=torch.bool)
    return same_region & key_visible


def window_layout(
    grid: Sequence[int], window_size: int, shifts: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each token goes: (window_order, token_order), both long.

    ``window_order`` (num_windows * w^d,) names the token in each window slot after padding
    the grid, rolling it back by ``shifts`` and partitioning it. Pad slots name token 0:
    they are masked as keys and their outputs are dropped, so any real token will do, and
    no padded copy of the input is ever made. ``token_order`` (N,) names the window slot
    each token's output sits in (the reverse: window_reverse, roll forward, crop).
    """
    padded = [math.ceil(size / window_size) * window_size for size in grid]
    axes = list(range(1, len(grid) + 1))
    real = tuple(slice(0, size) for size in grid)
    tokens = torch.zeros(padded, dtype=torch.long)  # pad slots: token 0
    tokens[real] = torch.arange(math.prod(grid)).view(*grid)
    tokens = torch.roll(tokens[None, ..., None], [-s for s in shifts], axes)
    window_order = window_partition(tokens, window_size).reshape(-1)
    slots = torch.arange(window_order.numel()).view(1, -1, window_size ** len(grid), 1)
    slots = torch.roll(window_reverse(slots, padded, window_size), list(shifts), axes)
    crop: tuple[int | slice, ...] = (0, *real, 0)
    token_order = slots[crop].reshape(-1)
    return window_order, token_order


def sliding_window_band(num_tokens: int, window_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal sliding-window geometry over blocks of w queries and 2w keys.

    Returns (allowed (num_blocks, w, 2w) bool, offset (w, 2w) long). Query i of block b is
    token b*w + i; key j is token (b-1)*w + j (the previous block, then the block itself).
    ``offset`` is query minus key position; a key is allowed when the offset is 0..w-1,
    it is a real token (not before the sequence), and it exists (pad tokens lie after every
    real query, so the band already hides them).
    """
    w = window_size
    blocks = math.ceil(num_tokens / w)
    offset = w + torch.arange(w)[:, None] - torch.arange(2 * w)[None, :]  # (w, 2w)
    band = (offset >= 0) & (offset < w)
    allowed = band.expand(blocks, w, 2 * w).clone()
    allowed[0, :, :w] = False  # block 0 has no block before it
    return allowed, offset


# -- the mixer ---------------------------------------------------------------------------------


class WindowAttention(nn.Module):
    """Multi-head attention within (shifted) windows of the token grid.

    Options:
        window_size: tokens per window along each axis (w x w windows on 2-D grids). Must
            not exceed any grid size; grids that are not multiples of it are padded.
        num_heads: number of heads; must divide ``dim``. The default 4 matches the
            ``attention`` mixer, so the two differ only in what each token can see.
        shift: roll odd blocks (``index % 2 == 1``) by window_size // 2, as Swin does.
            False keeps every block's windows fixed (no information crosses windows).
        causal: on a 1-D grid, sliding-window attention over the ``window_size`` tokens
            ending at each token (no look-ahead, no shift); refused on 2-D and 3-D grids.
    """

    def __init__(
        self,
        dim: int,
        grid: tuple[int, ...],
        *,
        index: int = 0,
        window_size: int = 7,
        num_heads: int = 4,
        shift: bool = True,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.grid = tuple(int(size) for size in grid)
        if window_size < 1:
            raise OptionError(f"mixer 'window': window_size must be >= 1, got {window_size}")
        if num_heads < 1:
            raise OptionError(f"mixer 'window': num_heads must be >= 1, got {num_heads}")
        if not self.grid or any(size < 1 for size in self.grid):
            raise IncompatibleError(f"mixer 'window': grid {self.grid} has no tokens")
        if window_size > min(self.grid):
            raise IncompatibleError(
                f"mixer 'window': window_size={window_size} is larger than grid {self.grid}; "
                f"use window_size <= {min(self.grid)}"
            )
        if dim % num_heads != 0:
            raise IncompatibleError(
                f"mixer 'window': num_heads={num_heads} does not divide dim={dim} "
                f"(grid {self.grid})"
            )
        if causal and len(self.grid) != 1:
            raise IncompatibleError(
                f"mixer 'window': causal window attention is defined on sequences (1-D grids): "
                f"on grid {self.grid} 'the previous window_size tokens' is no window"
            )
        self.causal = causal
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.index = index
        self.num_tokens = math.prod(self.grid)
        self.padded_grid = tuple(math.ceil(size / window_size) * window_size for size in grid)
        self.num_windows = math.prod(size // window_size for size in self.padded_grid)
        self.tokens_per_window: int = window_size ** len(self.grid)
        # Shift only odd blocks, and only along axes with more than one window.
        shifted_block = shift and index % 2 == 1 and not causal
        self.shifts = tuple(
            window_size // 2 if shifted_block and total > window_size else 0
            for total in self.padded_grid
        )

        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias = nn.Parameter(
            torch.empty((2 * window_size - 1) ** len(self.grid), num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias, std=0.02)
        # Geometry, not state: rebuilt from the options, so left out of the state dict.
        self.position_index: torch.Tensor
        self.window_order: torch.Tensor
        self.token_order: torch.Tensor
        self.register_buffer(
            "position_index",
            relative_position_index(window_size, len(self.grid)),
            persistent=False,
        )
        window_order, token_order = window_layout(self.grid, window_size, self.shifts)
        self.register_buffer("window_order", window_order, persistent=False)
        self.register_buffer("token_order", token_order, persistent=False)
        # Additive (nW, T, T) mask, 0 where attention is allowed and -inf where blocked;
        # a float buffer, so it follows the module's dtype.
        allowed = attention_allowed(self.grid, window_size, self.shifts)
        self.window_mask: torch.Tensor | None
        self.register_buffer(
            "window_mask",
            None
            if allowed is None
            else torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf")),
            persistent=False,
        )
        # Causal sliding windows: additive (blocks, 1, w, 2w) band mask and bias offsets.
        self.band_mask: torch.Tensor | None
        self.band_position_index: torch.Tensor | None
        band_mask = band_index = None
        if causal:
            allowed_band, offset = sliding_window_band(self.num_tokens, window_size)
            band_mask = torch.zeros(allowed_band.shape).masked_fill(~allowed_band, float("-inf"))
            band_mask = band_mask[:, None]
            band_index = offset.clamp(-(window_size - 1), window_size - 1) + window_size - 1
        self.register_buffer("band_mask", band_mask, persistent=False)
        self.register_buffer("band_position_index", band_index, persistent=False)
        self._last_backend: str | None = None  # "math" once a forward has run (see _attend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        if tokens != self.num_tokens:
            raise IncompatibleError(
                f"mixer 'window' was built for grid {self.grid} ({self.num_tokens} tokens), "
                f"got {tokens} tokens"
            )
        if self.causal:
            return self._sliding_forward(x)
        # q, k and v are per-token, so project the real tokens, then gather whole rows of the
        # projection into window order: one fixed permutation (padding, roll and partition at
        # once) over contiguous rows, the cheap case of index_select.
        heads, windows, size = self.num_heads, self.num_windows, self.tokens_per_window
        qkv = self.qkv(x).index_select(1, self.window_order)  # (B, nW * T, 3C)
        qkv = qkv.view(batch, windows, size, 3, heads, self.head_dim)
        if self.window_mask is None:  # each (B * nW, heads, T, head_dim), a view
            q, k, v = qkv.flatten(0, 1).permute(2, 0, 3, 1, 4)
        else:  # each (B, heads * nW, T, head_dim), see _attention_bias; three tensors, so
            # that what attention keeps for its backward does not pin the other two
            q, k, v = (
                part.reshape(batch, -1, size, self.head_dim)
                for part in qkv.permute(3, 0, 4, 1, 2, 5)
            )
        del qkv  # the projection's output, gathered into q, k and v
        y = self._attend(q, k, v, self._attention_bias())
        if self.window_mask is not None:  # heads-major back to (B * nW, heads, T, head_dim)
            y = y.view(batch, heads, windows, size, self.head_dim).transpose(1, 2)
        y = y.transpose(-3, -2).reshape(batch, -1, channels).index_select(1, self.token_order)
        out: torch.Tensor = self.proj(y)
        return out

    def _sliding_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Causal sliding-window attention: blocks of w queries against 2w keys.

        The blocks sit in the head axis, (B, blocks * heads), so the banded bias
        (1, blocks * heads, w, 2w) is built once per forward and broadcasts over the batch
        instead of being copied per sample."""
        assert self.band_mask is not None and self.band_position_index is not None
        batch, tokens, channels = x.shape
        w, blocks, heads = self.window_size, self.band_mask.shape[0], self.num_heads
        qkv = F.pad(self.qkv(x), (0, 0, 0, blocks * w - tokens))  # pad tokens at the end
        q, k, v = (
            qkv.view(batch, blocks, w, 3, heads, self.head_dim).permute(3, 0, 1, 4, 2, 5).unbind(0)
        )  # each (B, blocks, heads, w, head_dim)

        def with_previous_block(t: torch.Tensor) -> torch.Tensor:
            previous = torch.cat([torch.zeros_like(t[:, :1]), t[:, :-1]], dim=1)
            return torch.cat([previous, t], dim=3).flatten(1, 2)  # (B, blocks * h, 2w, d)

        q = q.flatten(1, 2)
        k, v = with_previous_block(k), with_previous_block(v)
        bias = self.relative_position_bias[self.band_position_index.view(-1)]
        bias = bias.view(w, 2 * w, heads).permute(2, 0, 1)[None]  # (1, h, w, 2w)
        mask = (bias + self.band_mask).reshape(1, blocks * heads, w, 2 * w)
        y = self._attend(q, k, v, mask)  # (B, blocks * h, w, d)
        y = y.reshape(batch, blocks, heads, w, self.head_dim).permute(0, 1, 3, 2, 4)
        out: torch.Tensor = self.proj(y.reshape(batch, blocks * w, channels)[:, :tokens])
        return out

    def _attention_bias(self) -> torch.Tensor:
        """The additive mask: relative position bias, -inf where attention is blocked.

        Without a mask the bias (1, h, T, T) broadcasts over the B * nW windows. With one,
        the windows sit in the head axis (heads-major, (B, h * nW)), so the masked bias
        (1, h * nW, T, T) is built once per forward and broadcasts over the batch, instead
        of being copied per sample."""
        size = self.tokens_per_window
        bias = self.relative_position_bias[self.position_index.view(-1)]
        bias = bias.view(size, size, self.num_heads).permute(2, 0, 1)  # (h, T, T)
        if self.window_mask is None:
            return bias[None]
        return (bias.contiguous()[:, None] + self.window_mask).view(1, -1, size, size)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """softmax(q k^T / sqrt(d) + mask) v, written out: matmul, in-place mask add,
        softmax, matmul (SDPA's math path, as timm's Swin runs it by default).

        Not SDPA: while the bias needs grad SDPA could only take its math path, which adds
        per-call checks for fully masked rows (none can occur here: every query sees
        itself); without grad its fused CPU kernel was slower than this at Swin's window
        sizes (``nox -s peers``). Every window's scores are materialised."""
        self._last_backend = "math"
        scores = torch.matmul(q * self.head_dim**-0.5, k.transpose(-2, -1)).add_(mask)
        return torch.matmul(scores.softmax(-1), v)

    def runtime_info(self) -> dict[str, object]:
        """The window geometry this block really used, and the attention path of the last
        forward (None before the first; always the written-out "math" path)."""
        if self.causal:
            return {
                "causal": True,
                "attention": "sliding window over the window_size tokens ending at each token",
                "window_size": self.window_size,
                "grid": list(self.grid),
                "query_blocks": int(self.band_mask.shape[0]) if self.band_mask is not None else 0,
                "keys_per_query_block": 2 * self.window_size,
                "num_heads": self.num_heads,
                "sdpa_mask": "relative position bias + causal band mask",
                "sdpa_backend": self._last_backend,
                "sdpa_flops_uncounted": False,
            }
        return {
            "causal": False,
            "block_index": self.index,
            "window_size": self.window_size,
            "grid": list(self.grid),
            "padded_grid": list(self.padded_grid),
            "padding": [
                size - real for real, size in zip(self.grid, self.padded_grid, strict=True)
            ],
            "shifted": any(self.shifts),
            "shift_size": list(self.shifts),
            "num_windows": self.num_windows,
            "tokens_per_window": self.tokens_per_window,
            "num_heads": self.num_heads,
            "sdpa_mask": "relative position bias"
            + ("" if self.window_mask is None else " + shift/padding mask"),
            "sdpa_backend": self._last_backend,
            "sdpa_flops_uncounted": False,
        }

    def real_pairs_per_head(self) -> int:
        """Query-key pairs of real tokens that share a window, per sample and head.

        A window is a product of one interval per axis, so its real tokens are the product
        of each axis's real positions in it, and the sum of their squares over windows is
        the product over axes of per-axis sums (after padding and the roll, as laid out).
        Causal (1-D): token t sees the min(t + 1, w) tokens ending at itself.
        """
        if self.causal:
            return sum(min(t + 1, self.window_size) for t in range(self.num_tokens))
        pairs = 1
        for size, total, shift in zip(self.grid, self.padded_grid, self.shifts, strict=True):
            real = [(position + shift) % total < size for position in range(total)]
            chunks = range(0, total, self.window_size)
            pairs *= sum(sum(real[start : start + self.window_size]) ** 2 for start in chunks)
        return pairs

    def _attention_flops(self, scores: int, matmuls: bool) -> FlopTally:
        """Per-score work over ``scores`` scores: scale, bias(-and-mask) add, softmax; and
        QK^T and PV when ``matmuls``."""
        tally = FlopTally()
        if matmuls:
            tally.matmul("QK^T", scores * self.head_dim)
        tally.elementwise("scale", scores).elementwise("position bias add", scores)
        tally.softmax("softmax", scores)
        if matmuls:
            tally.matmul("PV", scores * self.head_dim)
        return tally

    def model_flops(self, batch_size: int) -> FlopTally:
        """The operation on the real tokens: qkv and output projections of the N tokens,
        and attention over the pairs of real tokens sharing a window
        (:meth:`real_pairs_per_head`; pad slots excluded). Pairs that the shifted block's
        mask separates still count, as in Swin's own complexity formula (4 N C^2 + 2 w^2 N C
        on a divisible grid). Linear-layer bias adds are not counted."""
        rows = batch_size * self.num_tokens
        scores = batch_size * self.num_heads * self.real_pairs_per_head()
        return (
            FlopTally()
            .matmul("qkv projection", rows * self.dim * 3 * self.dim)
            .merge(self._attention_flops(scores, matmuls=True))
            .matmul("output projection", rows * self.dim * self.dim)
        )

    def extra_flops(self, batch_size: int) -> FlopTally:
        """Executed work per forward that ``FlopCounterMode`` does not count, over every
        score computed, pad slots included (batch_size * num_windows * num_heads * T^2):
        scale, bias-and-mask add and softmax (the counter sees QK^T and PV). The bias-table
        gather, the token permutations and the reshapes move data and count 0."""
        scores = batch_size * self.num_windows * self.num_heads * self.tokens_per_window**2
        if self.band_mask is not None:  # causal: blocks of w queries against 2w keys
            scores = batch_size * self.band_mask.shape[0] * self.num_heads * 2 * self.window_size**2
        return self._attention_flops(scores, matmuls=False)


@mixbench.hookimpl
def register_mixers(register: Callable[..., object]) -> None:
    register(
        "window",
        WindowAttention,
        description="Swin shifted-window attention with relative position bias",
        complexity="O(N w^2)",
        paper="Liu et al. 2021, Swin Transformer, https://arxiv.org/abs/2103.14030",
    )
