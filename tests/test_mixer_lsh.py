"""Reformer LSH attention, each part checked against something computed another way: the hash
against a manual argmax, the whole forward against a per-token brute-force reference written
from the paper, and the one-bucket case against full shared-QK attention by hand. Plus the
padding path, determinism, the contract, and FLOP accounting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import mixbench
from mixbench.authoring.conformance import check_mixer
from mixbench.errors import IncompatibleError, OptionError
from mixbench.measure.flops import register_cpu_attention_formulas
from mixbench_builtins.mixers.lsh import (
    MASK_VALUE,
    SELF_MASK_VALUE,
    LSHAttention,
    _attend_explicit,
    _FusedChunks,
)

DIM = 16


def _input(grid: tuple[int, ...], batch: int = 2, dim: int = DIM, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, math.prod(grid), dim, generator=generator)


def _shared_qk_and_v(module: LSHAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, heads, N, head_dim) queries and values, computed straight from the projection."""
    batch, tokens, _ = x.shape
    qk, v = module.qkv(x).view(batch, tokens, 2, module.num_heads, module.head_dim).unbind(2)
    return qk.transpose(1, 2), v.transpose(1, 2)


def brute_force_lsh(module: LSHAttention, x: torch.Tensor) -> torch.Tensor:
    """Reformer LSH attention one query at a time, from the module's hashes.

    Per round: sort real tokens by (bucket, position), padded slots last; a query sees the
    tokens of its chunk and of the previous chunk (cyclically within the round), of its own
    bucket unless attending across buckets, never padding, and itself only when nothing
    else is left; when causal, the at most bucket_size latest earlier tokens of its bucket
    instead. Rounds are combined with softmax weights over their logsumexps.
    """
    batch, tokens, _ = x.shape
    qk, v = _shared_qk_and_v(module, x)
    padded = F.pad(qk, (0, 0, 0, module.padded_tokens - tokens))
    buckets = module.hash_vectors(padded)[..., :tokens].tolist()
    keys = F.normalize(qk, dim=-1)
    size, chunks = module.bucket_size, module.padded_tokens // module.bucket_size
    out = torch.zeros_like(qk)
    for b in range(batch):
        for h in range(module.num_heads):
            per_round, lses = [], []
            for r in range(module.n_hashes):
                bucket = buckets[b][h][r]
                order = sorted(range(tokens), key=lambda i: (bucket[i], i))
                order += [None] * (module.padded_tokens - tokens)  # padding sorts last
                rank = {token: slot for slot, token in enumerate(order)}
                round_out = torch.zeros(tokens, module.head_dim)
                round_lse = torch.zeros(tokens)
                for i in range(tokens):
                    chunk = rank[i] // size
                    slots = [*range(chunk * size, (chunk + 1) * size)]
                    slots += [
                        *range(((chunk - 1) % chunks) * size, ((chunk - 1) % chunks + 1) * size)
                    ]
                    seen = [order[s] for s in slots if order[s] is not None]
                    if not module.attend_across_buckets:
                        seen = [j for j in seen if bucket[j] == bucket[i]]
                    if module.causal:  # the bucket's most recent earlier tokens, at most S
                        seen = [j for j in range(i) if bucket[j] == bucket[i]][-size:]
                    others = [j for j in seen if j != i]
                    if not others:
                        round_out[i], round_lse[i] = v[b, h, i], SELF_MASK_VALUE
                        continue
                    logits = keys[b, h, others] @ qk[b, h, i] / math.sqrt(module.head_dim)
                    round_out[i] = torch.softmax(logits, dim=0) @ v[b, h, others]
                    round_lse[i] = torch.logsumexp(logits, dim=0)
                per_round.append(round_out)
                lses.append(round_lse)
            weights = torch.softmax(torch.stack(lses), dim=0).unsqueeze(-1)
            out[b, h] = (torch.stack(per_round) * weights).sum(dim=0)
    return module.proj(out.transpose(1, 2).reshape(batch, tokens, -1))


def full_shared_qk_attention(module: LSHAttention, x: torch.Tensor) -> torch.Tensor:
    """Dense shared-QK attention with the self-mask: what LSH must equal when every token
    sees every other."""
    qk, v = _shared_qk_and_v(module, x)
    scores = qk @ F.normalize(qk, dim=-1).transpose(-1, -2) / math.sqrt(module.head_dim)
    eye = torch.eye(x.shape[1], dtype=torch.bool)
    scores = scores.masked_fill(eye, SELF_MASK_VALUE)
    out = torch.softmax(scores, dim=-1) @ v
    return module.proj(out.transpose(1, 2).reshape(x.shape))


