"""mixbench's built-in mixers against the implementations a user would otherwise use.

Run by ``nox -s peers`` in its own environment (timm 1.0, reformer-pytorch 1.4). Each case
builds a mixbench mixer and its peer for the same function on the same shape, then, in this
one process, times both (``torch.utils.benchmark``, 2 threads, blocked autorange medians) in
inference (``torch.no_grad``) and training (forward and backward of a fixed output
gradient), in back-to-back (mixbench, peer) pairs so that load on the machine hits both
alike; the ratio is the median over the pairs. It prints mixbench time / peer time, and
checks that the two compute the same function where they should, with the peer's weights
copied into the mixbench module:

* attention: timm ``Attention`` (same qkv layout, same SDPA call);
* window: the attention path of timm's ``SwinTransformerBlock`` (``_attn``: cyclic shift,
  window partition, window attention with relative position bias and shift mask); the whole
  block (norms and MLP too) is also timed, as the issue that set the targets did;
* pooling: timm MetaFormer ``Pooling`` (no weights) on the layout timm's PoolFormer gives it
  (contiguous NCHW), and again on the same channels-last memory as mixbench's;
* mlp: timm ``Mlp`` applied across the token axis;
* lsh: reformer-pytorch ``LSHSelfAttention`` in both masking settings. Its rotations are
  drawn afresh every forward, so outputs differ at random; the check uses the case where
  both must equal full shared-QK attention: N = 2 x bucket size, one hash round, attending
  across buckets.

Memory comes back from the allocator, not the OS, on both sides: glibc's default returns
freed memory above an adaptive threshold to the OS, so whether a forward's large
temporaries page-fault on every call depends on what the process allocated before (in one
process state the peer's two 6.4 MB pooling buffers made its forward four times slower than
in another; mixbench's one buffer did not). :func:`steady_allocator` pins glibc's
thresholds, as a long-running training process settles, so that the ratios compare kernels;
the environment records it.

Each row also carries the arithmetic floor: mixbench's model FLOPs for the step (its
``model_flops``) at this machine's best measured matmul rate (a 1024-cube matmul on the same
threads, probed before and after the cases; the faster probe is used): the least time that
work can take here. Where the work is matmuls that any implementation of the same function
must do, a target ratio under floor / peer time cannot be met by a faster mixer, only by a
slower peer.

``--out DIR`` writes the measured ratios and the environment to ``DIR/peers.json``
(``results/studies/peers.py`` renders it).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils import benchmark

import mixbench
from mixbench.measure.probes import matmul_peak
from mixbench.measure.stats import median_ci95

THREADS = 2
REPEATS = 9  # back-to-back (mixbench, peer) measurement pairs per mode


@dataclass
class Case:
    """One comparison: two modules computing the same function, and their inputs."""

    name: str
    shape: str
    ours: nn.Module
    peer: nn.Module
    ours_input: torch.Tensor
    peer_input: Callable[[torch.Tensor], torch.Tensor]  # ours' input -> peer's layout
    peer_output: Callable[[torch.Tensor], torch.Tensor]  # peer's output -> ours' layout
    equality: str  # what the equality check compares ("" when not comparable here)
    peer_runs: str  # what the peer's timed step runs, layout conversions included or not


def _copy(target: nn.Module, pairs: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, value in pairs.items():
            target.get_parameter(name).copy_(value)


def attention_case() -> Case:
    from timm.models.vision_transformer import Attention

    peer = Attention(64, num_heads=4, qkv_bias=False)
    ours = mixbench.create_mixer("attention", dim=64, grid=(1024,), num_heads=4)
    _copy(ours, {"qkv.weight": peer.qkv.weight, "proj.weight": peer.proj.weight})
    _copy(ours, {"proj.bias": peer.proj.bias})
    return Case(
        "attention",
        "N=1024, C=64, 4 heads, B=8",
        ours,
        peer,
        torch.randn(8, 1024, 64),
        lambda x: x,
        lambda y: y,
        "outputs, weights copied",
        "timm `Attention`: qkv, SDPA, proj",
    )


def window_cases() -> list[Case]:
    from timm.models.swin_transformer import SwinTransformerBlock

    block = SwinTransformerBlock(64, (32, 32), num_heads=4, window_size=8, shift_size=4)
    ours = mixbench.create_mixer("window", dim=64, grid=(32, 32), index=1, window_size=8)
    attn = block.attn
    _copy(
        ours,
        {
            "qkv.weight": attn.qkv.weight,
            "qkv.bias": attn.qkv.bias,
            "proj.weight": attn.proj.weight,
            "proj.bias": attn.proj.bias,
            "relative_position_bias": attn.relative_position_bias_table,
        },
    )

    class ShiftedWindowAttention(nn.Module):
        """The token-mixing path of the Swin block, nothing else."""

        def __init__(self) -> None:
            super().__init__()
            self.block = block

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block._attn(x)

    to_grid: Callable[[torch.Tensor], torch.Tensor] = lambda x: x.view(8, 32, 32, 64)  # noqa: E731
    from_grid: Callable[[torch.Tensor], torch.Tensor] = lambda y: y.reshape(8, 1024, 64)  # noqa: E731
    x = torch.randn(8, 1024, 64)
    shape = "32x32, w=8, shifted, C=64, 4 heads, B=8"
    attention_path = (
        "timm `SwinTransformerBlock._attn` on (B, H, W, C): roll, partition, window attention "
        "with bias and shift mask, merge, roll"
    )
    whole_block = "timm `SwinTransformerBlock`: the same plus 2 LayerNorms, MLP 4x, residuals"
    return [
        Case(
            "window",
            shape,
            ours,
            ShiftedWindowAttention(),
            x,
            to_grid,
            from_grid,
            "outputs",
            attention_path,
        ),
        Case(
            "window vs whole Swin block", shape, ours, block, x, to_grid, from_grid, "", whole_block
        ),
    ]


def pooling_cases() -> list[Case]:
    """timm's PoolFormer feeds its ``Pooling`` contiguous NCHW activations (its stem is a
    convolution and its norm a GroupNorm, both NCHW), so ``avg_pool2d`` runs its NCHW
    kernel; mixbench's tokens (B, N, C) are channels-last in memory, so its pool runs the
    channels-last kernel, vectorised over C. The first case is that like-for-like pair;
    the second hands the peer the same channels-last memory, where both run one kernel."""
    from timm.models.metaformer import Pooling

    ours = mixbench.create_mixer("pooling", dim=64, grid=(56, 56))
    x = torch.randn(8, 56 * 56, 64)
    from_grid: Callable[[torch.Tensor], torch.Tensor] = lambda y: y.flatten(2).transpose(1, 2)  # noqa: E731
    shape = "56x56, pool 3, C=64, B=8"
    return [
        Case(
            "pooling",
            shape,
            ours,
            Pooling(3),
            x,
            lambda x: x.transpose(1, 2).reshape(8, 64, 56, 56).contiguous(),
            from_grid,
            "outputs",
            "timm MetaFormer `Pooling` (avg_pool2d - x) on contiguous NCHW, the layout timm's "
            "PoolFormer gives it (copied outside the timed step)",
        ),
        Case(
            "pooling, peer on the same memory",
            shape,
            ours,
            Pooling(3),
            x,
            lambda x: x.transpose(1, 2).reshape(8, 64, 56, 56),  # a channels-last view
            from_grid,
            "outputs",
            "timm MetaFormer `Pooling` on a channels-last view of mixbench's tokens: the same "
            "kernel as mixbench's",
        ),
    ]


def mlp_case() -> Case:
    from timm.layers import Mlp

    class TokenMixingMlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = Mlp(196, 98)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mlp(x.transpose(1, 2)).transpose(1, 2)

    peer = TokenMixingMlp()
    ours = mixbench.create_mixer("mlp", dim=64, grid=(14, 14))
    _copy(
        ours,
        {
            f"{layer}.{kind}": peer.mlp.get_parameter(f"{layer}.{kind}")
            for layer in ("fc1", "fc2")
            for kind in ("weight", "bias")
        },
    )
    return Case(
        "mlp",
        "196 tokens (14x14), hidden 98, C=64, B=8",
        ours,
        peer,
        torch.randn(8, 196, 64),
        lambda x: x,
        lambda y: y,
        "outputs, weights copied",
        "timm `Mlp` (fc1, GELU, fc2) over the token axis, transposes in the timed step",
    )


def _lsh_pair(tokens: int, across: bool, n_hashes: int = 4) -> tuple[nn.Module, nn.Module]:
    from reformer_pytorch import LSHSelfAttention

    options: dict[str, Any] = {
        "bucket_size": 64,
        "n_hashes": n_hashes,
        "attend_across_buckets": across,
    }
    peer = LSHSelfAttention(64, heads=4, **options)
    ours = mixbench.create_mixer("lsh", dim=64, grid=(tokens,), num_heads=4, **options)
    qkv = torch.cat([peer.toqk.weight, peer.tov.weight])
    _copy(ours, {"qkv.weight": qkv, "proj.weight": peer.to_out.weight})
    _copy(ours, {"proj.bias": peer.to_out.bias})
    return ours, peer


def lsh_cases() -> list[Case]:
    cases = []
    for across, label in ((True, "attending across buckets"), (False, "other buckets masked")):
        ours, peer = _lsh_pair(4096, across)
        cases.append(
            Case(
                f"lsh, {label}",
                "N=4096, bucket 64, 4 hashes, C=64, 4 heads, B=2",
                ours,
                peer,
                torch.randn(2, 4096, 64),
                lambda x: x,
                lambda y: y,
                "",
                "reformer-pytorch `LSHSelfAttention`, the same masking setting",
            )
        )
    return cases


def lsh_equality() -> float:
    """Largest output difference where both must be full shared-QK attention: N = 2 x bucket
    size, one hash round, every key in a query's two chunks visible. (With more rounds they
    differ by design: reformer-pytorch sorts all rounds as one sequence, so a round's first
    chunk looks back into the previous round's last chunk; mixbench stays within a round.)"""
    ours, peer = _lsh_pair(128, across=True, n_hashes=1)
    x = torch.randn(2, 128, 64)
    with torch.no_grad():
        return float((ours(x) - peer(x)).abs().max())


