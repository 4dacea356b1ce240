"""One bench cell: build a mixer, block or model, measure it, and return a plain-JSON row.

``run_cell`` is what an executor runs (in an isolated worker process, see
``mixbench.runs.worker``); it never raises. Every outcome is a row with a status:

* ``ok``: measured;
* ``skipped``: a valid option that cannot work with this grid (``IncompatibleError``),
  with the mixer's message as the reason;
* ``oom``: the allocator ran out of memory;
* ``error``: any other exception (type and message), or a non-finite output or loss.

Per cell, in this order: seed and threads are fixed; the module, inputs and (train mode)
optimizer are built; with ``compile`` the first call is timed on its own as ``compile_s``;
FLOPs are counted on the eager module; the step is timed (``mixbench.measure.timing``)
between two timings of a fixed reference workload (``mixbench.measure.reference``: how
fast the machine was around the cell, which ``mixbench compare`` corrects drift with);
then, in a separate pass since profiling perturbs timing, the step's peak memory is measured
(``mixbench.measure.memory``).

Modes: ``infer`` is one forward under ``torch.no_grad``; ``train`` is
``optimizer.step(closure)`` where the closure zeroes gradients, runs forward and backward
and returns the loss, so the optimizer's own work (and SAM's second pass) is part of the
step's latency, and its state is reported as ``optimizer_state_bytes``. At the mixer and
block levels the inputs require grad, as inside a network, so backward includes the input
gradient; a module without parameters (pooling) has no optimizer step, only forward and
backward (``runtime.optimizer_step`` is false). The objective costs the harness next to no
memory (see ``Steps``), so a training step's peak is the module's.

dtypes: in ``infer`` mode the module and inputs are cast with ``.to(dtype)`` (the
deployment question); in ``train`` mode weights stay float32 and the step runs under
``torch.autocast`` (mixed-precision training as practised).

Row schema (``schema`` 1), one JSON object per cell, written once and never edited::

    {"schema": 1, "conventions_version": 1, "kind": "bench", "key": str,
     "status": "ok|oom|error|timeout|skipped",
     "reason": str | null, "run_id": str | null, "started_at": ISO-8601, "duration_s": float,
     "config": {level, mixer, mixer_options, optimizer, optimizer_options, lr, mode,
                tokens, grid, image_size, dim, batch_size, preset, device, dtype, threads,
                compile, seed},
     "metrics": {latency_ms_median, latency_ms_iqr, latency_ms_ci95: [lo, hi],
                 latency_rel_iqr, noisy, samples_per_s, tokens_per_s,
                 peak_mem_bytes, memory_method, weights_bytes, nonpersistent_buffers_bytes,
                 inputs_bytes, optimizer_state_bytes, params, model_flops, executed_flops,
                 flops_counted, flops_analytic_extra, macs, model_gflops_per_s,
                 executed_gflops_per_s, model_frac_peak_flops, executed_frac_peak_flops,
                 compile_s},
     "samples_ms": [per-iteration latency of each timed block, ms],
     "measurement": {warm-up and sampling settings, block size, stop reason, ...,
                     reference_ms: the reference workload's time around the cell},
     "runtime": {"mixer": runtime_info() of the mixer(s), "flops_by_op": {...},
                 "model_flops_source": str, "model_flops_by_part": {...},
                 "complexity": str, "plugin": str, "grid_layout": str}}

Units and conventions (``conventions_version``; docs/conventions.md): latency in
milliseconds per batch; memory in bytes; FLOPs per step, 2 per multiply-add (``macs``
separately), as *model* FLOPs (the operation on real tokens, forward plus the standard
backward in train mode: compare mixers with these) and *executed* FLOPs (what the kernels
that ran did: padding, recomputation; hardware efficiency); ``*_gflops_per_s`` in 10^9
FLOP/s. Rows without ``conventions_version`` predate it: their ``flops``,
``gflops_per_s`` and ``frac_peak_flops`` are the counter plus forward-only extras.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mixbench.errors import ContractError, IncompatibleError, is_out_of_memory
from mixbench.measure.flops import CONVENTIONS_VERSION
from mixbench.measure.stats import median
from mixbench.runs.rows import iso_time, plain, row_skeleton

NUM_CLASSES = 10  # model level: a small head, so the mixer and shell dominate
VOCAB_SIZE = 1000  # model level on sequences: token ids below this


class NonFiniteError(RuntimeError):
    """The step produced NaN or infinity."""


@dataclass
class Built:
    """What a cell measures: the module, its inputs, targets (model level) and token grid."""

    module: Any
    inputs: Any
    targets: Any
    tokens: int
    grid: tuple[int, ...]


def _dtype(name: str) -> Any:
    import torch

    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            name
        ]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}") from None


def build(config: Mapping[str, Any]) -> Built:
    """The module and random inputs of a cell, on its device."""
    import torch

    from mixbench.core import api

    level, name = config["level"], config["mixer"]
    options = dict(config.get("mixer_options") or {})
    batch, device = int(config["batch_size"]), config["device"]
    grid = tuple(int(g) for g in config.get("grid") or ())
    generator = torch.Generator().manual_seed(int(config.get("seed", 0)))
    targets = None
    if level in ("mixer", "block"):
        dim = int(config["dim"])
        if level == "mixer":
            module = api.create_mixer(name, dim=dim, grid=grid, options=options)
        else:
            module = api.create_block(name, dim=dim, grid=grid, options=options)
        inputs = torch.randn(batch, math.prod(grid), dim, generator=generator)
        tokens = math.prod(grid)
    elif level == "model":
        extra: dict[str, Any] = {}
        if config.get("dim") is not None:
            extra["dim"] = int(config["dim"])
        if config.get("image_size"):
            size = int(config["image_size"])
            module = api.create_model(
                name,
                preset=config.get("preset") or "tiny",
                num_classes=NUM_CLASSES,
                image_size=size,
                options=options,
                **extra,
            )
            inputs = torch.randn(batch, 3, size, size, generator=generator)
            grid = tuple(module.grids[0])
        else:
            module = api.create_model(
                name,
                preset=config.get("preset") or "tiny",
                num_classes=NUM_CLASSES,
                seq_len=math.prod(grid),
                vocab_size=VOCAB_SIZE,
                options=options,
                **extra,
            )
            inputs = torch.randint(0, VOCAB_SIZE, (batch, math.prod(grid)), generator=generator)
        tokens = math.prod(grid)
        targets = torch.randint(0, NUM_CLASSES, (batch,), generator=generator).to(device)
    else:
        raise ValueError(f"unknown level {level!r}; use mixer, block or model")
    return Built(module.to(device), inputs.to(device), targets, tokens, grid)


def _mixer_infos(module: Any) -> Any:
    """``runtime_info()`` of every submodule that offers it; one dict when all agree."""
    infos: list[Any] = []
    for sub in module.modules():
        method = getattr(sub, "runtime_info", None)
        if callable(method):
            info = plain(method())
            if info not in infos:
                infos.append(info)
    return infos[0] if len(infos) == 1 else infos or None


def _tensor_bytes(tensors: Any) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        ptr = tensor.data_ptr()
        if ptr and ptr not in seen:
            seen.add(ptr)
            total += tensor.numel() * tensor.element_size()
    return total


def optimizer_state_bytes(optimizer: Any) -> int:
    """Bytes of tensors held in optimizer state, wrapped base optimizers (SAM) included."""
    import torch

    tensors: list[Any] = []
    pending, visited = [optimizer], set()
    while pending:
        opt = pending.pop()
        if id(opt) in visited:
            continue
        visited.add(id(opt))
        for state in opt.state.values():
            tensors.extend(v for v in state.values() if isinstance(v, torch.Tensor))
        pending.extend(v for v in vars(opt).values() if isinstance(v, torch.optim.Optimizer))
    return _tensor_bytes(tensors)


def _check_finite(value: Any, what: str) -> None:
    import torch

    if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
        raise NonFiniteError(f"non-finite values (NaN or inf) in the {what}")


def prepare(built: Built, config: Mapping[str, Any]) -> Any:
    """Put the module in the cell's mode and dtype; return the optimizer (train) or None."""
    import torch

    mode, dtype = config["mode"], _dtype(config.get("dtype", "float32"))
    if mode == "train":
        from mixbench.core import api

        built.module.train()
        if built.inputs.is_floating_point():
            # Inside a network the gradient flows on through the mixer to the layers below,
            # so its backward includes the input gradient (and a parameter-free mixer such
            # as pooling has a backward at all).
            built.inputs.requires_grad_(True)
        if not any(p.requires_grad for p in built.module.parameters()):
            return None  # nothing to update: the step is forward and backward
        return api.create_optimizer(
            config["optimizer"],
            built.module.parameters(),
            lr=float(config.get("lr", 1e-3)),
            options=dict(config.get("optimizer_options") or {}),
        )
    if mode != "infer":
        raise ValueError(f"unknown mode {mode!r}; use infer or train")
    built.module.eval()
    if dtype is not torch.float32:
        built.module.to(dtype)
        if built.inputs.is_floating_point():
            built.inputs = built.inputs.to(dtype)
    return None


