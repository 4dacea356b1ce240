"""Floating-point operation counts: *model* FLOPs and *executed* FLOPs of one step.

The rules are written out in ``docs/conventions.md`` (convention ``CONVENTIONS_VERSION``);
in short, a FLOP is one floating-point operation, so a multiply-add is **2 FLOPs**, and
every step gets two figures:

* **executed FLOPs**: what the kernels that ran did. ``FlopCounterMode`` counts matmuls,
  convolutions and the fused attention kernels as they ran (padded windows, the flash
  backward's recomputation of QK^T, whichever kernel was chosen); a module adds what the
  counter cannot see (pooling, softmax, masks, hashing, sorting, FFTs) with
  ``extra_flops``.
* **model FLOPs**: the work the mathematical operation needs on the real tokens, whatever
  kernel ran: its forward and, in a training step, the standard backward (``FlopTally``
  applies the per-operation rules: 2x forward for a matmul, and stated counts for
  elementwise work, softmax and GELU; no recomputation, no padding). A module states them
  with ``model_flops``; where no module does, the executed counts stand in (the counter
  fallback), which is exact for plain matmul layers.

A module may define either method, or both::

    def model_flops(self, batch_size: int) -> FlopTally    # its whole subtree
    def extra_flops(self, batch_size: int) -> FlopTally | int   # its own uncounted work

Both describe **one forward pass** with its backward; the harness keeps the backward column
only in a training step and multiplies by the number of forward passes (SAM makes two).
``extra_flops`` covers the module's own work, not its children's (every submodule is asked);
a bare int is read as forward FLOPs of linear elementwise work, whose backward costs the
same (the elementwise rule; return a ``FlopTally`` to say otherwise, e.g. ``no_grad`` for
hashing). ``model_flops`` covers the module and everything under it: the counter's counts
inside that subtree are replaced by it, so a mixer stating its model FLOPs is read alike at
the mixer, block and model levels.

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

CONVENTIONS_VERSION = 1  # docs/conventions.md; rows without the field predate it (version 0)

# Per-element FLOPs of the work no counter sees (docs/conventions.md, "Per operation").
SOFTMAX_FORWARD = 5  # max, subtract, exp, sum, divide
SOFTMAX_BACKWARD = 4  # y * g, its row sum, subtract, multiply by y
GELU_FORWARD = 5  # 0.5 * x * (1 + erf(x / sqrt 2)): divide, erf, add, multiply, multiply
GELU_BACKWARD = 7  # (Phi(x) + x phi(x)) * g, Phi kept from the forward: x^2, scale, exp,
#                    scale, multiply by x, add Phi, multiply by the incoming gradient
MATMUL_BACKWARD = 2  # gradients of both operands: two matmuls of the forward's size


@dataclass
class FlopTally:
    """Forward and backward FLOPs of one forward pass, by named part.

    Build it with the rule-applying helpers, which return the tally so calls chain::

        FlopTally().matmul("qkv", batch * tokens * dim * 3 * dim).softmax("softmax", scores)

    ``parts`` maps a part's name to ``(forward, backward)``; adding a part twice sums it.
    """

    parts: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, part: str, forward: int, backward: int) -> FlopTally:
        """A part with explicit counts, for work the helpers below do not describe."""
        old_forward, old_backward = self.parts.get(part, (0, 0))
        self.parts[part] = (old_forward + int(forward), old_backward + int(backward))
        return self

    def matmul(self, part: str, multiply_adds: int) -> FlopTally:
        """A matmul (or convolution) of ``multiply_adds`` MACs: 2 FLOPs each forward, and
        twice the forward backward (the gradients of both operands)."""
        forward = 2 * int(multiply_adds)
        return self.add(part, forward, MATMUL_BACKWARD * forward)

    def elementwise(self, part: str, flops: int) -> FlopTally:
        """Elementwise arithmetic and reductions (add, scale, mask fill, sum, average): one
        FLOP per operation forward, the same backward (one chain-rule product or
        pass-through add per forward operation)."""
        return self.add(part, flops, flops)

    def softmax(self, part: str, scores: int) -> FlopTally:
        """A softmax over ``scores`` entries: ``SOFTMAX_FORWARD`` per entry forward,
        ``SOFTMAX_BACKWARD`` backward."""
        return self.add(part, SOFTMAX_FORWARD * scores, SOFTMAX_BACKWARD * scores)

    def gelu(self, part: str, elements: int) -> FlopTally:
        """An exact (erf) GELU over ``elements``: ``GELU_FORWARD`` / ``GELU_BACKWARD``."""
        return self.add(part, GELU_FORWARD * elements, GELU_BACKWARD * elements)

    def no_grad(self, part: str, flops: int) -> FlopTally:
        """Work with no backward: hashing, sorting, comparisons, index arithmetic."""
        return self.add(part, flops, 0)

    def merge(self, other: FlopTally, prefix: str = "") -> FlopTally:
        """Add every part of ``other`` (names prefixed by ``prefix``)."""
        for part, (forward, backward) in other.parts.items():
            self.add(prefix + part, forward, backward)
        return self

    @property
    def forward(self) -> int:
        return sum(forward for forward, _ in self.parts.values())

    @property
    def backward(self) -> int:
        return sum(backward for _, backward in self.parts.values())

    def step(self, backward: bool) -> int:
        """FLOPs of one forward pass, plus its backward when ``backward``."""
        return self.forward + (self.backward if backward else 0)


def as_tally(value: FlopTally | int, part: str) -> FlopTally:
    """A module's ``extra_flops`` answer as a tally (a bare int: elementwise, see above)."""
    if isinstance(value, FlopTally):
        return value
    return FlopTally().elementwise(part, int(value))