def _timer(module: nn.Module, x: torch.Tensor, training: bool) -> benchmark.Timer:
    if training:
        x = x.detach().requires_grad_()
        grad = torch.randn_like(module(x))

        def step() -> None:
            module(x).backward(grad)

    else:

        def step() -> None:
            with torch.no_grad():
                module(x)

    return benchmark.Timer("step()", globals={"step": step}, num_threads=THREADS)


def measure(case: Case, training: bool, min_run_time: float) -> dict[str, float]:
    """Medians (s) of mixbench and peer over ``REPEATS`` back-to-back pairs, and the median
    of the pairs' ratios with its order-statistic confidence interval (distribution-free;
    96 % with 9 pairs). On a shared machine the load drifts within seconds; a pair sees
    nearly the same load, so the median pair ratio is steadier than a ratio of medians. An
    interval that holds 1 is parity: the run cannot tell the two apart."""
    timers = {
        "mixbench": _timer(case.ours, case.ours_input, training),
        "peer": _timer(case.peer, case.peer_input(case.ours_input), training),
    }
    samples: dict[str, list[float]] = {"mixbench": [], "peer": []}
    for _ in range(REPEATS):
        for name, timer in timers.items():
            samples[name].append(timer.blocked_autorange(min_run_time=min_run_time).median)
    ratios = [ours / peer for ours, peer in zip(samples["mixbench"], samples["peer"], strict=True)]
    medians = {name: _median(values) for name, values in samples.items()}
    low, high, coverage = median_ci95(ratios)
    return {
        **medians,
        "ratio": _median(ratios),
        "ratio_low": low,
        "ratio_high": high,
        "ratio_coverage": coverage,
    }