class Steps:
    """The infer or train step of a prepared cell, counting forward passes.

    The training objective is chosen so that the harness allocates next to nothing during
    the step, and the step's peak memory is the module's (docs/conventions.md): at the
    model level, cross-entropy over the logits (B x 10 values); at the mixer and block
    levels, ``L = <out, G>`` for a fixed random G shaped like the output and drawn before
    the measured steps, so dL/dout = G is handed to backward without building any loss
    tensor, and L's value is one dot product over the output's memory. Gradients come
    from ``torch.autograd.grad``: parameters get theirs as ``.grad`` for the optimizer, and
    the input's gradient (computed, since inside a network it flows on) is dropped rather
    than accumulated into a ``.grad`` copy.
    """

    def __init__(
        self, built: Built, config: Mapping[str, Any], module: Any, optimizer: Any
    ) -> None:
        self.built, self.module, self.optimizer = built, module, optimizer
        self.train = config["mode"] == "train"
        self.device_type = str(config["device"]).split(":")[0]
        self.dtype = _dtype(config.get("dtype", "float32"))
        self.seed = int(config.get("seed", 0))
        self.forwards = 0
        self.last: Any = None
        self.output_grad: Any = None  # G, made on the first (unmeasured) step

    def _objective(self, out: Any) -> tuple[Any, Any]:
        """(tensor to differentiate, its incoming gradient) for this cell's objective."""
        import torch
        import torch.nn.functional as F

        if self.built.targets is not None:
            return F.cross_entropy(out.float(), self.built.targets), None
        if self.output_grad is None or self.output_grad.dtype != out.dtype:
            generator = torch.Generator(device=out.device).manual_seed(self.seed + 1)
            self.output_grad = torch.empty_like(out).normal_(generator=generator)
        return out, self.output_grad

    def closure(self) -> Any:
        import torch

        self.clear_grads()
        self.forwards += 1
        # A view, not the leaf itself: hooks on module inputs (FlopCounterMode's module
        # tracker) cannot sit on a leaf during autograd.grad. It costs no memory.
        inputs = self.built.inputs.view_as(self.built.inputs)
        if self.dtype is torch.float32:
            root, root_grad = self._objective(self.module(inputs))
        else:
            with torch.autocast(self.device_type, dtype=self.dtype):
                root, root_grad = self._objective(self.module(inputs))
        params = [p for p in self.module.parameters() if p.requires_grad]
        wrt = [inputs, *params] if inputs.requires_grad else params
        grads = torch.autograd.grad(root, wrt, root_grad, allow_unused=True)
        for param, grad in zip(params, grads[len(wrt) - len(params) :], strict=True):
            param.grad = grad
        del grads  # the input's gradient, if any, goes with it
        loss = root if root_grad is None else _dense_dot(root, root_grad)
        self.last = loss.detach()
        return loss

    def clear_grads(self) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.module.zero_grad(set_to_none=True)
        self.built.inputs.grad = None

    def step(self) -> Any:
        import torch

        if self.train:
            if self.optimizer is None:
                return self.closure()
            return self.optimizer.step(self.closure)
        with torch.no_grad():
            self.forwards += 1
            self.last = self.module(self.built.inputs)
        return self.last

    def check_finite(self) -> None:
        _check_finite(self.last, "loss" if self.train else "output")


