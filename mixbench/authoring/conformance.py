"""The conformance kit: checks a plugin author runs from pytest.

Every check raises ``mixbench.errors.ContractError`` naming the plugin, the mixer or
optimizer, the check and the shapes involved, so a broken plugin is told precisely what it
broke instead of getting a traceback from deep inside torch. mixbench's own test suite runs
these over every registered mixer and optimizer, so a new built-in is tested automatically.

    from mixbench.authoring.conformance import check_mixer, check_optimizer

    def test_my_mixer():
        check_mixer("my_mixer")          # every mixer check, 1-D and 2-D grids

A mixer that accepts a ``causal`` keyword declares that it can run causally, and the
``causality`` check holds it to that: with ``causal=True`` its output at t must not change
when any input after t does, and must still depend on the inputs before t.

    def test_my_optimizer():
        check_optimizer("lion")
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mixbench.core.plugin_loader import get_registry
from mixbench.core.registry import Entry
from mixbench.errors import ContractError, IncompatibleError, MixbenchError, is_out_of_memory

DEFAULT_GRIDS: tuple[tuple[int, ...], ...] = ((64,), (8, 8))
DEFAULT_DIM = 32
BATCH = 3


def _entry(kind: str, name: str) -> Entry:
    return get_registry().get(kind, name)


def _build(
    entry: Entry,
    dim: int,
    grid: tuple[int, ...],
    options: Mapping[str, Any],
    seed: int,
    index: int = 0,
) -> nn.Module:
    from mixbench.core.metaformer import build_mixer

    torch.manual_seed(seed)
    try:
        module = build_mixer(entry, dim, grid, index, entry.validate_options(options))
    except IncompatibleError:
        raise
    except MixbenchError:
        raise
    except Exception as exc:
        raise ContractError(
            entry.plugin,
            "mixer",
            entry.name,
            "construct",
            f"factory(dim={dim}, grid={grid}) raised {type(exc).__name__}: {exc}",
        ) from exc
    return module.eval()


def _forward(entry: Entry, module: nn.Module, x: torch.Tensor, check: str) -> torch.Tensor:
    try:
        out = module(x)
    except IncompatibleError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise  # running out of memory is a resource limit, not a broken contract
        raise ContractError(
            entry.plugin,
            "mixer",
            entry.name,
            check,
            f"forward on input {tuple(x.shape)} raised {type(exc).__name__}: {exc}",
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise ContractError(
            entry.plugin,
            "mixer",
            entry.name,
            check,
            f"forward returned {type(out).__name__}, not a tensor",
        )
    return out


def _input(
    grid: tuple[int, ...],
    dim: int,
    dtype: torch.dtype = torch.float32,
    batch: int = BATCH,
    seed: int = 1234,
) -> torch.Tensor:
    n = 1
    for g in grid:
        n *= g
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n, dim, generator=gen).to(dtype)


def check_mixer_shape(
    name: str,
    *,
    dim: int = DEFAULT_DIM,
    grid: tuple[int, ...] = (64,),
    options: Mapping[str, Any] | None = None,
) -> None:
    """(B, N, dim) in, (B, N, dim) out, finite, for block indices 0 and 1."""
    entry = _entry("mixer", name)
    for index in (0, 1):
        module = _build(entry, dim, grid, options or {}, seed=0, index=index)
        x = _input(grid, dim)
        with torch.no_grad():
            out = _forward(entry, module, x, "shape")
        if tuple(out.shape) != tuple(x.shape):
            raise ContractError(
                entry.plugin,
                "mixer",
                name,
                "shape",
                f"input {tuple(x.shape)} on grid {grid} (block index {index}) "
                f"gave output {tuple(out.shape)}; expected {tuple(x.shape)}",
            )
        if not torch.isfinite(out).all():
            raise ContractError(
                entry.plugin,
                "mixer",
                name,
                "shape",
                f"output on grid {grid} has non-finite values (NaN or inf)",
            )


def check_mixer_gradients(
    name: str,
    *,
    dim: int = DEFAULT_DIM,
    grid: tuple[int, ...] = (64,),
    options: Mapping[str, Any] | None = None,
) -> None:
    """Gradients reach the input and every trainable parameter, and are finite."""
    entry = _entry("mixer", name)
    # Block index 1 too: a mixer that alternates (shifted windows) has parameters used
    # only in some blocks' paths.
    for index in (0, 1):
        module = _build(entry, dim, grid, options or {}, seed=0, index=index).train()
        x = _input(grid, dim).requires_grad_(True)
        out = _forward(entry, module, x, "gradients")
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
        (out * weights).sum().backward()
        if x.grad is None or not torch.isfinite(x.grad).all():
            raise ContractError(
                entry.plugin,
                "mixer",
                name,
                "gradients",
                f"no finite gradient reached the input {tuple(x.shape)}",
            )
        missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
        if missing:
            raise ContractError(
                entry.plugin,
                "mixer",
                name,
                "gradients",
                f"parameter(s) without gradient on grid {grid}, block index "
                f"{index}: {', '.join(missing)}",
            )
        bad = [
            n
            for n, p in module.named_parameters()
            if p.grad is not None and not torch.isfinite(p.grad).all()
        ]
        if bad:
            raise ContractError(
                entry.plugin,
                "mixer",
                name,
                "gradients",
                f"non-finite gradient in: {', '.join(bad)}",
            )


def check_mixer_batch_independence(
    name: str,
    *,
    dim: int = DEFAULT_DIM,
    grid: tuple[int, ...] = (64,),
    options: Mapping[str, Any] | None = None,
    atol: float = 1e-5,
) -> None:
    """Each sample's output depends on that sample alone: changing sample 1 must leave
    samples 0 and 2 untouched, and a sample computed alone equals it computed in a batch."""
    entry = _entry("mixer", name)
    module = _build(entry, dim, grid, options or {}, seed=0)
    x = _input(grid, dim)
    changed = x.clone()
    changed[1] = _input(grid, dim, batch=1, seed=99)[0] * 3.0
    with torch.no_grad():
        torch.manual_seed(5)
        a = _forward(entry, module, x, "batch independence")
        torch.manual_seed(5)
        b = _forward(entry, module, changed, "batch independence")
        torch.manual_seed(5)
        alone = _forward(entry, module, x[2:3], "batch independence")
    for i in (0, 2):
        diff = (a[i] - b[i]).abs().max().item()
        if diff > atol:
            raise ContractError(
                entry.plugin,
                "mixer",
                name,
                "batch independence",
                f"changing sample 1 of a batch {tuple(x.shape)} changed sample "
                f"{i}'s output by {diff:.3g} (grid {grid}): the mixer mixes "
                "information across the batch dimension",
            )
    diff = (alone[0] - a[2]).abs().max().item()
    if diff > max(atol, 1e-4):
        raise ContractError(
            entry.plugin,
            "mixer",
            name,
            "batch independence",
            f"sample 2 computed alone differs from it computed in a batch of "
            f"{x.shape[0]} by {diff:.3g} (grid {grid})",
        )


def check_mixer_determinism(
    name: str,
    *,
    dim: int = DEFAULT_DIM,
    grid: tuple[int, ...] = (64,),
    options: Mapping[str, Any] | None = None,
) -> None:
    """The same seed builds the same module, which gives the same output."""
    entry = _entry("mixer", name)
    outs = []
    for _ in range(2):
        module = _build(entry, dim, grid, options or {}, seed=42)
        torch.manual_seed(3)
        with torch.no_grad():
            outs.append(_forward(entry, module, _input(grid, dim), "determinism"))
    if not torch.equal(outs[0], outs[1]):
        diff = (outs[0] - outs[1]).abs().max().item()
        raise ContractError(
            entry.plugin,
            "mixer",
            name,
            "determinism",
            f"two builds under torch.manual_seed(42) differ by {diff:.3g} on grid {grid}",
        )


def check_mixer_dtype(
    name: str,
    *,
    dtype: torch.dtype = torch.bfloat16,
    dim: int = DEFAULT_DIM,
    grid: tuple[int, ...] = (64,),
    options: Mapping[str, Any] | None = None,
) -> None:
    """The mixer runs in ``dtype``, returns ``dtype``, and stays close to float32."""
    entry = _entry("mixer", name)
    module = _build(entry, dim, grid, options or {}, seed=0)
    x = _input(grid, dim)
    with torch.no_grad():
        torch.manual_seed(3)
        reference = _forward(entry, module, x, f"dtype {dtype}").float()
        low = module.to(dtype)
        torch.manual_seed(3)
        out = _forward(entry, low, x.to(dtype), f"dtype {dtype}")
    if out.dtype != dtype:
        raise ContractError(
            entry.plugin, "mixer", name, f"dtype {dtype}", f"input {dtype} gave output {out.dtype}"
        )
    if not torch.isfinite(out).all():
        raise ContractError(
            entry.plugin,
            "mixer",
            name,
            f"dtype {dtype}",
            "output has non-finite values (NaN or inf)",
        )
    scale = reference.abs().mean().item() + 1e-6
    err = (out.float() - reference).abs().mean().item() / scale
    if err > 0.1:
        raise ContractError(
            entry.plugin,
            "mixer",
            name,
            f"dtype {dtype}",
            f"mean relative error against float32 is {err:.3f} (> 0.1)",
        )


def causality_applies(entry: Entry, grid: tuple[int, ...]) -> bool:
    """Whether the causality check has anything to check: a mixer that declares causal
    support (a ``causal`` keyword) on a 1-D grid, the only grid with a token order."""
    return "causal" in entry.options and len(grid) == 1


def check_mixer_causality(
    name: str,
    *,
    dim: int = DEFAULT_DIM,
    grid: tuple[int, ...] = (64,),
    options: Mapping[str, Any] | None = None,
    atol: float = 1e-5,
) -> None:
    """With ``causal=True``, the output at t is unchanged by any input after t, and still
    depends on the inputs before t wherever the mixer built without it does.

    A mixer declares causal support by accepting a ``causal`` keyword; one that does not has
    nothing to check here (the shell refuses it on causal tasks). Causality is an order of
    tokens, so only 1-D grids are checked. Every cut point t is tried, at block indices 0
    and 1, so chunked or bucketed mixers are held to it at every chunk border, including a
    ragged last chunk. The variants of one sequence travel as one batch (the batch
    independence check makes that sound), so the check costs two forwards per block index.
    """
    entry = _entry("mixer", name)
    if not causality_applies(entry, grid):
        return
    tokens = grid[0]
    x = _input(grid, dim, batch=1)[0]
    other = _input(grid, dim, batch=1, seed=4321)[0]
    position = torch.arange(tokens)[None, :, None]
    cut = torch.arange(tokens)[:, None, None]
    # Row t of `future` changes every input after t; row t of `past` every input before t.
    future = torch.where(position > cut, other, x)
    past = torch.where(position < cut, other, x)
    batch = torch.cat([x[None], future, past])
    for index in (0, 1):
        outputs = {}
        for causal in (True, False):
            module = _build(
                entry, dim, grid, {**(options or {}), "causal": causal}, seed=0, index=index
            )
            torch.manual_seed(5)
            with torch.no_grad():
                outputs[causal] = _forward(entry, module, batch, "causality")
        out = outputs[True]
        base, after, before = out[0], out[1 : tokens + 1], out[tokens + 1 :]
        for t in range(tokens):
            diff = (after[t, : t + 1] - base[: t + 1]).abs().max().item()
            if diff > atol:
                raise ContractError(
                    entry.plugin,
                    "mixer",
                    name,
                    "causality",
                    f"with causal=True, changing the inputs after position {t} changed the "
                    f"output at positions <= {t} by {diff:.3g} (grid {grid}, block index "
                    f"{index}): the mixer looks ahead",
                )
        full = outputs[False]
        for t in range(1, tokens):
            uses_past = (full[tokens + 1 + t, t] - full[0, t]).abs().max().item() > atol
            # Any change counts: a weak dependence (a small weight at init) is still one.
            sees_past = bool((before[t, t] != base[t]).any())
            if uses_past and not sees_past:
                raise ContractError(
                    entry.plugin,
                    "mixer",
                    name,
                    "causality",
                    f"with causal=True, the output at position {t} ignores every earlier "
                    f"input, which the mixer uses without it (grid {grid}, block index "
                    f"{index}): the causal mask hides the past too",
                )


MIXER_CHECKS: dict[str, Callable[..., None]] = {
    "shape": check_mixer_shape,
    "gradients": check_mixer_gradients,
    "batch independence": check_mixer_batch_independence,
    "determinism": check_mixer_determinism,
    "bfloat16": check_mixer_dtype,
    "causality": check_mixer_causality,
}


def check_mixer(
    name: str,
    *,
    dim: int = DEFAULT_DIM,
    grids: Iterable[tuple[int, ...]] = DEFAULT_GRIDS,
    options: Mapping[str, Any] | None = None,
    checks: Sequence[str] | None = None,
) -> None:
    """Run every mixer check (or those named in ``checks``) on each grid."""
    selected = list(MIXER_CHECKS) if checks is None else list(checks)
    unknown = [c for c in selected if c not in MIXER_CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known: {', '.join(MIXER_CHECKS)}")
    for grid in grids:
        for check in selected:
            MIXER_CHECKS[check](name, dim=dim, grid=tuple(grid), options=options)


def _quadratic(seed: int = 0) -> tuple[nn.Parameter, Callable[[], torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(8, generator=gen)
    scales = torch.linspace(0.5, 2.0, 8)
    weight = nn.Parameter(torch.zeros(8))

    def loss_fn() -> torch.Tensor:
        return 0.5 * (scales * (weight - target) ** 2).sum()

    return weight, loss_fn


def check_optimizer_decreases(
    name: str, *, lr: float | None = None, options: Mapping[str, Any] | None = None, steps: int = 50
) -> None:
    """``step(closure)`` drives a convex quadratic's loss down by at least half."""
    from mixbench.core.api import create_optimizer

    entry = _entry("optimizer", name)
    weight, loss_fn = _quadratic()
    rate = lr if lr is not None else float(entry.metadata.get("test_lr", 0.05))
    opt = create_optimizer(name, [weight], lr=rate, options=options)

    def closure() -> Any:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    with torch.no_grad():
        start = loss_fn().item()
    for _ in range(steps):
        try:
            opt.step(closure)
        except Exception as exc:
            raise ContractError(
                entry.plugin,
                "optimizer",
                name,
                "decreases loss",
                f"step(closure) raised {type(exc).__name__}: {exc}",
            ) from exc
    with torch.no_grad():
        end = loss_fn().item()
    if not end < 0.5 * start:
        raise ContractError(
            entry.plugin,
            "optimizer",
            name,
            "decreases loss",
            f"{steps} steps at lr={rate} took the loss of a convex quadratic "
            f"from {start:.4g} to {end:.4g} (expected below half)",
        )


