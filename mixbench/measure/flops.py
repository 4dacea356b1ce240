"""Floating-point operation counts: the automatic counter plus what it cannot see.

Units: a FLOP is one floating-point operation, so a multiply-add is **2 FLOPs**;
``macs`` (multiply-accumulates) are reported separately and only for what the counter
measures (matmuls, convolutions, attention kernels), where MACs = FLOPs / 2.

``torch.utils.flop_counter.FlopCounterMode`` counts matmuls, convolutions and the fused
attention kernels, but not pooling, softmax, normalisation, elementwise work, hashing or
sorting (DESIGN.md, "Known pitfalls"). A pooling mixer therefore reads as ~0 FLOPs unless
it says what it does. A module may define

    def extra_flops(self, batch_size: int) -> int

returning the forward FLOPs of its *own* work that the counter misses (not its children's:
every submodule that defines it is asked and the answers are summed). Analytic extras
are forward-pass counts; in a training step they are counted once per forward pass and
their backward is not added (hashing and sorting have none; say so if yours does).

One gap of the counter itself is closed here: the fused CPU attention kernels
(``_scaled_dot_product_flash_attention_for_cpu`` and its backward) have no formula in
torch's registry, so attention through ``scaled_dot_product_attention`` on CPU would count
as zero. We register, process-wide and once, the formulas torch uses for the CUDA kernels.
It is registered globally rather than per counter so that a mixer which checks
``flop_registry`` to decide whether to add those matmuls itself sees them counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FlopResult:
    """FLOPs of one step: counted by the tracer, plus analytic extras."""

    flops: int  # counted + extra
    counted_flops: int  # FlopCounterMode (matmul, conv, attention kernels)
    extra_flops: int  # analytic: sum of extra_flops() over submodules x forward passes
    macs: int  # counted_flops / 2
    forward_passes: int
    by_op: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def register_cpu_attention_formulas() -> None:
    """Teach ``FlopCounterMode`` the fused CPU attention kernels (idempotent)."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(forward)
        def forward_flops(q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> int:
            return int(flop_counter.sdpa_flop_count(q, k, v))

    if backward is not None and backward not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(backward)
        def backward_flops(grad: Any, q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> int:
            count = flop_counter.sdpa_backward_flop_count
            return int(count(grad, q, k, v))  # type: ignore[no-untyped-call]


def module_extra_flops(module: Any, batch_size: int) -> int:
    """Sum of ``extra_flops(batch_size)`` over ``module`` and all its submodules."""
    total = 0
    for sub in module.modules():
        method = getattr(sub, "extra_flops", None)
        if callable(method):
            total += int(method(batch_size))
    return total


def count_flops(
    step: Callable[[], Any],
    module: Any,
    batch_size: int,
    *,
    forward_passes: Callable[[], int] | int = 1,
) -> FlopResult:
    """Run ``step`` once under ``FlopCounterMode`` and add ``module``'s analytic extras.

    ``forward_passes`` is how many forward passes the step made (an int, or a function
    read after the step: a SAM training step evaluates its closure twice).
    """
    from torch.utils.flop_counter import FlopCounterMode

    register_cpu_attention_formulas()
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    counted = int(counter.get_total_flops())
    by_op = {
        str(op).split(".")[-1] if "." in str(op) else str(op): int(n)
        for op, n in counter.get_flop_counts().get("Global", {}).items()
    }
    passes = forward_passes() if callable(forward_passes) else int(forward_passes)
    extra = passes * module_extra_flops(module, batch_size)
    return FlopResult(
        flops=counted + extra,
        counted_flops=counted,
        extra_flops=extra,
        macs=counted // 2,
        forward_passes=passes,
        by_op=by_op,
    )