def _dense_dot(a: Any, b: Any) -> Any:
    """<a, b> for tensors of one shape and strides, with no temporary: both are read in
    memory order (a dense tensor permuted by decreasing stride flattens as a view)."""
    import torch

    order = sorted(range(a.dim()), key=lambda dim: -a.stride(dim))
    return torch.dot(a.detach().permute(order).reshape(-1), b.detach().permute(order).reshape(-1))


def measure_cell(
    config: Mapping[str, Any], settings: Mapping[str, Any]
) -> tuple[dict[str, Any], list[float], dict[str, Any], dict[str, Any]]:
    """(metrics, samples_ms, runtime, measurement) of one cell; raises on failure."""
    import torch

    from mixbench.measure.flops import count_flops
    from mixbench.measure.memory import measure_peak_memory
    from mixbench.measure.reference import DESCRIPTION, time_reference
    from mixbench.measure.timing import TimingConfig, measure, thread_limit

    timing = TimingConfig(**dict(settings.get("timing") or {}))
    device = str(config["device"])
    with thread_limit(config.get("threads")) as threads:
        torch.manual_seed(int(config.get("seed", 0)))
        built = build(config)
        check_contract(config, built)
        module = built.module
        optimizer = prepare(built, config)
        eager = Steps(built, config, module, optimizer)
        flops = count_flops(
            eager.step,
            module,
            int(config["batch_size"]),
            forward_passes=lambda: eager.forwards,
            backward=eager.train,
        )
        eager.check_finite()
        steps, compile_s = eager, None
        if config.get("compile"):
            steps = Steps(built, config, torch.compile(module), optimizer)
            begin = time.perf_counter()
            steps.step()
            compile_s = time.perf_counter() - begin
        before = time_reference(device)
        result = measure(steps.step, timing, device=device, threads=threads)
        after = time_reference(device)
        steps.check_finite()
        if eager.train:
            eager.clear_grads()  # gradients count in the step's peak
        memory = measure_peak_memory(steps.step, device)
        steps.check_finite()

    batch, median_s = int(config["batch_size"]), result.median_s
    summary = result.summary
    peak = (settings.get("probe") or {}).get("matmul_gflops")
    model_rate, model_frac = _rates(flops.model_flops, median_s, peak)
    executed_rate, executed_frac = _rates(flops.executed_flops, median_s, peak)
    metrics = {
        "latency_ms_median": median_s * 1e3,
        "latency_ms_iqr": summary.iqr * 1e3,
        "latency_ms_ci95": [summary.ci95_low * 1e3, summary.ci95_high * 1e3],
        "latency_rel_iqr": summary.rel_iqr,
        "noisy": summary.noisy,
        "samples_per_s": batch / median_s,
        "tokens_per_s": batch * built.tokens / median_s,
        "peak_mem_bytes": memory.peak_bytes,
        "memory_method": memory.method,
        "weights_bytes": _tensor_bytes([*module.parameters(), *_buffers(module, True)]),
        "nonpersistent_buffers_bytes": _tensor_bytes(_buffers(module, False)),
        "inputs_bytes": _tensor_bytes([built.inputs]),
        "optimizer_state_bytes": optimizer_state_bytes(optimizer) if optimizer else 0,
        "params": sum(p.numel() for p in module.parameters()),
        "model_flops": flops.model_flops,
        "executed_flops": flops.executed_flops,
        "flops_counted": flops.counted_flops,
        "flops_analytic_extra": flops.extra_flops,
        "macs": flops.macs,
        "model_gflops_per_s": model_rate,
        "executed_gflops_per_s": executed_rate,
        "model_frac_peak_flops": model_frac,
        "executed_frac_peak_flops": executed_frac,
        "compile_s": compile_s,
    }
    measurement = {
        **result.as_dict(),
        "timing": plain(vars(timing)),
        "reference_workload": DESCRIPTION,
        "reference_ms": median([*before, *after]),
        "reference_before_ms": median(before),
        "reference_after_ms": median(after),
    }
    runtime = {
        "mixer": _mixer_infos(module),
        "flops_by_op": flops.by_op,
        "model_flops_source": flops.model_source,
        "model_flops_by_part": flops.model_parts,
        "forward_passes_per_step": flops.forward_passes,
        "optimizer_step": optimizer is not None,
        "grid": list(built.grid),
        "tokens": built.tokens,
    }
    samples_ms = [s * 1e3 for s in result.samples_s]
    return metrics, samples_ms, runtime, measurement


