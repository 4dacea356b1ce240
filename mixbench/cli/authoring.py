"""``mixbench new-plugin``: start a plugin package that works before its author edits it."""

from __future__ import annotations

from pathlib import Path

import typer


def new_plugin_command(
    name: str = typer.Argument(
        ..., help="Package (distribution) name, e.g. my-mixer; registers my_mixer."
    ),
    kind: str = typer.Option(
        "mixer", "--kind", help="What the example implementation is: mixer, optimizer or task."
    ),
    directory: Path = typer.Option(
        Path("."), "--dir", help="Parent directory; the package is written to DIR/NAME."
    ),
) -> None:
    """Write a new plugin package: pyproject with the mixbench entry point, a working example
    mixer, optimizer or task, a README, and tests running the conformance kit.

    Then: pip install -e NAME; pytest NAME; and it shows in `mixbench list`.
    """
    from rich.console import Console

    from mixbench.authoring.scaffold import next_command, plugin_names, write_plugin

    registered = plugin_names(name).registered
    target = write_plugin(name, kind, directory)
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"Created {kind} plugin [bold]{registered}[/bold] in {target}/:")
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        console.print(f"  {path.relative_to(target)}")
    console.print("Next:")
    for step in (
        f"pip install -e {target}",
        f"pytest {target}",
        next_command(kind, registered),
    ):
        console.print(f"  {step}", markup=False)
