"""Reformer LSH attention: attend only among tokens that hash to the same bucket.

Kitaev, Kaiser, Levskaya 2020, "Reformer: The Efficient Transformer",
https://arxiv.org/abs/2001.04451 (section 2, "Locality-sensitive hashing attention").

One forward, per head:

1. Shared QK: one projection gives the queries; the keys are the same vectors normalised to
   unit length, so a query always has high similarity with its own key (hence step 5).
2. Hash with random rotations: for ``n_buckets`` buckets a fixed random R of shape
   (head_dim, n_buckets / 2) gives ``bucket = argmax([xR; -xR])``, once per hash round.
3. Sort the tokens by (bucket, position) within each round, and cut the sorted sequence into
   chunks of ``bucket_size``.
4. Each chunk attends to itself and to the previous chunk (look-one-back; the first chunk of
   a round looks back at that round's last chunk), so a bucket that straddles a chunk
   boundary is still seen whole as long as it holds at most ``bucket_size`` tokens.
5. Masks, with large finite values rather than -inf so a softmax row is never all -inf:
   a token's own key gets ``SELF_MASK_VALUE`` (-1e5, as in Reformer): it attends to itself
   only when nothing else is visible. Padded keys, and keys of another bucket that share the
   chunk (unless ``attend_across_buckets``), get ``MASK_VALUE`` (-1e9): never attended while
   anything else, the token itself included, is visible. Masking other buckets keeps the
   paper's definition P_i = {j : h(q_i) = h(k_j)}; the option turns it off for comparison.
6. Unsort, and combine the rounds with weights softmax over each round's logsumexp, which is
   exactly the softmax over the union of the rounds' keys when they do not overlap.

Causal (``causal=True``, Reformer's decoder setting): a query never sees a later position.
Reformer masks later positions inside its chunk pair, but which earlier keys share that
pair depends on where the chunk boundaries fall, and every later token moves them (a later
token hashed into a lower bucket shifts the whole sorted round by one slot), so a query's
output would still change with the future. Here a causal query instead sees the keys of its
own bucket among the ``bucket_size`` sorted slots just before it (and itself, as above).
Sorting by (bucket, position) puts a bucket's earlier tokens right before the query, in
position order, wherever the rest of the round lands, so that set depends on earlier tokens
only: the ``bucket_size`` most recent earlier tokens of the query's bucket. The first chunk
of a round does not look back (its cyclic predecessor holds later tokens). Attending across
buckets cannot be made causal this way (the other buckets' slots move with later tokens),
so that combination is refused.

Choices this implementation makes (they matter for benchmarks):

* Padding: N is padded to L, the next multiple of 2 * bucket_size, and
  ``n_buckets = L / bucket_size``, even by construction and at least 2, i.e. about one
  bucket per chunk as the paper recommends. Padded tokens sort after all real tokens and
  padded keys are masked out; short inputs are padded too, never replaced by full attention.
* Random rotations come from a seed drawn once at construction from torch's global
  generator, so they are reproducible under ``torch.manual_seed``, identical for every sample
  in a batch (samples never interact) and the same in every forward: a measurement is a pure
  function of the weights (Reformer resamples per training step). The rotations are drawn
  from that seed in float32 on the CPU and cached per device, not kept as a buffer, so that
  ``.to(torch.bfloat16)`` does not round them: LSH outputs are discontinuous in the hashes
  (one token changing bucket shifts the chunk boundaries of its whole round), and rounded
  rotations alone moved outputs by ~10% at 32 buckets. The seed travels in the state dict
  (``get_extra_state``). The grid fixes N and so n_buckets; a forward with another N is an
  error.
* Memory is linear in N: the scores are (rounds, chunks, bucket_size, 2 * bucket_size) per
  head. Hashing needs N x n_buckets / 2 rotated values, which grows as N^2 / bucket_size, so
  it is done in slices of ``4 * bucket_size**2`` tokens to stay within the scores' footprint.
* Reformer's duplicate-attention correction is not needed: look-back stays within a round and
  every round has at least two chunks, so a query never sees one key twice in a round.

How it runs fast on a CPU (measured at N=4096, bucket 64, 4 rounds, 4 heads, B=2, 2 threads):
a hand-written chunked softmax spent ~60 % of a forward in memory-bound elementwise passes
over the (chunks, S, 2S) scores (exp, div, masked_fill, cat). Here the chunks go through
PyTorch's fused CPU flash-attention kernel (``_scaled_dot_product_flash_attention_for_cpu``),
which scales, masks, soft-maxes and multiplies by V per block in one pass, and also returns
each query's logsumexp, which the round combination needs. The chunk batch is (batch x heads
x rounds) x chunks x S queries; its keys are a strided view of one gathered buffer that
holds the round's last chunk and then all its chunks, so the look-back (chunk c-1, then
chunk c) is the window of 2S rows starting at row c*S: no copy of the look-back keys. The
queries, keys and values are gathered into that buffer by one ``index_select``. Masks are
additive: a constant (chunks, S, 2S) part (self, padding, causal band), built once per
device and dtype and broadcast over the batch, plus, when other buckets are masked, the
bucket comparison. Additive means the self score is ``score - 1e5`` rather than ``-1e5``:
the same softmax and round weights to float tolerance (in a self-only round every round
sees the same self score, and otherwise the self weight underflows to 0 either way).

The fused kernel's autograd cannot give the logsumexp a gradient, so :class:`_FusedChunks`
is a custom ``autograd.Function``: its backward calls the kernel's own backward with one
zero column appended to the head dimension of Q, K and V, the column ``-dL/dlse`` appended
to the output and ``1`` to its gradient. The kernel forms ``D = rowsum(dO * O)``, so the
extra column gives ``D - dL/dlse``, which is exactly the logsumexp's contribution
``dL/dlse * p`` to the score gradient. The kernel needs no dropout and a mask that needs no
grad; with attention dropout in training, or off the CPU, :func:`_attend_explicit` computes
the same thing with explicit scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import mixbench
from mixbench import FlopTally
from mixbench.errors import IncompatibleError, OptionError

SELF_MASK_VALUE = -1e5  # a token's own key: used only when nothing else is visible
MASK_VALUE = -1e9  # padded keys and other buckets: weight exactly zero whenever anything is visible


class LSHAttention(nn.Module):
    """Reformer LSH self-attention over the N = prod(grid) tokens of a 1-D or 2-D grid.

    Options:
        num_heads: number of heads; must divide ``dim``.
        n_hashes: hash rounds; more rounds lower the chance that similar tokens are
            separated, at linear cost (Reformer uses 1 to 8; 2 is the paper's cheap setting).
        bucket_size: tokens per chunk and (on average) per bucket; the paper uses 32 or 64.
        attend_across_buckets: let a query see every key in its two chunks, not only its
            own bucket's.
        causal: never attend to a later token (see the module docstring); tokens are in
            grid order, row-major on a 2-D grid.
        qkv_bias: bias on the shared-QK and V projection.
        dropout: dropout on the attention weights and on the output, in training mode only.
    """

    def __init__(
        self,
        dim: int,
        grid: tuple[int, ...],
        *,
        num_heads: int = 4,
        n_hashes: int = 2,
        bucket_size: int = 32,
        attend_across_buckets: bool = False,
        causal: bool = False,
        qkv_bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_heads", num_heads),
            ("n_hashes", n_hashes),
            ("bucket_size", bucket_size),
        ):
            if value < 1:
                raise OptionError(f"mixer 'lsh': {name} must be >= 1, got {value}")
        if dim % num_heads != 0:
            raise IncompatibleError(
                f"mixer 'lsh': num_heads={num_heads} does not divide dim={dim} (grid {tuple(grid)})"
            )
        if not 0.0 <= dropout < 1.0:
            raise OptionError(f"mixer 'lsh': dropout must be in [0, 1), got {dropout}")
        if causal and attend_across_buckets:
            raise OptionError(
                "mixer 'lsh': causal=True needs attend_across_buckets=False: which earlier "
                "keys of other buckets share a query's chunks depends on later tokens"
            )
        self.grid = tuple(grid)
        self.num_tokens = math.prod(self.grid)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.n_hashes = n_hashes
        self.bucket_size = bucket_size
        self.attend_across_buckets = attend_across_buckets
        self.causal = causal
        self.dropout = dropout
        # Pad to a whole number of chunk pairs, so the bucket count L / bucket_size is even.
        pair = 2 * bucket_size
        self.padded_tokens = -(-self.num_tokens // pair) * pair
        self.n_buckets = self.padded_tokens // bucket_size

        self.qkv = nn.Linear(dim, 2 * dim, bias=qkv_bias)  # shared QK, and V
        self.proj = nn.Linear(dim, dim)
        self.proj_dropout = nn.Dropout(dropout)
        self.hash_seed = int(torch.randint(2**62, ()))
        self._rotations: dict[torch.device, torch.Tensor] = {}
        self._chunk_masks: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._last_self_only: torch.Tensor | None = None
        self._last_fused = False

    def rotations(self, device: torch.device) -> torch.Tensor:
        """The float32 random rotations (heads, n_hashes, head_dim, n_buckets / 2) on
        ``device``, drawn from ``hash_seed`` on the CPU so every device hashes alike."""
        cached = self._rotations.get(device)
        if cached is None:
            generator = torch.Generator().manual_seed(self.hash_seed)
            shape = (self.num_heads, self.n_hashes, self.head_dim, self.n_buckets // 2)
            cached = torch.randn(shape, generator=generator).to(device)
            self._rotations[device] = cached
        return cached

    def get_extra_state(self) -> dict[str, int]:
        return {"hash_seed": self.hash_seed}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.hash_seed = int(state["hash_seed"])
        self._rotations.clear()

    def hash_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """Bucket ids (B, heads, n_hashes, L) of vectors (B, heads, L, head_dim).

        ``argmax([xR; -xR])`` without building the concatenation: the best of xR wins
        unless the most negative entry is larger in magnitude (``top + bottom`` has exactly
        the sign of ``top - |bottom|``, and ties go to xR as argmax's first index would).
        All rounds rotate in one matmul per slice, (L, head_dim) @ (head_dim, rounds *
        n_buckets / 2), whose output is reduced where it lies. Computed in float32, so that
        bfloat16 inputs hash like float32 ones instead of tying, and in token slices that
        bound the L x n_buckets / 2 rotated values (see the module docstring).
        """
        rotations = self.rotations(vectors.device)
        heads, rounds, head_dim, half = rotations.shape
        merged = rotations.permute(0, 2, 1, 3).reshape(heads, head_dim, rounds * half)
        slice_len = 4 * self.bucket_size**2
        buckets = []
        with torch.no_grad():
            for part in vectors.float().split(slice_len, dim=2):
                rotated = (part @ merged).unflatten(-1, (rounds, half))
                top, top_idx = rotated.max(dim=-1)
                bottom, bottom_idx = rotated.min(dim=-1)
                buckets.append(torch.where(top + bottom >= 0, top_idx, bottom_idx + half))
        return torch.cat(buckets, dim=2).transpose(-1, -2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        if tokens != self.num_tokens:
            raise ValueError(
                f"mixer 'lsh' was built for grid {self.grid} ({self.num_tokens} tokens, "
                f"{self.n_buckets} buckets) but got {tokens} tokens"
            )
        heads, head_dim, rounds = self.num_heads, self.head_dim, self.n_hashes
        length, size = self.padded_tokens, self.bucket_size

        # (B, N, 2C) -> shared qk and v, each (B, heads, N, head_dim).
        qk, v = self.qkv(x).view(batch, tokens, 2, heads, head_dim).permute(2, 0, 3, 1, 4)

        # Sort each round by (bucket, position): a stable sort of the buckets. Padded slots
        # follow; they read token 0, whose copy there is masked out as a key and whose
        # output there is dropped as a query.
        buckets = self.hash_vectors(qk)  # (B, heads, rounds, N)
        sorted_buckets, order = buckets.sort(dim=-1, stable=True)
        if length > tokens:
            pad = (0, length - tokens)
            order = F.pad(order, pad, value=0)
            sorted_buckets = F.pad(sorted_buckets, pad, value=self.n_buckets)

        # Where each token sits in each sorted round (the real tokens fill its first N slots),
        # as a row of the (B * heads * rounds * L) sorted rows.
        undo = torch.empty_like(order[..., :tokens])
        positions = torch.arange(tokens, device=x.device).expand_as(undo)
        undo.scatter_(-1, order[..., :tokens], positions)  # position -> sorted slot
        slots = torch.arange(batch * heads * rounds, device=x.device).view(batch, heads, rounds, 1)
        unsort_rows = (undo + slots * length).flatten()

        # One gather of [q | k | v] rows into the look-back layout: the round's last chunk,
        # then all its chunks, so chunk c's keys are rows [c * S, c * S + 2S).
        source = torch.cat([qk, F.normalize(qk, dim=-1), v], dim=-1).flatten(0, 2)
        with_look_back = torch.cat([order[..., -size:], order], dim=-1)
        base = torch.arange(batch * heads, device=x.device).view(batch, heads, 1, 1)
        rows = (with_look_back + base * tokens).flatten()
        gathered = _GatherLookBack.apply(source, rows, unsort_rows, rounds, length, size)  # type: ignore[no-untyped-call]
        gathered = gathered.view(batch * heads * rounds, length + size, -1)

        mask = self._chunk_mask(x.device, x.dtype)
        if not self.attend_across_buckets:
            bucket_rows = torch.cat([sorted_buckets[..., -size:], sorted_buckets], dim=-1)
            bucket_rows = bucket_rows.flatten(0, 2)
            query_buckets = bucket_rows[:, size:].unflatten(-1, (-1, size)).unsqueeze(-1)
            key_buckets = bucket_rows.unfold(-1, 2 * size, size).unsqueeze(-2)
            mask = torch.where(query_buckets == key_buckets, mask, _mask_values(x.dtype)[1])

        dropout = self.dropout if self.training else 0.0
        self._last_fused = x.device.type == "cpu" and dropout == 0.0
        if self._last_fused:
            out, lse = _FusedChunks.apply(gathered, mask, size, head_dim**-0.5)  # type: ignore[no-untyped-call]
        else:
            out, lse = _attend_explicit(gathered, mask, size, head_dim**-0.5, dropout)

        # Back to positions, then weight each round by the softmax over the rounds'
        # logsumexps.
        out = out.reshape(-1, head_dim).index_select(0, unsort_rows).view(*undo.shape, head_dim)
        lse = lse.reshape(-1).index_select(0, unsort_rows).view(undo.shape)  # (B, heads, rounds, N)
        self._last_self_only = (lse < _mask_values(x.dtype)[0] / 2).detach()
        weights = lse.softmax(dim=2).to(out.dtype).unsqueeze(-1)  # the kernel gives float32 lse
        y = (out * weights).sum(dim=2)  # (B, heads, N, head_dim)
        y = y.transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj_dropout(self.proj(y))

    def _chunk_mask(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The additive mask every chunk batch shares, (1, chunks, S, 2S), cached.

        Keys are in look-back order (the previous chunk's S, then the chunk's own S), so a
        query's own key is at S + its index. Padded keys (sorted slots >= N) are hidden; so,
        when causal, is every key outside the S slots before the query, and the whole
        look-back of a round's first chunk.
        """
        cached = self._chunk_masks.get((device, dtype))
        if cached is not None:
            return cached
        size, chunks = self.bucket_size, self.padded_tokens // self.bucket_size
        self_value, mask_value = _mask_values(dtype)
        query = torch.arange(size).view(1, size, 1)
        chunk = torch.arange(chunks).view(chunks, 1, 1)
        key = torch.arange(2 * size).view(1, 1, 2 * size)
        key_chunk = torch.where(key < size, (chunk - 1) % chunks, chunk)
        key_slot = key_chunk * size + key % size
        mask = torch.zeros(chunks, size, 2 * size)
        mask.masked_fill_(key == size + query, self_value)
        hidden = key_slot >= self.num_tokens
        if self.causal:
            in_band = torch.where(key < size, (key >= query) & (chunk > 0), key - size <= query)
            hidden = hidden | ~in_band
        mask = mask.masked_fill_(hidden, mask_value).unsqueeze(0).to(device, dtype)
        self._chunk_masks[(device, dtype)] = mask
        return mask

    def runtime_info(self) -> dict[str, object]:
        """The chunk layout, the kernel that ran, and how often hashing left a query nothing
        but itself.

        ``self_only_fraction`` is over (query, head, round) of the last forward: a query whose
        two chunks hold no other key of its bucket falls back to its own value in that round.
        """
        info: dict[str, object] = {
            "n_buckets": self.n_buckets,
            "padded_tokens": self.padded_tokens,
            "padding": self.padded_tokens - self.num_tokens,
            "chunks_per_round": self.padded_tokens // self.bucket_size,
            "chunk_kernel": "flash_attention_cpu" if self._last_fused else "explicit",
        }
        if self._last_self_only is not None:
            info["self_only_fraction"] = self._last_self_only.float().mean().item()
        return info

    def flop_breakdown(self, batch_size: int) -> dict[str, int]:
        """Per-forward FLOPs that ``FlopCounterMode`` misses, by part (it does count the
        projections and the hash rotation, and the two chunked attention matmuls when they
        run as explicit matmuls or the fused CPU kernel has a registered formula).

        With P = batch * heads * n_hashes (one sort per P), N tokens, L padded tokens,
        S bucket size:
        * normalise keys: 3 per element (square, sum, divide) of the batch x heads x N x
          head_dim shared QK, once for all rounds;
        * hash: the argmax over n_buckets values as n_buckets comparisons (max and min over
          half each), plus 1 to pick between them, per token and round;
        * sort: N * log2(N) comparisons per sort (comparison-sort model), P sorts;
        * scores (P * L * 2S of them): 1 scale, 1 mask add, 5 softmax (max, subtract, exp,
          sum, divide), plus 1 bucket comparison when other buckets are masked, and 1 log
          per query;
        * combine rounds: 5 per round for the softmax over logsumexps and 2 * head_dim per
          round for the weighted sum, per token and head;
        * chunk matmuls QK^T and PV, 2 * 2 * P * L * 2S * head_dim, only when the last
          forward ran the fused CPU kernel and the counter has no formula for it.
        Gathers, scatters and padding move memory and count 0.
        """
        sorts = batch_size * self.num_heads * self.n_hashes
        tokens, length, size = self.num_tokens, self.padded_tokens, self.bucket_size
        per_score = 7 if self.attend_across_buckets else 8
        breakdown = {
            "normalise": 3 * batch_size * self.num_heads * tokens * self.head_dim,
            "hash": sorts * tokens * (self.n_buckets + 1),
            "sort": sorts * tokens * math.ceil(math.log2(max(tokens, 2))),
            "softmax_and_masks": sorts * length * (per_score * 2 * size + 1),
            "combine": sorts * tokens * (5 + 2 * self.head_dim),
        }
        if self._last_fused and _fused_kernel_uncounted():
            breakdown["chunk_matmuls"] = 2 * 2 * sorts * length * 2 * size * self.head_dim
        return breakdown

    def extra_flops(self, batch_size: int) -> FlopTally:
        """:meth:`flop_breakdown` as a tally: hashing and sorting have no backward; the other
        parts are elementwise, whose backward costs the same (docs/conventions.md)."""
        tally = FlopTally()
        for part, flops in self.flop_breakdown(batch_size).items():
            if part in ("hash", "sort"):
                tally.no_grad(part, flops)
            else:
                tally.elementwise(part, flops)
        return tally

    def model_flops(self, batch_size: int) -> FlopTally:
        """The operation on the N real tokens (no padding), per forward (docs/conventions.md).

        With P = batch * heads * n_hashes, S bucket size: the projections; hashing (the
        rotation, argmax and sort key) and sorting N tokens per round, no backward;
        normalising keys and scaling queries; N queries per round against their two
        chunks' 2S keys: QK^T, the self mask and (unless ``attend_across_buckets``) the
        bucket mask, softmax, logsumexp, PV; combining the rounds (a softmax over them and
        a weighted sum). Linear-layer bias adds and dropout are not counted.
        """
        tokens, dim = self.num_tokens, self.head_dim * self.num_heads
        sorts = batch_size * self.num_heads * self.n_hashes
        queries = sorts * tokens  # (query, round) pairs
        scores = queries * 2 * self.bucket_size
        masks = 1 if self.attend_across_buckets else 2
        return (
            FlopTally()
            .matmul("shared-QK and V projection", batch_size * tokens * dim * 2 * dim)
            .no_grad("hash rotation", 2 * queries * self.head_dim * self.n_buckets // 2)
            .no_grad("hash", queries * (self.n_buckets + 2))
            .no_grad("sort", queries * math.ceil(math.log2(tokens)))
            .elementwise("normalise keys, scale queries", 4 * queries * self.head_dim)
            .matmul("QK^T", scores * self.head_dim)
            .elementwise("masks", masks * scores)
            .softmax("softmax", scores)
            .elementwise("logsumexp", queries)
            .matmul("PV", scores * self.head_dim)
            .softmax("combine rounds: weights", queries)
            .matmul("combine rounds: weighted sum", queries * self.head_dim)
            .matmul("output projection", batch_size * tokens * dim * dim)
        )


def _chunk_views(
    gathered: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views (B', chunks, S, hd) queries and (B', chunks, 2S, hd) keys and values of the
    gathered (B', L + S, 3 hd) look-back buffer; the keys and values of chunk c are rows
    [c * S, c * S + 2S), so consecutive chunks' windows overlap without a copy."""
    head_dim = gathered.shape[-1] // 3
    q = gathered[:, size:, :head_dim].unflatten(1, (-1, size))
    k, v = (
        gathered[:, :, i * head_dim : (i + 1) * head_dim]
        .unfold(1, 2 * size, size)
        .transpose(-1, -2)
        for i in (1, 2)
    )
    return q, k, v


class _GatherLookBack(torch.autograd.Function):
    """``source.index_select(0, rows)`` into the look-back layout, with a backward that
    gathers instead of scattering: each token's gradient is read from its slot in every
    round (after adding each round's look-back copy of its last chunk onto that chunk) and
    summed over the rounds. ``index_select``'s own backward scatter-adds every gathered row,
    with an index expanded to every element, the slowest part of an LSH backward on CPU."""

    @staticmethod
    def forward(
        ctx: Any,
        source: torch.Tensor,
        rows: torch.Tensor,
        unsort_rows: torch.Tensor,
        rounds: int,
        length: int,
        size: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(unsort_rows)
        ctx.rounds, ctx.length, ctx.size, ctx.source_rows = rounds, length, size, source.shape[0]
        return source.index_select(0, rows)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None, None]:
        (unsort_rows,) = ctx.saved_tensors
        rounds, length, size, features = ctx.rounds, ctx.length, ctx.size, grad.shape[-1]
        windows = grad.view(-1, length + size, features)
        folded = windows[:, size:].clone()
        folded[:, length - size :] += windows[:, :size]
        tokens = ctx.source_rows * rounds // windows.shape[0]  # per (sample, head)
        picked = folded.view(-1, features).index_select(0, unsort_rows)
        grad_source = picked.view(-1, rounds, tokens, features).sum(dim=1).view(-1, features)
        return grad_source, None, None, None, None, None


class _FusedChunks(torch.autograd.Function):
    """Chunked attention and its per-query logsumexp through the fused CPU flash kernel,
    with a backward that carries the logsumexp's gradient (see the module docstring)."""

    @staticmethod
    def forward(
        ctx: Any, gathered: torch.Tensor, mask: torch.Tensor, size: int, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = _chunk_views(gathered, size)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, False, attn_mask=mask, scale=scale
        )
        ctx.save_for_backward(gathered, mask, out, lse)
        ctx.size, ctx.scale = size, scale
        return out, lse

    @staticmethod
    def backward(
        ctx: Any, grad_out: torch.Tensor | None, grad_lse: torch.Tensor | None
    ) -> tuple[torch.Tensor, None, None, None]:
        gathered, mask, out, lse = ctx.saved_tensors
        size = ctx.size
        rows, head_dim = gathered.shape[1], gathered.shape[-1] // 3
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        if grad_lse is None:
            grad_lse = torch.zeros_like(lse)
        widened = F.pad(gathered.unflatten(-1, (3, head_dim)), (0, 1)).flatten(-2)
        q, k, v = _chunk_views(widened, size)
        grad_q, grad_k, grad_v = (
            torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                torch.cat([grad_out, torch.ones_like(grad_lse).unsqueeze(-1)], dim=-1),
                q,
                k,
                v,
                torch.cat([out, -grad_lse.unsqueeze(-1)], dim=-1),
                lse,
                0.0,
                False,
                attn_mask=mask,
                scale=ctx.scale,
            )
        )
        grad = gathered.new_zeros(gathered.shape[0], rows, 3, head_dim)
        grad[:, size:, 0] = grad_q[..., :head_dim].flatten(1, 2)
        for i, grad_kv in ((1, grad_k), (2, grad_v)):
            grad[:, : rows - size, i] = grad_kv[:, :, :size, :head_dim].flatten(1, 2)
            grad[:, size:, i] += grad_kv[:, :, size:, :head_dim].flatten(1, 2)
        return grad.flatten(-2), None, None, None


def _attend_explicit(
    gathered: torch.Tensor, mask: torch.Tensor, size: int, scale: float, dropout: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """What :class:`_FusedChunks` computes, with the (B', chunks, S, 2S) scores explicit:
    for attention dropout, and off the CPU."""
    q, k, v = _chunk_views(gathered, size)
    scores = (q @ k.transpose(-1, -2)).mul_(scale).add_(mask)
    lse = scores.logsumexp(dim=-1)
    weights = F.dropout((scores - lse.unsqueeze(-1)).exp_(), dropout, dropout > 0.0)
    return weights @ v, lse


def _fused_kernel_uncounted() -> bool:
    """Whether ``FlopCounterMode`` misses the fused CPU kernel's matmuls (it has no formula
    for it in torch 2.13 unless mixbench registered one)."""
    from torch.utils.flop_counter import flop_registry

    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu not in flop_registry


def _mask_values(dtype: torch.dtype) -> tuple[float, float]:
    """(self, masked) fill values that stay finite and ordered in ``dtype`` (float16 cannot
    hold -1e5)."""
    largest = torch.finfo(dtype).max
    return max(SELF_MASK_VALUE, -largest / 4), max(MASK_VALUE, -largest / 2)


@mixbench.hookimpl
def register_mixers(register: Callable[..., object]) -> None:
    register(
        "lsh",
        LSHAttention,
        description="Reformer LSH attention: shared-QK, random-rotation buckets, chunked",
        complexity="O(N log N)",
        paper="Kitaev, Kaiser, Levskaya 2020, https://arxiv.org/abs/2001.04451",
    )