def _rates(flops: int, median_s: float, peak: float | None) -> tuple[float | None, float | None]:
    """(GFLOP/s, fraction of the probed matmul peak) of ``flops`` per step."""
    rate = flops / median_s / 1e9 if median_s > 0 else None
    return rate, rate / peak if rate is not None and peak else None


def _buffers(module: Any, persistent: bool) -> list[Any]:
    """The module's persistent buffers (state: running statistics), or its non-persistent
    ones (index tables and masks derived from the options, left out of the state dict)."""
    found = []
    for owner in module.modules():
        skipped = owner._non_persistent_buffers_set
        for name, buffer in owner.named_buffers(recurse=False):
            if buffer is not None and (name not in skipped) == persistent:
                found.append(buffer)
    return found


def check_contract(config: Mapping[str, Any], built: Built) -> None:
    """Hold the cell's mixer to the plugin contract before measuring it.

    A mixer that changes the shape or mixes samples across the batch would otherwise be
    timed as if nothing were wrong (or fail deep inside torch); the conformance kit's checks
    raise ``ContractError`` naming the plugin, the mixer, the check and the shapes. They run
    on a batch of three on the CPU, at the cell's width and token grid (for a whole model,
    the first stage's).
    """
    from mixbench.authoring.conformance import check_mixer_batch_independence, check_mixer_shape

    options = dict(config.get("mixer_options") or {})
    if config["level"] == "model":
        dim, grid = int(built.module.preset.dims[0]), tuple(built.module.grids[0])
    else:
        dim, grid = int(config["dim"]), tuple(built.grid)
    for check in (check_mixer_shape, check_mixer_batch_independence):
        check(config["mixer"], dim=dim, grid=grid, options=options)