@dataclass(frozen=True)
class FlopResult:
    """FLOPs of one step: model and executed, and how the executed figure was obtained."""

    model_flops: int  # declared model FLOPs, the counter standing in where none is declared
    executed_flops: int  # counted + extra
    counted_flops: int  # FlopCounterMode (matmul, conv, attention kernels), as they ran
    extra_flops: int  # analytic: extra_flops() of every submodule, forward (+ backward)
    macs: int  # counted_flops / 2
    forward_passes: int
    backward: bool  # the step ran a backward pass, so backward counts are included
    model_source: str  # declared | counter | declared + counter
    model_parts: dict[str, int] = field(default_factory=dict)  # declared parts, whole step
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


def module_extra_flops(module: Any, batch_size: int) -> FlopTally:
    """``extra_flops(batch_size)`` of ``module`` and all its submodules, as one tally."""
    total = FlopTally()
    for name, sub in module.named_modules():
        method = getattr(sub, "extra_flops", None)
        if callable(method):
            prefix = f"{name}: " if name else ""
            total.merge(as_tally(method(batch_size), "extra"), prefix)
    return total


def declaring_modules(module: Any) -> dict[str, Any]:
    """The outermost submodules (by qualified name, "" for ``module`` itself) that state
    their model FLOPs; a declaring module's own submodules are covered by its statement."""
    found: dict[str, Any] = {}
    for name, sub in module.named_modules():
        inside = any(outer == "" or name.startswith(outer + ".") for outer in found)
        if not inside and callable(getattr(sub, "model_flops", None)):
            found[name] = sub
    return found


