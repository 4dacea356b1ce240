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
        self.grid = tuple(grid)
        self.num_tokens = math.prod(self.grid)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.n_hashes = n_hashes
        self.bucket_size = bucket_size
        self.attend_across_buckets = attend_across_buckets
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
        self._last_self_only: torch.Tensor | None = None

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
        unless the most negative entry is larger in magnitude. Computed in float32, so that
        bfloat16 inputs hash like float32 ones instead of tying, and in token slices that
        bound the L x n_buckets / 2 rotated values (see the module docstring).
        """
        rotations = self.rotations(vectors.device)
        half = self.n_buckets // 2
        slice_len = 4 * self.bucket_size**2
        buckets = []
        with torch.no_grad():
            for part in vectors.float().split(slice_len, dim=2):
                rotated = torch.einsum("bhld,hrdk->bhrlk", part, rotations)
                top, top_idx = rotated.max(dim=-1)
                bottom, bottom_idx = rotated.min(dim=-1)
                buckets.append(torch.where(top >= -bottom, top_idx, bottom_idx + half))
        return torch.cat(buckets, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        if tokens != self.num_tokens:
            raise ValueError(
                f"mixer 'lsh' was built for grid {self.grid} ({self.num_tokens} tokens, "
                f"{self.n_buckets} buckets) but got {tokens} tokens"
            )
        length, rounds = self.padded_tokens, self.n_hashes

        # (B, N, 2C) -> shared qk and v, each (B, heads, L, head_dim), zero-padded to L.
        qk, v = (
            self.qkv(x).view(batch, tokens, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        )
        qk = F.pad(qk, (0, 0, 0, length - tokens))
        v = F.pad(v, (0, 0, 0, length - tokens))

        # Hash, then sort by (bucket, position): the composite key is unique, so the order is
        # fully determined. Padded tokens get an extra bucket id so they sort last.
        positions = torch.arange(length, device=x.device)
        buckets = self.hash_vectors(qk).masked_fill(positions >= tokens, self.n_buckets)
        order = (buckets * length + positions).argsort(dim=-1)  # (B, heads, rounds, L)
        gather_index = order.unsqueeze(-1).expand(-1, -1, -1, -1, self.head_dim)
        sorted_qk = qk.unsqueeze(2).expand(-1, -1, rounds, -1, -1).gather(3, gather_index)
        sorted_v = v.unsqueeze(2).expand(-1, -1, rounds, -1, -1).gather(3, gather_index)

        out, lse = self._attend_within_chunks(
            sorted_qk, sorted_v, order, buckets.gather(-1, order), tokens
        )

        # Unsort with the inverse permutation, then weight the rounds by their logsumexps.
        undo = torch.empty_like(order).scatter_(-1, order, positions.expand_as(order))
        undo = undo[..., :tokens]
        out = out.gather(3, undo.unsqueeze(-1).expand(-1, -1, -1, -1, self.head_dim))
        lse = lse.gather(3, undo)
        y = (out * lse.softmax(dim=2).unsqueeze(-1)).sum(dim=2)  # (B, heads, N, head_dim)
        self._last_self_only = (lse < _mask_values(x.dtype)[0] / 2).detach()
        y = y.transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj_dropout(self.proj(y))

    def _attend_within_chunks(
        self,
        qk: torch.Tensor,
        v: torch.Tensor,
        positions: torch.Tensor,
        buckets: torch.Tensor,
        tokens: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunked, masked shared-QK attention over sorted tokens.

        Takes (B, heads, rounds, L, ...) tensors in sorted order with each token's original
        position and bucket, and returns the outputs (B, heads, rounds, L, head_dim) and each
        query's logsumexp (B, heads, rounds, L), still in sorted order. A separate method so
        the (chunks, size, 2 size) intermediates are freed as soon as it returns.
        """
        batch, heads, rounds, length, _ = qk.shape
        size = self.bucket_size
        self_value, mask_value = _mask_values(qk.dtype)

        def chunked(t: torch.Tensor) -> torch.Tensor:  # L -> (chunks, size)
            return t.reshape(batch, heads, rounds, length // size, size, *t.shape[4:])

        def look_one_back(t: torch.Tensor) -> torch.Tensor:  # chunk, then its predecessor
            return torch.cat([t, t.roll(1, dims=3)], dim=4)

        q = chunked(qk) * self.head_dim**-0.5
        k = look_one_back(chunked(F.normalize(qk, dim=-1)))
        v = look_one_back(chunked(v))
        q_pos, q_bucket = chunked(positions), chunked(buckets)
        k_pos, k_bucket = look_one_back(q_pos), look_one_back(q_bucket)

        scores = q @ k.transpose(-1, -2)  # (B, heads, rounds, chunks, size, 2 size)
        scores.masked_fill_(q_pos.unsqueeze(-1) == k_pos.unsqueeze(-2), self_value)
        hidden = (k_pos >= tokens).unsqueeze(-2)
        if not self.attend_across_buckets:
            hidden = hidden | (q_bucket.unsqueeze(-1) != k_bucket.unsqueeze(-2))
        scores.masked_fill_(hidden, mask_value)

        # Softmax and logsumexp from one exp pass, the most expensive step on CPU, done in
        # place since the raw scores are not needed again. The detached max is exact:
        # neither result depends on it mathematically.
        top = scores.amax(dim=-1, keepdim=True).detach()
        exp = scores.sub_(top).exp_()
        total = exp.sum(dim=-1, keepdim=True)
        weights = F.dropout(exp / total, self.dropout, self.training)
        out = (weights @ v).reshape(batch, heads, rounds, length, self.head_dim)
        lse = (top + total.log()).reshape(batch, heads, rounds, length)
        return out, lse

    def runtime_info(self) -> dict[str, object]:
        """The chunk layout, and how often hashing left a query nothing but itself.

        ``self_only_fraction`` is over (query, head, round) of the last forward: a query whose
        two chunks hold no other key of its bucket falls back to its own value in that round.
        """
        info: dict[str, object] = {
            "n_buckets": self.n_buckets,
            "padded_tokens": self.padded_tokens,
            "padding": self.padded_tokens - self.num_tokens,
            "chunks_per_round": self.padded_tokens // self.bucket_size,
        }
        if self._last_self_only is not None:
            info["self_only_fraction"] = self._last_self_only.float().mean().item()
        return info

    def flop_breakdown(self, batch_size: int) -> dict[str, int]:
        """Per-forward FLOPs that ``FlopCounterMode`` misses, by part (it does count the
        projections, the hash rotation and the two chunked attention matmuls).

        With P = batch * heads * n_hashes (one sort per P), L padded tokens, S bucket size:
        * normalise keys: 3 per element (square, sum, divide) of the P x L x head_dim copy;
        * hash: the argmax over n_buckets values as n_buckets comparisons (max and min over
          half each), plus 2 for the sort key, per token and round;
        * sort: L * log2(L) comparisons per sort (comparison-sort model), P sorts;
        * scale the queries: 1 per element of the P x L x head_dim copy;
        * scores (P * L * 2S of them): 3 masking (self, padding, bucket compares and fills)
          + 5 softmax (max, subtract, exp, sum, divide), plus 1 log per query;
        * combine rounds: 5 per round for the softmax over logsumexps and 2 * head_dim per
          round for the weighted sum, per token and head.
        Gathers, scatters and padding move memory and count 0.
        """
        sorts = batch_size * self.num_heads * self.n_hashes
        length = self.padded_tokens
        return {
            "normalise_and_scale": 4 * sorts * length * self.head_dim,
            "hash": sorts * length * (self.n_buckets + 2),
            "sort": sorts * length * math.ceil(math.log2(length)),
            "softmax_and_masks": sorts * length * (8 * 2 * self.bucket_size + 1),
            "combine": sorts * self.num_tokens * (5 + 2 * self.head_dim),
        }

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