def run_cell(cell: Mapping[str, Any]) -> dict[str, Any]:
    """Measure one cell and return its row; every failure becomes a status, never a raise.

    ``cell`` is ``{"key", "config", "settings", "run_id"}``: ``config`` is what is measured
    (it makes the key), ``settings`` how (timing budget, the run's probe results).
    """
    started = time.time()
    row = base_row(cell, started)
    config = row["config"]
    try:
        metrics, samples, runtime, measurement = measure_cell(config, cell.get("settings") or {})
        row.update(metrics=metrics, samples_ms=samples, measurement=measurement)
        row["runtime"].update(runtime)
    except IncompatibleError as exc:
        row.update(status="skipped", reason=str(exc))
    except ContractError as exc:
        row.update(status="error", reason=str(exc))
        row["runtime"]["contract_check"] = exc.check
    except NonFiniteError as exc:
        row.update(status="error", reason=str(exc))
    except Exception as exc:  # a result with a status, never the end of the sweep
        status = "oom" if is_out_of_memory(exc) else "error"
        row.update(status=status, reason=f"{type(exc).__name__}: {exc}")
        row["runtime"]["traceback"] = traceback.format_exc(limit=8)
    row["duration_s"] = round(time.time() - started, 3)
    return plain(row)


def base_row(cell: Mapping[str, Any], started: float) -> dict[str, Any]:
    """A row for ``cell`` with status ``ok`` and nothing measured yet."""
    config = dict(cell["config"])
    row = row_skeleton(
        cell.get("kind", "bench"),
        cell.get("key"),
        config,
        cell.get("run_id"),
        started_at=iso_time(started),
    )
    row.update(
        conventions_version=CONVENTIONS_VERSION,
        samples_ms=[],
        measurement={},
        runtime=_registry_facts(config.get("mixer")),
    )
    return row


def _registry_facts(name: Any) -> dict[str, Any]:
    """What the registry says about the mixer (its stated complexity, for the tables)."""
    try:
        from mixbench.core.plugin_loader import get_registry

        entry = get_registry().get("mixer", str(name))
    except Exception:  # an unknown name is reported by the measurement itself
        return {}
    return {"complexity": entry.complexity, "plugin": entry.plugin}
