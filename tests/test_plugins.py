"""The plugin system: discovery, isolation of failures, name clashes, the env switch."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import mixbench
from mixbench.cli.app import app
from mixbench.core import plugin_loader as plugins
from mixbench.errors import UnknownNameError, UsageError

THIRD_PARTY = """
import torch
from torch import nn
import mixbench

class Shift(nn.Module):
    '''Rolls tokens by one position: a toy mixer for tests.'''
    def __init__(self, dim, grid, *, amount: int = 1):
        super().__init__()
        self.amount = amount
        self.mix = nn.Linear(dim, dim)
    def forward(self, x):
        return self.mix(torch.roll(x, self.amount, dims=1))

@mixbench.hookimpl
def register_mixers(register):
    register("shift", Shift, description="roll tokens", complexity="O(N)")
"""

BROKEN_AT_IMPORT = """
raise RuntimeError("this plugin is broken on purpose")
"""

RAISES_IN_HOOK = """
import mixbench

@mixbench.hookimpl
def register_mixers(register):
    register("half_done", object)
    raise ValueError("hook failed on purpose")
"""

CLASHES = """
import mixbench
from torch import nn

@mixbench.hookimpl
def register_mixers(register):
    register("attention", lambda dim, grid: nn.Identity(), description="an impostor")