def previous_lsh(module: LSHAttention, x: torch.Tensor) -> torch.Tensor:
    """The previous, unfused implementation, trimmed: explicit (chunks, S, 2S) scores with
    the look-back keys concatenated, masks filled in (self -1e5, hidden -1e9), softmax and
    logsumexp by hand, rounds unsorted and weighted. It takes the module's hashes, so what
    is compared is everything after hashing."""
    batch, tokens, channels = x.shape
    heads, head_dim, rounds = module.num_heads, module.head_dim, module.n_hashes
    length, size = module.padded_tokens, module.bucket_size
    qk, v = module.qkv(x).view(batch, tokens, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
    buckets = F.pad(module.hash_vectors(qk), (0, length - tokens), value=module.n_buckets)
    qk, v = (F.pad(t, (0, 0, 0, length - tokens)) for t in (qk, v))
    positions = torch.arange(length)
    order = (buckets * length + positions).argsort(dim=-1)
    index = order.unsqueeze(-1).expand(-1, -1, -1, -1, head_dim)
    sorted_qk, sorted_v = (
        t.unsqueeze(2).expand(-1, -1, rounds, -1, -1).gather(3, index) for t in (qk, v)
    )

    def chunked(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, heads, rounds, length // size, size, *t.shape[4:])

    def look_one_back(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t.roll(1, dims=3)], dim=4)

    q = chunked(sorted_qk) * head_dim**-0.5
    k = look_one_back(chunked(F.normalize(sorted_qk, dim=-1)))
    values = look_one_back(chunked(sorted_v))
    q_pos, q_bucket = chunked(order), chunked(buckets.gather(-1, order))
    k_pos, k_bucket = look_one_back(q_pos), look_one_back(q_bucket)
    scores = (q @ k.transpose(-1, -2)).masked_fill(
        q_pos.unsqueeze(-1) == k_pos.unsqueeze(-2), SELF_MASK_VALUE
    )
    hidden = (k_pos >= tokens).unsqueeze(-2)
    if not module.attend_across_buckets:
        hidden = hidden | (q_bucket.unsqueeze(-1) != k_bucket.unsqueeze(-2))
    scores = scores.masked_fill(hidden, MASK_VALUE)
    out = (scores.softmax(dim=-1) @ values).reshape(batch, heads, rounds, length, head_dim)
    lse = scores.logsumexp(dim=-1).reshape(batch, heads, rounds, length)
    undo = order.argsort(dim=-1)[..., :tokens]
    out = out.gather(3, undo.unsqueeze(-1).expand(-1, -1, -1, -1, head_dim))
    y = (out * lse.gather(3, undo).softmax(dim=2).unsqueeze(-1)).sum(dim=2)
    return module.proj(y.transpose(1, 2).reshape(batch, tokens, channels))


# -- hashing and layout ---------------------------------------------------------------------


def test_hash_is_argmax_over_rotations_and_their_negation() -> None:
    torch.manual_seed(0)
    module = LSHAttention(DIM, (64,), bucket_size=2, n_hashes=3)  # 32 buckets, 4 hash slices
    vectors = torch.randn(2, module.num_heads, module.padded_tokens, module.head_dim)
    rotated = torch.einsum("bhld,hrdk->bhrlk", vectors, module.rotations(vectors.device))
    expected = torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)
    buckets = module.hash_vectors(vectors)
    assert buckets.shape == (2, module.num_heads, 3, 64)
    assert torch.equal(buckets, expected)
    assert len(buckets.unique()) > module.n_buckets // 2  # the rotations spread the tokens


@pytest.mark.parametrize(
    ("tokens", "bucket_size", "padded", "n_buckets"),
    [(64, 32, 64, 2), (50, 32, 64, 2), (1, 32, 64, 2), (65, 8, 80, 10), (1024, 32, 1024, 32)],
)
def test_padding_to_chunk_pairs_and_bucket_count(
    tokens: int, bucket_size: int, padded: int, n_buckets: int
) -> None:
    module = LSHAttention(DIM, (tokens,), bucket_size=bucket_size)
    assert (module.padded_tokens, module.n_buckets) == (padded, n_buckets)
    assert module.n_buckets % 2 == 0