def _ratio(timing: dict[str, float]) -> str:
    return f"{timing['ratio']:.3f} [{timing['ratio_low']:.3f}, {timing['ratio_high']:.3f}]"


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def model_flops(case: Case) -> dict[str, int] | None:
    """mixbench's declared model FLOPs for the inference and the training step."""
    declared = getattr(case.ours, "model_flops", None)
    if declared is None:
        return None
    tally = declared(case.ours_input.shape[0])
    return {"inference": tally.step(backward=False), "training": tally.step(backward=True)}


def check_equal(case: Case) -> float | None:
    if not case.equality:
        return None
    with torch.no_grad():
        ours = case.ours(case.ours_input)
        peer = case.peer_output(case.peer(case.peer_input(case.ours_input)))
    return float((ours - peer).abs().max())


def steady_allocator() -> str:
    """Pin glibc malloc's thresholds (mmap at 32 MiB, its maximum; no trimming below 1 GiB):
    freed blocks stay in the heap for the next call, as in a process that has run a while,
    instead of page-faulting afresh on every call when the adaptive defaults return them to
    the OS. Returns what was done, for the environment record."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        trim, mmap = libc.mallopt(-1, 1 << 30), libc.mallopt(-3, 32 << 20)  # M_TRIM/M_MMAP
    except (OSError, AttributeError):
        return "allocator defaults (no glibc mallopt)"
    if trim != 1 or mmap != 1:
        return "allocator defaults (mallopt refused)"
    return "glibc malloc: mmap threshold 32 MiB, trim threshold 1 GiB"


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    import reformer_pytorch  # noqa: F401
    import timm

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": __import__("os").cpu_count(),
        "threads": THREADS,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "reformer_pytorch": version("reformer-pytorch"),
        "python": platform.python_version(),
        "load_average_start": __import__("os").getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write peers.json into this directory")
    parser.add_argument("--min-run-time", type=float, default=0.3, help="seconds per block")
    parser.add_argument("--only", help="comma list of case name prefixes")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    env = {**environment(), "allocator": steady_allocator()}
    peaks = [matmul_peak(threads=THREADS)["matmul_gflops"]]
    cases = [attention_case(), *window_cases(), *pooling_cases(), mlp_case(), *lsh_cases()]
    if args.only:
        cases = [c for c in cases if any(c.name.startswith(p) for p in args.only.split(","))]
    for case in cases:
        case.ours.eval()
        case.peer.eval()
    rows = []
    print(f"mixbench / peer: median ratio of {REPEATS} back-to-back blocked-autorange pairs")
    for case in cases:
        row: dict[str, Any] = {"case": case.name, "shape": case.shape, "peer": case.peer_runs}
        for mode, training in (("inference", False), ("training", True)):
            timing = measure(case, training, args.min_run_time)
            row[mode] = {key: round(value, 6) for key, value in timing.items()}
        difference = check_equal(case)
        if case.name.startswith("lsh"):
            difference = lsh_equality() if "across" in case.name else None
            row["equality"] = (
                "N=128, bucket 64, 1 round: both full shared-QK attention"
                if difference is not None
                else ""
            )
        else:
            row["equality"] = case.equality
        row["max_abs_difference"] = difference
        row["model_flops"] = model_flops(case)
        rows.append(row)
        print(
            f"{case.name:32s} inference {_ratio(row['inference'])}  "
            f"training {_ratio(row['training'])}  "
            f"max |diff| {difference if difference is not None else '-'}",
            flush=True,
        )
    peaks.append(matmul_peak(threads=THREADS)["matmul_gflops"])
    env["matmul_gflops"] = round(max(peaks), 1)
    print(f"matmul peak {max(peaks):.1f} GFLOP/s (probes: {', '.join(f'{p:.1f}' for p in peaks)})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {"environment": env, "rows": rows}
        (args.out / "peers.json").write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.out / 'peers.json'}")


if __name__ == "__main__":
    main()