"""


def test_builtins_register_through_entry_points() -> None:
    infos = plugins.get_plugins().infos
    registry = plugins.get_registry()
    assert registry.names("mixer") == ["attention", "identity", "lsh", "mlp", "pooling", "window"]
    assert registry.names("optimizer") == ["adam", "adamw", "sam", "sgd"]
    for name in registry.names("mixer"):
        entry = registry.get("mixer", name)
        assert infos[entry.plugin].builtin
        assert infos[entry.plugin].module.startswith("mixbench_builtins.")


def test_third_party_plugin_is_listed_and_trains_a_step(install_dist, monkeypatch) -> None:
    install_dist("mixbench-shift", "mixbench_shift", THIRD_PARTY, {"shift": "mixbench_shift"})
    monkeypatch.delenv("MIXBENCH_PLUGINS")
    plugins.reset()
    result = CliRunner().invoke(app, ["list", "mixers", "--json"])
    assert result.exit_code == 0, result.output
    assert "shift" in result.output
    entry = plugins.get_registry().get("mixer", "shift")
    assert entry.plugin == "shift" and not plugins.get_plugins().infos["shift"].builtin

    torch.manual_seed(0)
    model = mixbench.create_model(
        "shift", preset="tiny", num_classes=3, image_size=8, in_channels=1, amount=2
    )
    opt = mixbench.create_optimizer("sgd", model.parameters(), lr=0.1)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    before = [p.detach().clone() for p in model.parameters()]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.isfinite(loss)
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)]
    assert all(changed)


def test_env_var_empty_loads_builtins_only(install_dist, monkeypatch) -> None:
    install_dist("mixbench-shift", "mixbench_shift", THIRD_PARTY, {"shift": "mixbench_shift"})
    monkeypatch.setenv("MIXBENCH_PLUGINS", "")
    plugins.reset()
    assert "shift" not in plugins.get_registry().names("mixer")
    assert plugins.get_plugins().infos["shift"].status == "disabled"
    monkeypatch.setenv("MIXBENCH_PLUGINS", "mixbench-shift")  # by distribution name
    plugins.reset()
    assert "shift" in plugins.get_registry().names("mixer")


def test_plugin_failing_at_import_is_reported_and_others_work(install_dist, monkeypatch) -> None:
    install_dist(
        "mixbench-broken", "mixbench_broken", BROKEN_AT_IMPORT, {"broken": "mixbench_broken"}
    )
    monkeypatch.setenv("MIXBENCH_PLUGINS", "broken")
    plugins.reset()
    runner = CliRunner()
    listing = runner.invoke(app, ["list", "mixers"])
    assert listing.exit_code == 0 and "attention" in listing.output
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    import json

    by_name = {p["name"]: p for p in json.loads(result.output)}
    assert by_name["broken"]["status"] == "failed"
    assert "broken on purpose" in by_name["broken"]["error"]
    assert by_name["attention"]["status"] == "ok"


def test_plugin_raising_in_hook_is_dropped_whole(install_dist, monkeypatch) -> None:
    install_dist("mixbench-half", "mixbench_half", RAISES_IN_HOOK, {"half": "mixbench_half"})
    monkeypatch.setenv("MIXBENCH_PLUGINS", "half")
    plugins.reset()
    registry = plugins.get_registry()
    info = plugins.get_plugins().infos["half"]
    assert info.status == "failed" and "hook failed on purpose" in (info.error or "")
    assert "half_done" not in registry.names("mixer")  # nothing half-registered
    assert "pooling" in registry.names("mixer")


def test_two_plugins_one_name_is_an_error_naming_both(install_dist, monkeypatch) -> None:
    install_dist("mixbench-clash", "mixbench_clash", CLASHES, {"clash": "mixbench_clash"})
    monkeypatch.setenv("MIXBENCH_PLUGINS", "clash")
    plugins.reset()
    registry = plugins.get_registry()
    with pytest.raises(UsageError, match=r"'attention' and 'clash'|'clash' and 'attention'"):
        registry.get("mixer", "attention")
    assert "attention" not in registry.names("mixer")  # nothing silently replaced
    listing = CliRunner().invoke(app, ["list", "mixers"])
    assert "conflict" in listing.output and "'clash'" in listing.output


def test_in_process_registration_and_unregistration() -> None:
    class Plugin:
        @mixbench.hookimpl
        def register_optimizers(self, register):  # type: ignore[no-untyped-def]
            register("plain", lambda params, lr: torch.optim.SGD(params, lr=lr))

    plugins.register_plugin(Plugin(), "tmp-opt")
    assert "plain" in plugins.get_registry().names("optimizer")
    plugins.unregister_plugin("tmp-opt")
    with pytest.raises(UnknownNameError):
        plugins.get_registry().get("optimizer", "plain")


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError) as info:
        plugins.get_registry().get("mixer", "atention")
    assert info.value.suggestions[0] == "attention"
    assert "Did you mean 'attention'" in str(info.value)


def test_register_commands_adds_a_subcommand() -> None:
    import typer

    class Plugin:
        @mixbench.hookimpl
        def register_commands(self, app):  # type: ignore[no-untyped-def]
            @app.command("hello")
            def hello(name: str = "world") -> None:
                typer.echo(f"hello {name}")

    plugins.register_plugin(Plugin(), "greeter")
    local = typer.Typer()

    @local.command("noop")
    def noop() -> None:
        pass

    from mixbench.cli.app import load_plugin_commands

    load_plugin_commands(local)
    result = CliRunner().invoke(local, ["hello", "--name", "mixer"])
    assert result.exit_code == 0 and "hello mixer" in result.output


class DefaultClaims:
    """A task claiming ``default_for`` as a bare string, and one with a malformed claim."""

    @mixbench.hookimpl
    def register_tasks(self, register) -> None:  # type: ignore[no-untyped-def]
        register("bare-claim", lambda **kw: None, default_for="training")


class BadClaim:
    @mixbench.hookimpl
    def register_tasks(self, register) -> None:  # type: ignore[no-untyped-def]
        register("bad-claim", lambda **kw: None, default_for=1)


def test_default_for_a_bare_string_is_one_use_and_a_bad_value_fails_the_plugin() -> None:
    plugins.register_plugin(DefaultClaims(), "bare-claims")
    plugins.register_plugin(BadClaim(), "bad-claims")
    registry = plugins.get_registry()
    # "train" is a substring of "training": a claim for "training" is not one for "train".
    assert registry.get("task", "bare-claim").metadata["default_for"] == ("training",)
    assert registry.default("task", "train", "--task") != "bare-claim"
    info = plugins.get_plugins().infos["bad-claims"]
    assert info.status == "failed" and "bad-claims" in (info.error or "")
    assert "default_for must be a use or a tuple of uses" in (info.error or "")
    assert "bad-claim" not in registry.names("task")