# -- the forward against references -----------------------------------------------------------


@pytest.mark.parametrize(
    ("attend_across_buckets", "causal"), [(False, False), (True, False), (False, True)]
)
@pytest.mark.parametrize("grid", [(21,), (3, 8)])
def test_matches_brute_force_reference(
    grid: tuple[int, ...], attend_across_buckets: bool, causal: bool
) -> None:
    torch.manual_seed(1)
    module = LSHAttention(
        8,
        grid,
        num_heads=2,
        n_hashes=3,
        bucket_size=4,
        attend_across_buckets=attend_across_buckets,
        causal=causal,
    ).eval()
    x = _input(grid, dim=8)
    with torch.no_grad():
        out = module(x)
        expected = brute_force_lsh(module, x)
    self_only = module.runtime_info()["self_only_fraction"]
    if attend_across_buckets:
        assert self_only == 0.0  # a chunk pair always holds another real token
    else:
        assert 0.0 < self_only < 1.0  # both branches of the reference are exercised
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attend_across_buckets", [False, True])
@pytest.mark.parametrize(("tokens", "bucket_size"), [(256, 16), (200, 16), (77, 8)])
def test_matches_the_previous_implementation_with_gradients(
    tokens: int, bucket_size: int, attend_across_buckets: bool
) -> None:
    """The fused forward and its custom backward (which carries the logsumexp's gradient
    into the kernel's own backward) against the unfused algorithm, on lengths that divide
    the chunk pairs and lengths that need padding."""
    torch.manual_seed(3)
    module = LSHAttention(
        DIM,
        (tokens,),
        n_hashes=3,
        bucket_size=bucket_size,
        qkv_bias=True,
        attend_across_buckets=attend_across_buckets,
    )
    x = _input((tokens,), seed=4).requires_grad_()
    target = _input((tokens,), seed=5)
    grads = []
    for forward in (module, lambda inp: previous_lsh(module, inp)):
        module.zero_grad()
        x.grad = None
        out = forward(x)
        (out * target).sum().backward()
        grads.append((out.detach(), x.grad.clone(), [p.grad.clone() for p in module.parameters()]))
    (out, grad_x, grad_params), (ref_out, ref_grad_x, ref_grad_params) = grads
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad_x, ref_grad_x, atol=1e-4, rtol=1e-3)
    for grad, ref in zip(grad_params, ref_grad_params, strict=True):
        torch.testing.assert_close(grad, ref, atol=1e-4, rtol=1e-3)


def test_fused_and_explicit_chunk_kernels_agree_with_gradients() -> None:
    """The two kernels of the chunk attention on one gathered buffer, a mask with hidden
    keys, and gradients of both the outputs and the logsumexps."""
    generator = torch.Generator().manual_seed(0)
    chunks, size, head_dim = 4, 8, 6
    gathered = torch.randn(3, (chunks + 1) * size, 3 * head_dim, generator=generator)
    hidden = torch.rand(3, chunks, size, 2 * size, generator=generator) < 0.5
    mask = torch.zeros(hidden.shape).masked_fill_(hidden, MASK_VALUE)
    grad_out = torch.randn(3, chunks, size, head_dim, generator=generator)
    grad_lse = torch.randn(3, chunks, size, generator=generator)
    results = []
    for kernel in (
        lambda g: _FusedChunks.apply(g, mask, size, 0.3),
        lambda g: _attend_explicit(g, mask, size, 0.3, 0.0),
    ):
        leaf = gathered.clone().requires_grad_()
        out, lse = kernel(leaf)
        ((out * grad_out).sum() + (lse * grad_lse).sum()).backward()
        results.append((out.detach(), lse.detach(), leaf.grad))
    for fused, explicit in zip(*results, strict=True):
        torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("tokens", "bucket_size"), [(64, 8), (50, 8), (37, 4), (130, 16)])
