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
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer

import mixbench
from mixbench.core.registry import parse_key_values, scope_options
from mixbench.errors import MixbenchError, UsageError

F = TypeVar("F", bound=Callable[..., Any])
__all__ = ["app", "fail", "guard", "main", "parse_key_values", "scope_options"]

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
# mixbench/cli, imported at start-up only for its signature and help text.
CORE_COMMANDS: list[tuple[str, str, str]] = [
    ("bench", "mixbench.cli.bench", "bench"),
    ("train", "mixbench.cli.train", "train_command"),
    ("sweep", "mixbench.cli.sweep", "sweep_command"),
    ("leaderboard", "mixbench.cli.report", "leaderboard_command"),
    ("compare", "mixbench.cli.report", "compare_command"),
    ("plot", "mixbench.cli.report", "plot_command"),
    ("report", "mixbench.cli.report", "report_command"),
    ("list", "mixbench.cli.registry", "list_command"),
    ("info", "mixbench.cli.registry", "info_command"),
    ("plugins", "mixbench.cli.registry", "plugins_command"),
    ("env", "mixbench.cli.registry", "env_command"),
    ("new-plugin", "mixbench.cli.authoring", "new_plugin_command"),
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
    from mixbench.core.plugin_loader import get_plugins

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