class SubtreeCounts:
    """Counted FLOPs of the ops that run inside given modules, forward and backward.

    Read from the counter's running total between hooks: a module's forward is the span
    between its forward pre-hook and its forward hook; its backward the span between the
    gradient of its output arriving and the gradient of its inputs being complete (tensor
    hooks). ``FlopCounterMode``'s own per-module table is not used: it loses the backward
    of a module whose output is the root of ``autograd.grad``. A module whose inputs need
    no gradient has no end mark; its backward span runs to the end of the step.
    """

    def __init__(self, counter: Any, modules: dict[str, Any]) -> None:
        self.counter = counter
        self.calls: list[dict[str, Any]] = []
        self.handles: list[Any] = []
        for name, sub in modules.items():
            self.handles.append(sub.register_forward_pre_hook(self._enter(name)))
            self.handles.append(sub.register_forward_hook(self._leave(name)))
        self.open: dict[str, dict[str, Any]] = {}

    def _total(self) -> int:
        return int(self.counter.get_total_flops())

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any) -> None:
            call: dict[str, Any] = {"name": name, "start": self._total(), "grad_in": None}
            self.open[name] = call
            self.calls.append(call)
            for tensor in _grad_tensors(args):
                tensor.register_hook(lambda grad, call=call: call.update(grad_in=self._total()))

        return hook

    def _leave(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            call = self.open.pop(name)
            call["forward"] = self._total() - call["start"]
            call["grad_out"] = None

            def arrived(grad: Any, call: dict[str, Any] = call) -> None:
                if call["grad_out"] is None:
                    call["grad_out"] = self._total()

            for tensor in _grad_tensors(output):
                tensor.register_hook(arrived)

        return hook

    def finish(self) -> dict[str, int]:
        """Remove the hooks; counted FLOPs per module name, over every call."""
        for handle in self.handles:
            handle.remove()
        end, counts = self._total(), dict[str, int]()
        for call in self.calls:
            backward = 0
            if call.get("grad_out") is not None:
                backward = (call["grad_in"] or end) - call["grad_out"]
            counts[call["name"]] = counts.get(call["name"], 0) + call["forward"] + backward
        return counts


def _grad_tensors(value: Any) -> list[Any]:
    import torch
    from torch.utils._pytree import tree_flatten

    leaves, _ = tree_flatten(value)
    return [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]


def count_flops(
    step: Callable[[], Any],
    module: Any,
    batch_size: int,
    *,
    forward_passes: Callable[[], int] | int = 1,
    backward: bool = False,
) -> FlopResult:
    """Run ``step`` once under ``FlopCounterMode``; return its model and executed FLOPs.

    ``forward_passes`` is how many forward passes the step made (an int, or a function
    read after the step: a SAM training step evaluates its closure twice); ``backward``
    says whether each pass was followed by a backward pass (a training step).
    """
    from torch.utils.flop_counter import FlopCounterMode

    register_cpu_attention_formulas()
    declared = declaring_modules(module)
    counter = FlopCounterMode(display=False)
    inside = SubtreeCounts(counter, {n: m for n, m in declared.items() if n})
    with counter:
        try:
            step()
        finally:
            subtree_counted = inside.finish()
    counted = int(counter.get_total_flops())
    subtree_counted[""] = counted  # a declaring root covers everything that ran
    by_op = {
        str(op).split(".")[-1] if "." in str(op) else str(op): int(n)
        for op, n in counter.get_flop_counts().get("Global", {}).items()
    }
    passes = forward_passes() if callable(forward_passes) else int(forward_passes)

    # Executed: what the counter saw, plus every module's uncounted work as it ran.
    extras = module_extra_flops(module, batch_size)
    extra = passes * extras.step(backward)

    # Model: declared subtrees replace the counter's and the extras' figures inside them.
    model = counted + extra
    parts: dict[str, int] = {}
    for name, sub in declared.items():
        model -= subtree_counted.get(name, 0)
        model -= passes * module_extra_flops(sub, batch_size).step(backward)
        tally: FlopTally = sub.model_flops(batch_size)
        model += passes * tally.step(backward)
        prefix = f"{name}: " if name else ""
        for part, (fwd, bwd) in tally.parts.items():
            parts[prefix + part] = passes * (fwd + (bwd if backward else 0))
    if not declared:
        source = "counter"
    elif "" in declared:
        source = "declared"
    else:
        source = "declared + counter"
    return FlopResult(
        model_flops=model,
        executed_flops=counted + extra,
        counted_flops=counted,
        extra_flops=extra,
        macs=counted // 2,
        forward_passes=passes,
        backward=backward,
        model_source=source,
        model_parts=parts,
        by_op=by_op,
    )