def test_causal_output_ignores_the_future_and_uses_the_past(tokens: int, bucket_size: int) -> None:
    """Changing every token after t leaves outputs up to t unchanged (even though later
    tokens change the hashes, the sort and so every chunk boundary of their rounds);
    changing the tokens before t changes the output at t."""
    torch.manual_seed(0)
    module = LSHAttention(DIM, (tokens,), n_hashes=2, bucket_size=bucket_size, causal=True)
    module.eval()
    x = _input((tokens,), seed=1)
    with torch.no_grad():
        out = module(x)
        for t in (0, 1, tokens // 3, tokens - 2):
            future = x.clone()
            future[:, t + 1 :] = _input((tokens - t - 1,), seed=2 + t)
            torch.testing.assert_close(module(future)[:, : t + 1], out[:, : t + 1])
        past = x.clone()
        past[:, : tokens - 1] = _input((tokens - 1,), seed=99)
        changed = (module(past)[:, -1] - out[:, -1]).abs().amax(dim=-1)
        assert (changed > 1e-3).all()


def test_causal_first_token_attends_only_to_itself() -> None:
    torch.manual_seed(0)
    module = LSHAttention(DIM, (40,), bucket_size=8, causal=True).eval()
    x = _input((40,))
    with torch.no_grad():
        _, v = module.qkv(x[:, :1]).chunk(2, dim=-1)
        torch.testing.assert_close(module(x)[:, 0], module.proj(v)[:, 0])


@pytest.mark.parametrize("grid", [(64,), (50,), (5, 7)])
def test_one_bucket_over_the_whole_sequence_is_full_attention(
    grid: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zero rotations put every token in bucket 0; with 2 chunks of 32 each query sees the
    whole (padded) sequence, so LSH must equal dense attention over the real tokens: padded
    keys get zero weight."""
    torch.manual_seed(0)
    module = LSHAttention(DIM, grid, bucket_size=32).eval()
    zeros = torch.zeros(module.num_heads, module.n_hashes, module.head_dim, 1)
    monkeypatch.setattr(module, "rotations", lambda device: zeros)
    x = _input(grid)
    with torch.no_grad():
        qk, _ = _shared_qk_and_v(module, x)
        assert module.hash_vectors(qk).eq(0).all()
        expected = full_shared_qk_attention(module, x)
        torch.testing.assert_close(module(x), expected, atol=1e-5, rtol=1e-4)


def test_padded_keys_get_zero_weight_with_real_hashing() -> None:
    """Attending across buckets with 2 chunks: every real key visible, padding masked out."""
    torch.manual_seed(0)
    module = LSHAttention(DIM, (50,), bucket_size=32, attend_across_buckets=True).eval()
    x = _input((50,))
    with torch.no_grad():
        torch.testing.assert_close(
            module(x), full_shared_qk_attention(module, x), atol=1e-5, rtol=1e-4
        )


def test_a_lone_token_attends_to_itself() -> None:
    """One real token padded to 64: its only visible key is itself, so out = proj(v)."""
    torch.manual_seed(0)
    module = LSHAttention(DIM, (1,)).eval()
    x = _input((1,))
    with torch.no_grad():
        _, v = module.qkv(x).chunk(2, dim=-1)
        torch.testing.assert_close(module(x), module.proj(v))
    info = module.runtime_info()
    assert info["padding"] == 63 and info["self_only_fraction"] == 1.0


# -- the contract -----------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [(50,), (7, 9)])
def test_padding_path_is_finite_and_reaches_every_parameter(grid: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    module = LSHAttention(DIM, grid, bucket_size=8, qkv_bias=True)
    x = _input(grid).requires_grad_()
    out = module(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_conforms_on_padded_grids_with_several_buckets() -> None:
    """The conformance kit (shape, gradients, batch independence, determinism, bfloat16)
    on grids that need padding and hash into 8 buckets."""
    check_mixer("lsh", options={"bucket_size": 8}, grids=((50,), (7, 9)))


def test_sample_alone_equals_sample_in_batch() -> None:
    torch.manual_seed(0)
    module = LSHAttention(DIM, (100,), bucket_size=8, n_hashes=3).eval()
    x = _input((100,), batch=4)
    with torch.no_grad():
        batched = module(x)
        for i in range(4):
            torch.testing.assert_close(module(x[i : i + 1])[0], batched[i], atol=1e-5, rtol=1e-5)


def test_deterministic_under_manual_seed_and_state_dict() -> None:
    x = _input((100,))

    def build(seed: int) -> LSHAttention:
        torch.manual_seed(seed)
        return LSHAttention(DIM, (100,), bucket_size=8).eval()

    first, again, other = build(7), build(7), build(8)
    assert first.hash_seed == again.hash_seed != other.hash_seed
    with torch.no_grad():
        assert torch.equal(first(x), again(x))
        assert torch.equal(first(x), first(x))
        other.load_state_dict(first.state_dict())  # the hash seed travels with the weights
        assert torch.equal(other(x), first(x))


def test_bfloat16_keeps_float32_rotations() -> None:
    torch.manual_seed(0)
    module = LSHAttention(DIM, (64,)).eval()
    x = _input((64,))
    vectors = torch.randn(1, module.num_heads, 64, module.head_dim)
    with torch.no_grad():
        reference = module(x)
        buckets = module.hash_vectors(vectors)
        module.to(torch.bfloat16)
        out = module(x.to(torch.bfloat16))
        assert torch.equal(module.hash_vectors(vectors), buckets)
    assert module.rotations(x.device).dtype == torch.float32
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    error = (out.float() - reference).abs().mean() / reference.abs().mean()
    assert error < 0.05


def test_wrong_token_count_is_an_error() -> None:
    module = LSHAttention(DIM, (8, 8))
    with pytest.raises(ValueError, match="64 tokens"):
        module(_input((60,)))


def test_num_heads_must_divide_dim() -> None:
    with pytest.raises(IncompatibleError) as info:
        LSHAttention(DIM, (7, 9), num_heads=3)
    message = str(info.value)
    assert "lsh" in message and "num_heads=3" in message and "(7, 9)" in message


@pytest.mark.parametrize(
    "options",
    [
        {"bucket_size": 0},
        {"n_hashes": 0},
        {"dropout": 1.5},
        {"causal": True, "attend_across_buckets": True},
    ],
)
def test_invalid_option_values(options: dict[str, object]) -> None:
    with pytest.raises(OptionError):
        LSHAttention(DIM, (16,), **options)


def test_registered_options_convert_from_strings() -> None:
    module = mixbench.create_mixer(
        "lsh", dim=DIM, grid=(40,), options={"bucket_size": "8", "attend_across_buckets": "yes"}
    )
    assert isinstance(module, LSHAttention)
    assert module.bucket_size == 8 and module.attend_across_buckets
    assert module(_input((40,))).shape == (2, 40, DIM)


# -- FLOPs ------------------------------------------------------------------------------------


def test_flop_counter_sees_no_quadratic_matmul() -> None:
    """The counted matmuls are the projections, the hash rotation and two chunked products
    (in the fused CPU kernel, whose formula mixbench registers), each linear in N for a
    fixed bucket count: nothing N x N. Extras then add no matmul of their own."""
    register_cpu_attention_formulas()
    batch, tokens = 2, 256
    module = LSHAttention(DIM, (tokens,), bucket_size=16, n_hashes=2)
    with FlopCounterMode(display=False) as counter:
        module(_input((tokens,), batch=batch))
    assert module.runtime_info()["chunk_kernel"] == "flash_attention_cpu"
    pairs = batch * module.num_heads * module.n_hashes * tokens  # (query, round) pairs
    projections = 2 * batch * tokens * DIM * 3 * DIM
    hashing = 2 * pairs * module.head_dim * module.n_buckets // 2
    attention = 2 * 2 * pairs * 2 * module.bucket_size * module.head_dim
    assert counter.get_total_flops() == projections + hashing + attention
    assert "chunk_matmuls" not in module.flop_breakdown(batch)


def test_extra_flops_add_the_fused_kernel_matmuls_when_uncounted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torch.utils import flop_counter

    kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    monkeypatch.delitem(flop_counter.flop_registry, kernel, raising=False)
    module = LSHAttention(DIM, (256,), bucket_size=16, n_hashes=2)
    assert "chunk_matmuls" not in module.flop_breakdown(2)  # no forward has run yet
    module(_input((256,)))
    pairs = 2 * module.num_heads * module.n_hashes * 256
    assert module.flop_breakdown(2)["chunk_matmuls"] == 2 * 2 * pairs * 2 * 16 * module.head_dim


def test_extra_flops_grow_like_n_log_n() -> None:
    small, large = LSHAttention(DIM, (1024,)), LSHAttention(DIM, (4096,))
    ratio = large.extra_flops(2).forward / small.extra_flops(2).forward
    assert 4.0 < ratio < 6.0  # N log N gives 4.8; quadratic attention would give 16
    sorts = 2 * small.num_heads * small.n_hashes
    assert small.flop_breakdown(2)["sort"] == sorts * 1024 * 10
    assert small.extra_flops(2).parts["sort"] == (sorts * 1024 * 10, 0)  # no backward
    assert small.extra_flops(4).forward == 2 * small.extra_flops(2).forward
