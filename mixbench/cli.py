"""The ``mixbench`` command line: a thin Typer layer over the Python API.

Start-up stays fast: this module and the command modules import neither torch nor any
plugin; each command imports what it needs when it runs. Plugins that add commands through
``register_commands`` are loaded only when the command line names a command the core does not
have (``mixbench plugins`` lists them).
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import typer

import mixbench
from mixbench.errors import MixbenchError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="mixbench",
    help="Benchmark token mixers and optimizers in one MetaFormer shell.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# (command name, module, function): each command lives in its own module under
# mixbench/commands, imported at start-up only for its signature and help text.
CORE_COMMANDS: list[tuple[str, str, str]] = [
    ("bench", "mixbench.commands.bench", "bench"),
    ("train", "mixbench.commands.train", "train_command"),
    ("sweep", "mixbench.commands.sweep", "sweep_command"),
    ("leaderboard", "mixbench.commands.report", "leaderboard_command"),
    ("compare", "mixbench.commands.report", "compare_command"),
    ("plot", "mixbench.commands.report", "plot_command"),
    ("report", "mixbench.commands.report", "report_command"),
    ("list", "mixbench.commands.registry", "list_command"),
    ("info", "mixbench.commands.registry", "info_command"),
    ("plugins", "mixbench.commands.registry", "plugins_command"),
    ("env", "mixbench.commands.registry", "env_command"),
    ("new-plugin", "mixbench.commands.authoring", "new_plugin_command"),
]


def guard(func: F) -> F:
    """Turn mixbench's own errors into a one-line message and an exit code, never a
    traceback: usage errors exit 2, other deliberate failures exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            fail(str(exc), code=2)
        except MixbenchError as exc:
            fail(str(exc), code=1)

    return wrapper  # type: ignore[return-value]


def fail(message: str, code: int = 2) -> None:
    """Print ``Error: message`` to stderr and exit with ``code``."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]Error:[/bold red] {escape(message)}", markup=True
    )
    raise typer.Exit(code)


def parse_key_values(items: Sequence[str] | None, option: str) -> dict[str, str]:
    """``["rho=0.05", "base=sgd"]`` -> ``{"rho": "0.05", "base": "sgd"}``.

    Values stay strings here; the registry converts them with the factory's signature.
    """
    result: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{option}: {item!r} is not KEY=VALUE (for example rho=0.05)")
        if key in result:
            raise UsageError(f"{option}: {key!r} is given twice")
        result[key] = value.strip()
    return result


def scope_options(
    kind: str, names: Sequence[str], options: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """Each name's options: ``KEY=VALUE`` applies to every name of the kind in the grid,
    ``NAME.KEY=VALUE`` to that one only (``-o sgd -o sam --optimizer-option sam.rho=0.1``)."""
    result: dict[str, dict[str, str]] = {name: {} for name in names}
    for key, value in options.items():
        scope, dot, option = key.rpartition(".")
        if not dot:
            for name in names:
                result[name][key] = value
        elif scope in result:
            result[scope][option] = value
        else:
            raise UsageError(
                f"--{kind}-option {key}={value}: {scope!r} is not one of this grid's {kind}s "
                f"({', '.join(names)})"
            )
    return result


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mixbench {mixbench.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Show the version and exit.",
    ),
) -> None:
    """Benchmark token mixers and optimizers in one MetaFormer shell.

    Plugins add mixers, optimizers, tasks, executors and commands: see `mixbench plugins`.
    """


def _register_core_commands() -> None:
    for name, module_name, attr in CORE_COMMANDS:
        func = getattr(importlib.import_module(module_name), attr)
        app.command(name)(guard(func))


def load_plugin_commands(target: typer.Typer = app) -> None:
    """Let plugins add their sub-commands to ``target``."""
    from mixbench.plugins import get_plugins

    get_plugins().add_commands(target)


def _wants_plugin_command(argv: Sequence[str]) -> bool:
    core = {name for name, _, _ in CORE_COMMANDS}
    for arg in argv:
        if arg.startswith("-"):
            continue
        return arg not in core
    return False


_register_core_commands()


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    if _wants_plugin_command(args):
        load_plugin_commands(app)
    app(args=args, prog_name="mixbench")


if __name__ == "__main__":  # pragma: no cover
    main()