def check_optimizer_state_dict(
    name: str, *, lr: float = 0.05, options: Mapping[str, Any] | None = None
) -> None:
    """A state_dict saved after some steps, loaded into a fresh optimizer, continues the run
    exactly as the original does."""
    from mixbench.core.api import create_optimizer

    entry = _entry("optimizer", name)

    def run(
        weight: nn.Parameter,
        opt: torch.optim.Optimizer,
        loss_fn: Callable[[], torch.Tensor],
        steps: int,
    ) -> None:
        def closure() -> Any:
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        for _ in range(steps):
            opt.step(closure)

    w1, f1 = _quadratic()
    o1 = create_optimizer(name, [w1], lr=lr, options=options)
    run(w1, o1, f1, 3)
    try:
        # A copy, as saving to disk would make: state_dict() returns live tensors.
        state = copy.deepcopy(o1.state_dict())
    except Exception as exc:
        raise ContractError(
            entry.plugin,
            "optimizer",
            name,
            "state_dict",
            f"state_dict() raised {type(exc).__name__}: {exc}",
        ) from exc
    w2, f2 = _quadratic()
    with torch.no_grad():
        w2.copy_(w1)
    o2 = create_optimizer(name, [w2], lr=lr, options=options)
    try:
        o2.load_state_dict(state)
    except Exception as exc:
        raise ContractError(
            entry.plugin,
            "optimizer",
            name,
            "state_dict",
            f"load_state_dict() raised {type(exc).__name__}: {exc}",
        ) from exc
    run(w1, o1, f1, 3)
    run(w2, o2, f2, 3)
    if not torch.allclose(w1, w2, atol=1e-6):
        raise ContractError(
            entry.plugin,
            "optimizer",
            name,
            "state_dict",
            "after a state_dict round trip the run diverges from the original "
            f"by {(w1 - w2).abs().max().item():.3g}",
        )


OPTIMIZER_CHECKS: dict[str, Callable[..., None]] = {
    "decreases loss": check_optimizer_decreases,
    "state_dict": check_optimizer_state_dict,
}


def check_optimizer(
    name: str, *, options: Mapping[str, Any] | None = None, checks: Sequence[str] | None = None
) -> None:
    """Run every optimizer check (or those named in ``checks``)."""
    for check in checks or list(OPTIMIZER_CHECKS):
        OPTIMIZER_CHECKS[check](name, options=options)
