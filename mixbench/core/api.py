"""Build registered things by name: the Python API under the CLI.

Every function looks the name up in the plugin registry (so third-party plugins work the same
as the built-ins), validates options against the factory's signature, and raises
``mixbench.errors.UsageError`` subclasses with messages fit for a user.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mixbench.core.plugin_loader import get_registry
from mixbench.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from mixbench.core.metaformer import MetaFormer, MetaFormerBlock
    from mixbench.tasks import TaskData


def _merge(options: Mapping[str, Any] | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(options or {})
    clash = set(merged) & set(extra)
    if clash:
        raise UsageError(f"option(s) given twice: {', '.join(sorted(clash))}")
    merged.update(extra)
    return merged


def create_mixer(
    name: str,
    *,
    dim: int,
    grid: Iterable[int],
    index: int = 0,
    options: Mapping[str, Any] | None = None,
    **extra: Any,
) -> torch.nn.Module:
    """A registered token mixer for ``dim`` channels on ``grid``; (B, N, dim) -> (B, N, dim)."""
    from mixbench.core.metaformer import build_mixer

    entry = get_registry().get("mixer", name)
    grid = tuple(int(g) for g in grid)
    _check_grid(grid)
    validated = entry.validate_options(_merge(options, extra))
    return build_mixer(entry, int(dim), grid, index, validated)


def _check_grid(grid: tuple[int, ...]) -> None:
    if not grid or len(grid) > 3 or any(g < 1 for g in grid):
        raise UsageError(f"grid must be 1 to 3 positive sizes, got {grid}")


def create_block(
    mixer: str,
    *,
    dim: int,
    grid: Iterable[int],
    index: int = 0,
    mlp_ratio: float = 4.0,
    norm: str = "layer",
    layer_scale_init: float = 1e-5,
    options: Mapping[str, Any] | None = None,
    **extra: Any,
) -> MetaFormerBlock:
    """One MetaFormer block around a registered mixer."""
    from mixbench.core.metaformer import MetaFormerBlock

    module = create_mixer(mixer, dim=dim, grid=grid, index=index, options=options, **extra)
    return MetaFormerBlock(
        module, int(dim), mlp_ratio=mlp_ratio, norm=norm, layer_scale_init=layer_scale_init
    )


def create_model(
    mixer: str,
    *,
    preset: str = "tiny",
    num_classes: int = 1000,
    task: TaskData | None = None,
    image_size: int | tuple[int, int] = 224,
    in_channels: int = 3,
    seq_len: int | None = None,
    vocab_size: int | None = None,
    in_features: int | None = None,
    per_token: bool = False,
    causal: bool = False,
    depth: int | None = None,
    dim: int | None = None,
    patch_size: int | None = None,
    options: Mapping[str, Any] | None = None,
    **mixer_options: Any,
) -> MetaFormer:
    """A whole MetaFormer model whose token mixer is ``mixer``.

    Inputs are images by default (``image_size``, ``in_channels``); give ``seq_len`` with
    ``vocab_size`` (token ids) or ``in_features`` (features) for sequences, or a ``task`` to
    read all of that from the task. ``causal=True`` (or a causal task) builds a decoder:
    every mixer causal, one prediction per token; an IncompatibleError says why a mixer or
    preset cannot be. ``depth``/``dim``/``patch_size`` override an isotropic preset.
    Remaining keyword arguments are the mixer's options.
    """
    from mixbench.core.metaformer import InputSpec, MetaFormer, get_preset, with_overrides

    entry = get_registry().get("mixer", mixer)
    validated = entry.validate_options(_merge(options, mixer_options))
    chosen = get_preset(preset)
    overrides: dict[str, Any] = {}
    if depth is not None:
        overrides["depth"] = depth
    if dim is not None:
        overrides["dim"] = dim
    if patch_size is not None:
        overrides["patch_size"] = patch_size
    if overrides:
        if chosen.layout != "isotropic" and set(overrides) & {"depth", "dim"}:
            raise UsageError(f"depth/dim overrides apply to isotropic presets, not {preset!r}")
        chosen = with_overrides(chosen, **overrides)
    if task is not None:
        spec = InputSpec(
            kind=task.input,
            image_size=(task.shape[0], task.shape[1]) if task.input == "image" else (0, 0),
            in_channels=task.in_channels or 1,
            seq_len=task.shape[0] if task.input != "image" else 0,
            vocab_size=task.vocab_size or 0,
            per_token=task.per_token,
            causal=task.causal or causal,
        )
        num_classes = task.num_classes
    elif seq_len is not None:
        if (vocab_size is None) == (in_features is None):
            raise UsageError("a sequence model needs exactly one of vocab_size or in_features")
        spec = InputSpec(
            kind="tokens" if vocab_size is not None else "features",
            seq_len=int(seq_len),
            vocab_size=int(vocab_size or 0),
            in_channels=int(in_features or 0),
            per_token=per_token,
            causal=causal,
        )
    else:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        spec = InputSpec(
            kind="image",
            image_size=(int(size[0]), int(size[1])),
            in_channels=int(in_channels),
            per_token=per_token,
            causal=causal,
        )
    return MetaFormer(entry, chosen, spec, int(num_classes), validated)


def create_optimizer(
    name: str,
    params: Any,
    *,
    lr: float,
    options: Mapping[str, Any] | None = None,
    **extra: Any,
) -> torch.optim.Optimizer:
    """A registered optimizer over ``params`` with learning rate ``lr``."""
    entry = get_registry().get("optimizer", name)
    validated = entry.validate_options(_merge(options, extra))
    return entry.factory(params, float(lr), **validated)


def create_task(
    name: str, *, seed: int = 0, options: Mapping[str, Any] | None = None, **extra: Any
) -> TaskData:
    """A registered task's data for ``seed``."""
    from mixbench.tasks import TaskData

    entry = get_registry().get("task", name)
    validated = entry.validate_options(_merge(options, extra))
    data = entry.factory(int(seed), **validated)
    if not isinstance(data, TaskData):
        raise UsageError(
            f"task {name!r} (plugin {entry.plugin!r}) returned {type(data).__name__}, "
            "not mixbench.tasks.TaskData"
        )
    return data
