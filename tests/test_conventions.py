"""The FLOP and memory conventions of docs/conventions.md, checked on bench rows.

Every expected figure is derived here by hand from the mixer's shapes and the per-operation
rules (restated in ``by_rule``), not read back from the code that produces it: each
built-in mixer, in inference and training, on a grid its windows or chunks divide and on
one they do not.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from mixbench.bench.cell import run_cell

BATCH, DIM, HEADS = 2, 32, 4
HEAD_DIM = DIM // HEADS
WINDOW, BUCKET, ROUNDS = 4, 16, 2
GRIDS = {"divides": (8, 8), "pads": (6, 6)}  # by the window (4) and the chunk pair (32)
OPTIONS: dict[str, dict[str, Any]] = {
    "window": {"window_size": WINDOW},
    "lsh": {"bucket_size": BUCKET, "n_hashes": ROUNDS},
}
TIMING = {"warmup_iters": 1, "warmup_s": 0.0, "min_time_s": 0.0, "max_time_s": 0.02}


def bench(
    mixer: str, mode: str, grid: tuple[int, ...], level: str = "mixer", **options: Any
) -> dict[str, Any]:
    """The row of one cell (mixer level unless told)."""
    config = {
        "level": level, "mixer": mixer, "mixer_options": {**OPTIONS.get(mixer, {}), **options},
        "mode": mode, "optimizer": "sgd", "optimizer_options": {}, "lr": 1e-3,
        "tokens": math.prod(grid), "grid": list(grid), "image_size": None, "dim": DIM,
        "batch_size": BATCH, "preset": None, "device": "cpu", "dtype": "float32",
        "threads": 1, "compile": False, "seed": 0,
    }  # fmt: skip
    row = run_cell({"kind": "bench", "key": "k", "config": config, "settings": {"timing": TIMING}})
    assert row["status"] == "ok", row["reason"]
    return row


def by_rule(
    mode: str,
    macs: int = 0,
    elementwise: int = 0,
    softmax: int = 0,
    gelu: int = 0,
    no_grad: int = 0,
) -> int:
    """FLOPs of one step from the forward's operation counts (docs/conventions.md): a
    multiply-add is 2 forward and 4 backward; elementwise 1 and 1; a softmax score 5 and 4;
    a GELU 5 and 7; hashing and sorting have no backward."""
    forward = 2 * macs + elementwise + 5 * softmax + 5 * gelu + no_grad
    if mode == "infer":
        return forward
    return forward + 4 * macs + elementwise + 4 * softmax + 7 * gelu


def attention_counts(grid: tuple[int, ...]) -> dict[str, int]:
    tokens = math.prod(grid)
    scores = BATCH * HEADS * tokens**2
    macs = BATCH * tokens * DIM * 4 * DIM + 2 * scores * HEAD_DIM  # qkv, out; QK^T, PV
    return {"macs": macs, "elementwise": scores, "softmax": scores}  # scale, softmax


def window_counts(grid: tuple[int, ...], padded: bool, window: int = WINDOW) -> dict[str, int]:
    """Attention over each window's pairs: of real tokens, or of every slot (padded)."""
    pairs = 1
    for size in grid:
        lengths = [min(window, size - start) for start in range(0, size, window)]
        if padded:
            lengths = [window] * len(lengths)
        pairs *= sum(length**2 for length in lengths)
    scores = BATCH * HEADS * pairs
    macs = BATCH * math.prod(grid) * DIM * 4 * DIM + 2 * scores * HEAD_DIM
    return {"macs": macs, "elementwise": 2 * scores, "softmax": scores}  # scale, bias add


def lsh_counts(grid: tuple[int, ...]) -> dict[str, int]:
    tokens = math.prod(grid)
    buckets = math.ceil(tokens / (2 * BUCKET)) * 2  # padded length / bucket size
    sorts = BATCH * HEADS * ROUNDS
    queries = sorts * tokens  # (query, round) pairs of real tokens
    scores = queries * 2 * BUCKET
    return {
        # projections (shared QK and V, output), QK^T and PV per chunk pair, round weighting
        "macs": BATCH * tokens * DIM * 3 * DIM + 2 * scores * HEAD_DIM + queries * HEAD_DIM,
        # normalise keys (3) and scale queries (1); self and bucket masks; logsumexp
        "elementwise": 4 * queries * HEAD_DIM + 2 * scores + queries,
        "softmax": scores + queries,  # attention, then the rounds' weights
        # rotation, argmax and sort key, sort (comparisons)
        "no_grad": 2 * queries * HEAD_DIM * buckets // 2
        + queries * (buckets + 2)
        + queries * math.ceil(math.log2(tokens)),
    }


def expected_counts(mixer: str, grid: tuple[int, ...]) -> dict[str, int]:
    tokens = math.prod(grid)
    if mixer == "identity":
        return {}
    if mixer == "pooling":  # 3-wide: an axis of n has 3n - 2 in-bounds neighbours in all
        neighbours = math.prod(3 * size - 2 for size in grid)
        return {"elementwise": BATCH * DIM * (neighbours + tokens)}  # average, subtract
    if mixer == "mlp":
        hidden = round(tokens * 0.5)
        return {"macs": 2 * BATCH * DIM * tokens * hidden, "gelu": BATCH * DIM * hidden}
    if mixer == "attention":
        return attention_counts(grid)
    if mixer == "window":
        return window_counts(grid, padded=False)
    assert mixer == "lsh"
    return lsh_counts(grid)


