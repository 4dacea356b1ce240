"""The conformance kit over every registered mixer and optimizer, plus proof that it catches
the contract breaks it promises to catch."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import mixbench
from mixbench.authoring.conformance import MIXER_CHECKS, check_mixer, check_optimizer
from mixbench.core import plugin_loader as plugins
from mixbench.errors import ContractError, IncompatibleError

os.environ["MIXBENCH_PLUGINS"] = ""
_REGISTRY = plugins.get_registry()
MIXERS = _REGISTRY.names("mixer")
OPTIMIZERS = _REGISTRY.names("optimizer")
plugins.reset()


@pytest.mark.parametrize("check", list(MIXER_CHECKS))
@pytest.mark.parametrize("mixer", MIXERS)
def test_every_mixer_conforms(mixer: str, check: str) -> None:
    check_mixer(mixer, checks=[check])


CAUSAL_MIXERS = [e.name for e in _REGISTRY.entries("mixer") if "causal" in e.options]


def test_the_builtin_causal_mixers_are_all_checked() -> None:
    assert {"attention", "identity", "mlp", "pooling", "window"} <= set(CAUSAL_MIXERS)


# Lengths that divide neither the window (7) nor a bucket or chunk of 4, 8 or 64 tokens,
# and one that does: chunked mixers must hold at every border, ragged last chunk included.
@pytest.mark.parametrize("tokens", [9, 23, 50, 64])
@pytest.mark.parametrize("mixer", CAUSAL_MIXERS)
def test_every_causal_mixer_is_causal_at_several_lengths(mixer: str, tokens: int) -> None:
    try:
        check_mixer(mixer, grids=[(tokens,)], checks=["causality"])
    except IncompatibleError as exc:  # a length the mixer cannot take at its defaults
        pytest.skip(str(exc))


class LooksAhead(nn.Module):
    """Broken on purpose: declares ``causal`` but mixes in the next token anyway."""

    def __init__(self, dim: int, grid: tuple[int, ...], *, causal: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x + torch.roll(x, -1, dims=1))


class ForgetsThePast(nn.Module):
    """Broken on purpose: with ``causal`` it masks everything, the past included."""

    def __init__(self, dim: int, grid: tuple[int, ...], *, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x if self.causal else x + x.mean(dim=1, keepdim=True))


class CausalBreakers:
    @mixbench.hookimpl
    def register_mixers(self, register):  # type: ignore[no-untyped-def]
        register("peeker", LooksAhead)
        register("amnesiac", ForgetsThePast)


@pytest.mark.parametrize(
    ("mixer", "message"),
    [
        ("peeker", "changing the inputs after position 0 changed the output"),
        ("amnesiac", "the output at position 1 ignores every earlier input"),
    ],
)
def test_the_causality_check_catches_look_ahead_and_a_lost_past(mixer: str, message: str) -> None:
    plugins.register_plugin(CausalBreakers(), "causal-breakers")
    with pytest.raises(ContractError) as info:
        check_mixer(mixer, grids=[(9,)], checks=["causality"])
    assert info.value.check == "causality" and message in str(info.value)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_conforms(optimizer: str) -> None:
    check_optimizer(optimizer)


class BatchMixer(nn.Module):
    """Broken on purpose: adds the batch mean, so samples see each other."""

    def __init__(self, dim: int, grid: tuple[int, ...]) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x + x.mean(dim=0, keepdim=True))


class ShapeBreaker(nn.Module):
    def __init__(self, dim: int, grid: tuple[int, ...]) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class DeadParameter(nn.Module):
    def __init__(self, dim: int, grid: tuple[int, ...]) -> None:
        super().__init__()
        self.used = nn.Linear(dim, dim)
        self.unused = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


class Broken:
    @mixbench.hookimpl
    def register_mixers(self, register):  # type: ignore[no-untyped-def]
        register("batchy", BatchMixer)
        register("halver", ShapeBreaker)
        register("dead", DeadParameter)


@pytest.mark.parametrize(
    ("mixer", "check", "message"),
    [
        ("batchy", "batch independence", "mixes information across the batch dimension"),
        ("halver", "shape", "gave output (3, 64, 16); expected (3, 64, 32)"),
        (
            "dead",
            "gradients",
            "parameter(s) without gradient on grid (64,), block index 0: "
            "unused.weight, unused.bias",
        ),
    ],
)
def test_kit_names_plugin_mixer_and_check(mixer: str, check: str, message: str) -> None:
    plugins.register_plugin(Broken(), "broken-plugin")
    with pytest.raises(ContractError) as info:
        check_mixer(mixer, grids=[(64,)])
    err = info.value
    assert (err.plugin, err.name, err.check) == ("broken-plugin", mixer, check)
    assert message in str(err)
    assert "from plugin 'broken-plugin' failed check" in str(err)


def test_kit_catches_an_optimizer_that_does_not_descend() -> None:
    class Plugin:
        @mixbench.hookimpl
        def register_optimizers(self, register):  # type: ignore[no-untyped-def]
            register("ascent", lambda params, lr: torch.optim.SGD(params, lr=lr, maximize=True))

    plugins.register_plugin(Plugin(), "uphill")
    with pytest.raises(
        ContractError, match="'ascent' from plugin 'uphill' failed check 'decreases loss'"
    ):
        check_optimizer("ascent")
