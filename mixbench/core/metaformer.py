"""The standard MetaFormer shell that every token mixer is measured in.

    x = x + LayerScale(TokenMixer(Norm(x)))
    x = x + LayerScale(ChannelMLP(Norm(x)))

Only the token mixer changes between compared models (Yu et al. 2022, "MetaFormer Is Actually
What You Need for Vision", https://arxiv.org/abs/2111.11418). Tokens travel as
(batch, tokens, channels); each mixer is told its token grid, ``(H, W)`` for images and
``(N,)`` for sequences.

Two layouts:

* ``isotropic`` — a patch (or token) embedding, L blocks at one width, a head. Learned absolute
  position embeddings are added for every mixer, so that position-blind mixers (attention) and
  position-aware ones (pooling, token MLP) are compared in one shell.
* ``hierarchical`` — four stages as in PoolFormer: a 7x7 stride-4 conv stem, 3x3 stride-2 conv
  downsampling between stages, GroupNorm(1, C) as the norm. ``s12`` reproduces PoolFormer-S12.

A *causal* model (``InputSpec.causal``, set by a causal task) must never let position t see a
later position, and only the mixers mix tokens in the isotropic sequence path: the token
embedding, the position embedding, LayerNorm, the channel MLP and the per-token head all act
on one token at a time. So every block's mixer is built with ``causal=True`` and the head
predicts per token. What cannot be causal is refused (IncompatibleError, a skipped cell),
never run bidirectionally: a mixer whose factory has no ``causal`` option, the hierarchical
layout (its convolutions mix neighbouring tokens both ways), image inputs (a 2-D grid has no
token order) and the GroupNorm presets (statistics over all tokens of a sample).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from mixbench.core.registry import Entry
from mixbench.errors import IncompatibleError, OptionError, UsageError

Layout = Literal["isotropic", "hierarchical"]


@dataclass(frozen=True)
class Preset:
    """A shell configuration; mixers are compared within one preset."""

    layout: Layout
    depths: tuple[int, ...]
    dims: tuple[int, ...]
    mlp_ratio: float = 4.0
    norm: Literal["layer", "group"] = "layer"
    layer_scale_init: float = 1e-5
    patch_size: int | None = None  # isotropic images; None chooses a ~16x16 (or finer) grid
    description: str = ""


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "isotropic",
        (2,),
        (64,),
        mlp_ratio=2.0,
        layer_scale_init=1.0,
        description="2 blocks at width 64: fast on a laptop CPU, for quick training tasks",
    ),
    "small": Preset(
        "isotropic",
        (4,),
        (128,),
        mlp_ratio=4.0,
        layer_scale_init=0.1,
        description="4 blocks at width 128",
    ),
    "iso12": Preset(
        "isotropic",
        (12,),
        (384,),
        mlp_ratio=4.0,
        norm="group",
        layer_scale_init=1e-5,
        patch_size=16,
        description="PoolFormer's isotropic S12 layout: 12 blocks at width 384",
    ),
    "s12": Preset(
        "hierarchical",
        (2, 2, 6, 2),
        (64, 128, 320, 512),
        norm="group",
        description="PoolFormer-S12: depths 2-2-6-2, widths 64-128-320-512",
    ),
    "s24": Preset(
        "hierarchical",
        (4, 4, 12, 4),
        (64, 128, 320, 512),
        norm="group",
        description="PoolFormer-S24: depths 4-4-12-4",
    ),
    "s36": Preset(
        "hierarchical",
        (6, 6, 18, 6),
        (64, 128, 320, 512),
        norm="group",
        layer_scale_init=1e-6,
        description="PoolFormer-S36: depths 6-6-18-6",
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        from mixbench.errors import UnknownNameError

        raise UnknownNameError("preset", name, PRESETS) from None


class GroupNorm1(nn.GroupNorm):
    """GroupNorm with one group on (B, N, C) tokens: statistics over all tokens and channels
    of a sample, an affine per channel (PoolFormer's norm)."""

    def __init__(self, dim: int) -> None:
        super().__init__(1, dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def make_norm(kind: str, dim: int) -> nn.Module:
    return GroupNorm1(dim) if kind == "group" else nn.LayerNorm(dim, eps=1e-5)


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch (Touvron et al. 2021, CaiT)."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class ChannelMLP(nn.Module):
    """The per-token two-layer MLP of every MetaFormer block."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def build_mixer(
    entry: Entry, dim: int, grid: tuple[int, ...], index: int, options: Mapping[str, Any]
) -> nn.Module:
    """Call a registered mixer factory, passing ``index`` when it accepts one."""
    kwargs = dict(options)
    if entry.accepts_index:
        kwargs["index"] = index
    try:
        module = entry.factory(dim, tuple(grid), **kwargs)
    except (UsageError, OptionError):
        raise
    except TypeError as exc:
        raise OptionError(f"mixer {entry.name!r} (plugin {entry.plugin!r}): {exc}") from exc
    if not isinstance(module, nn.Module):
        raise OptionError(
            f"mixer {entry.name!r} (plugin {entry.plugin!r}) returned "
            f"{type(module).__name__}, not a torch.nn.Module"
        )
    return module


class MetaFormerBlock(nn.Module):
    """x + LayerScale(mixer(norm(x))); x + LayerScale(mlp(norm(x)))."""

    def __init__(
        self,
        mixer: nn.Module,
        dim: int,
        *,
        mlp_ratio: float = 4.0,
        norm: str = "layer",
        layer_scale_init: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, dim)
        self.mixer = mixer
        self.scale1 = LayerScale(dim, layer_scale_init)
        self.norm2 = make_norm(norm, dim)
        self.mlp = ChannelMLP(dim, int(dim * mlp_ratio))
        self.scale2 = LayerScale(dim, layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1(self.mixer(self.norm1(x)))
        return x + self.scale2(self.mlp(self.norm2(x)))


def _tokens_to_image(x: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    b, _, c = x.shape
    return x.transpose(1, 2).reshape(b, c, *grid)


def _image_to_tokens(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    return x.flatten(2).transpose(1, 2), tuple(int(s) for s in x.shape[2:])


def auto_patch_size(image_size: tuple[int, int]) -> int:
    """Patch size giving a token grid of about 16x16, or finer for small images."""
    return max(1, min(image_size) // 16)


@dataclass(frozen=True)
class InputSpec:
    """What the model reads: images (B, C, H, W), token ids (B, N) or features (B, N, F)."""

    kind: Literal["image", "tokens", "features"] = "image"
    image_size: tuple[int, int] = (224, 224)
    in_channels: int = 3
    seq_len: int = 0
    vocab_size: int = 0
    per_token: bool = False
    causal: bool = False  # no position may see a later one; predictions are per token


class MetaFormer(nn.Module):
    """A whole model: embedding, stages of MetaFormer blocks, and a classification head."""

    def __init__(
        self,
        entry: Entry,
        preset: Preset,
        spec: InputSpec,
        num_classes: int,
        mixer_options: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.mixer_name = entry.name
        self.preset = preset
        self.spec = spec
        self.grids: list[tuple[int, ...]] = []
        depths, dims = preset.depths, preset.dims
        if len(depths) != len(dims):
            raise UsageError("preset depths and dims differ in length")
        self.pos_embed: nn.Parameter | None = None
        if spec.causal:
            mixer_options = causal_mixer_options(entry, preset, spec, mixer_options)
        if preset.layout == "hierarchical":
            if spec.kind != "image":
                raise IncompatibleError(
                    f"the hierarchical preset needs images; this input is {spec.kind} "
                    "(use an isotropic preset such as 'tiny' or 'small')"
                )
            self.embed: nn.Module = nn.Conv2d(spec.in_channels, dims[0], 7, stride=4, padding=2)
            h, w = spec.image_size
            grid: tuple[int, ...] = ((h + 4 - 7) // 4 + 1, (w + 4 - 7) // 4 + 1)
        else:
            grid = self._isotropic_embedding(spec, preset, dims[0])
            self.pos_embed = nn.Parameter(torch.zeros(1, math.prod(grid), dims[0]))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        for stage, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            if stage > 0:
                self.downsamples.append(nn.Conv2d(dims[stage - 1], dim, 3, stride=2, padding=1))
                grid = tuple((g + 2 - 3) // 2 + 1 for g in grid)
            if min(grid) < 1:
                raise IncompatibleError(f"the input is too small for preset stage {stage}")
            self.grids.append(grid)
            blocks = [
                MetaFormerBlock(
                    build_mixer(entry, dim, grid, i, mixer_options),
                    dim,
                    mlp_ratio=preset.mlp_ratio,
                    norm=preset.norm,
                    layer_scale_init=preset.layer_scale_init,
                )
                for i in range(depth)
            ]
            self.stages.append(nn.Sequential(*blocks))
        self.norm = make_norm(preset.norm, dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)
        self._init_shell_weights()

    def _init_shell_weights(self) -> None:
        """PoolFormer's truncated-normal init for the shell's own layers; each mixer keeps the
        init its author chose, so a plugin is measured as it was written."""
        for name, module in self.named_modules():
            if ".mixer." in f".{name}.":
                continue
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _isotropic_embedding(self, spec: InputSpec, preset: Preset, dim: int) -> tuple[int, ...]:
        if spec.kind == "image":
            patch = preset.patch_size or auto_patch_size(spec.image_size)
            h, w = spec.image_size
            if h % patch or w % patch:
                raise IncompatibleError(
                    f"image size {h}x{w} is not a multiple of the patch size {patch}"
                )
            self.embed = nn.Conv2d(spec.in_channels, dim, patch, stride=patch)
            return (h // patch, w // patch)
        if spec.seq_len < 1:
            raise UsageError("sequence inputs need seq_len >= 1")
        if spec.kind == "tokens":
            if spec.vocab_size < 1:
                raise UsageError("token inputs need vocab_size >= 1")
            self.embed = nn.Embedding(spec.vocab_size, dim)
        else:
            self.embed = nn.Linear(spec.in_channels, dim)
        return (spec.seq_len,)

    def expected_input(self) -> tuple[int, ...]:
        """The shape of one example this model was built for (no batch axis)."""
        spec = self.spec
        if spec.kind == "image":
            return (spec.in_channels, *spec.image_size)
        if spec.kind == "tokens":
            return (spec.seq_len,)
        return (spec.seq_len, spec.in_channels)

    def _check_input(self, x: torch.Tensor) -> None:
        """Refuse an input of another shape with what the model was built for, rather than
        failing deep inside a block with a shape mismatch that names neither."""
        expected = self.expected_input()
        if tuple(x.shape[1:]) != expected:
            built = {
                "image": "images (batch, channels, height, width)",
                "tokens": "token ids (batch, tokens)",
                "features": "features (batch, tokens, features)",
            }[self.spec.kind]
            raise ValueError(
                f"this {self.mixer_name!r} model was built for {built} of shape "
                f"(batch, {', '.join(map(str, expected))}); got {tuple(x.shape)}. Build it "
                f"for this input (create_model(..., image_size=..., seq_len=...))"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, C) after the last stage."""
        self._check_input(x)
        if self.spec.kind == "image":
            x, _ = _image_to_tokens(self.embed(x))
        else:
            x = self.embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for stage, blocks in enumerate(self.stages):
            if stage > 0:
                image = _tokens_to_image(x, self.grids[stage - 1])
                x, _ = _image_to_tokens(self.downsamples[stage - 1](image))
            x = blocks(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        if self.spec.per_token or self.spec.causal:
            return self.head(features)  # (B, N, classes)
        return self.head(features.mean(dim=1))


def causal_mixer_options(
    entry: Entry, preset: Preset, spec: InputSpec, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The mixer options for a causal model (``causal=True`` added), or the reason it
    cannot be causal as an IncompatibleError (see the module docstring)."""
    if spec.kind == "image":
        raise IncompatibleError(
            "a causal model reads sequences; image inputs have a 2-D grid and no token order"
        )
    if preset.layout != "isotropic":
        raise IncompatibleError(
            "a causal model needs an isotropic preset: the hierarchical layout's convolutions "
            "mix each token with the ones after it"
        )
    if preset.norm != "layer":
        raise IncompatibleError(
            "a causal model needs a preset with LayerNorm (tiny, small): GroupNorm takes its "
            "statistics over all tokens of a sample, later ones included"
        )
    if "causal" not in entry.options:
        raise IncompatibleError(
            f"mixer {entry.name!r} (plugin {entry.plugin!r}) has no 'causal' option, so it "
            "cannot be built causal for a causal task; skipped rather than run bidirectionally"
        )
    if options.get("causal") is False:
        raise OptionError(
            f"mixer {entry.name!r}: causal=false contradicts a causal task, which builds every "
            "mixer causal; drop the option"
        )
    return {**options, "causal": True}


def with_overrides(preset: Preset, **changes: Any) -> Preset:
    """A preset with some fields replaced (``depth=4``, ``dim=128`` for isotropic ones)."""
    if "depth" in changes:
        changes["depths"] = (int(changes.pop("depth")),) * len(preset.depths)
    if "dim" in changes:
        changes["dims"] = (int(changes.pop("dim")),) * len(preset.dims)
    return replace(preset, **changes)


__all__ = [
    "PRESETS",
    "ChannelMLP",
    "GroupNorm1",
    "InputSpec",
    "LayerScale",
    "MetaFormer",
    "MetaFormerBlock",
    "Preset",
    "build_mixer",
    "causal_mixer_options",
    "get_preset",
    "with_overrides",
]