MIXERS = ["identity", "pooling", "mlp", "attention", "window", "lsh"]


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("grid", list(GRIDS.values()), ids=list(GRIDS))
@pytest.mark.parametrize("mixer", MIXERS)
def test_model_flops_follow_the_rules(mixer: str, grid: tuple[int, ...], mode: str) -> None:
    row = bench(mixer, mode, grid)
    metrics = row["metrics"]
    assert row["conventions_version"] == 1
    assert metrics["model_flops"] == by_rule(mode, **expected_counts(mixer, grid))


@pytest.mark.parametrize("mixer", ["mlp", "attention", "window", "lsh"])
def test_matmul_dominated_mixers_train_at_about_three_times_inference(mixer: str) -> None:
    grid = GRIDS["divides"]
    ratio = (
        bench(mixer, "train", grid)["metrics"]["model_flops"]
        / (bench(mixer, "infer", grid)["metrics"]["model_flops"])
    )
    assert 2.6 < ratio <= 3.0


def test_pooling_training_counts_its_backward() -> None:
    infer = bench("pooling", "infer", GRIDS["pads"])["metrics"]
    train = bench("pooling", "train", GRIDS["pads"])["metrics"]
    assert train["model_flops"] == train["executed_flops"] == 2 * infer["model_flops"]


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_flash_and_math_attention_report_the_same_model_flops(mode: str) -> None:
    """The kernel changes what ran (the flash backward recomputes QK^T and the softmax
    weights), not the model figure."""
    grid = GRIDS["divides"]
    flash, math_path = (bench("attention", mode, grid, backend=b) for b in ("auto", "math"))
    assert flash["metrics"]["model_flops"] == math_path["metrics"]["model_flops"]
    if mode == "train":
        assert flash["runtime"]["mixer"]["sdpa_backend"] == "flash_attention"
        scores = BATCH * HEADS * math.prod(grid) ** 2
        recompute = 2 * scores * HEAD_DIM + 3 * scores  # QK^T; scale, subtract, exp
        executed = flash["metrics"]["executed_flops"] - math_path["metrics"]["executed_flops"]
        assert executed == recompute
        assert math_path["metrics"]["executed_flops"] == math_path["metrics"]["model_flops"]


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_in_a_block_the_mixer_states_its_part_and_the_counter_the_rest(mode: str) -> None:
    """The block's channel MLP (C -> 4C -> C, two matmuls the counter sees) adds to the
    attention mixer's stated figure, whichever kernel ran inside it."""
    grid = GRIDS["divides"]
    channel_mlp = 2 * BATCH * math.prod(grid) * DIM * 4 * DIM
    expected = by_rule(mode, **attention_counts(grid)) + by_rule(mode, macs=channel_mlp)
    for backend in ("auto", "math"):
        row = bench("attention", mode, grid, level="block", backend=backend)
        assert row["runtime"]["model_flops_source"] == "declared + counter"
        assert row["metrics"]["model_flops"] == expected


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_window_model_flops_count_real_tokens_and_executed_flops_the_padding(mode: str) -> None:
    """16 x 16 with w = 7: windows of 7, 7 and 2 real tokens per axis, padded to 3 x 7."""
    grid = (16, 16)
    metrics = bench("window", mode, grid, window_size=7)["metrics"]
    real, padded = (window_counts(grid, padded=p, window=7) for p in (False, True))
    assert real["softmax"] == BATCH * HEADS * (7**2 + 7**2 + 2**2) ** 2
    assert padded["softmax"] == BATCH * HEADS * 9 * 49**2
    assert metrics["model_flops"] == by_rule(mode, **real)
    assert metrics["executed_flops"] == by_rule(mode, **padded) > metrics["model_flops"]


def test_identity_uses_no_memory_and_pooling_does() -> None:
    """The harness's objective costs nothing measurable: identity reads ~0 (a scalar), in
    both modes, against pooling's output-sized tensors at the same shape."""
    grid = (16, 16)
    for mode in ("infer", "train"):
        identity = bench("identity", mode, grid)["metrics"]["peak_mem_bytes"]
        pooling = bench("pooling", mode, grid)["metrics"]["peak_mem_bytes"]
        assert pooling >= BATCH * 256 * DIM * 4  # at least its output
        assert identity < 0.05 * pooling


def test_weights_bytes_are_parameters_and_index_buffers_are_apart() -> None:
    metrics = bench("window", "infer", GRIDS["pads"])["metrics"]
    params = metrics["params"] * 4
    assert metrics["weights_bytes"] == params
    # position index (T x T), window and token orders, and the (nW, T, T) padding mask
    tokens, slots, per_window = 36, 4 * 16, 16
    index = (per_window**2 + slots + tokens) * 8
    assert metrics["nonpersistent_buffers_bytes"] == index + 4 * per_window**2 * 4
