"""``mixbench list``, ``info``, ``plugins`` and ``env``: what is installed and where it runs."""

from __future__ import annotations

import json
from typing import Any

import typer

from mixbench.errors import UnknownNameError, UsageError

_PLURAL = {"mixers": "mixer", "optimizers": "optimizer", "tasks": "task", "executors": "executor"}


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def list_command(
    what: str = typer.Argument(
        "all", help="mixers, optimizers, tasks, executors, or all.", show_default=True
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List registered mixers, optimizers, tasks and executors, with their source plugin."""
    from mixbench.core.plugin_loader import get_registry

    if what != "all" and what not in _PLURAL:
        raise UsageError(f"cannot list {what!r}; accepted: all, {', '.join(_PLURAL)}")
    kinds = list(_PLURAL.values()) if what == "all" else [_PLURAL[what]]
    registry = get_registry()
    if as_json:
        data = {f"{kind}s": [e.describe() for e in registry.entries(kind)] for kind in kinds}
        typer.echo(json.dumps(data if what == "all" else data[f"{kinds[0]}s"], indent=2))
        return
    from rich.table import Table

    console = _console()
    for kind in kinds:
        entries = registry.entries(kind)
        if what == "all" and not entries:
            continue
        table = Table(title=f"{kind}s ({len(entries)})", title_justify="left")
        table.add_column("name", style="bold cyan")
        table.add_column("plugin")
        if kind == "mixer":
            table.add_column("complexity")
        table.add_column("description")
        for entry in entries:
            cells = [entry.name, entry.plugin]
            if kind == "mixer":
                cells.append(entry.complexity)
            cells.append(entry.description)
            table.add_row(*cells)
        console.print(table)
    for (kind, name), plugins in sorted(registry.conflicts().items()):
        if kind in kinds:
            console.print(
                f"[red]conflict:[/red] {kind} {name!r} is registered by "
                + " and ".join(repr(p) for p in plugins)
                + " — neither is used"
            )


def info_command(
    name: str = typer.Argument(..., help="A mixer, optimizer, task or executor name."),
    kind: str | None = typer.Option(
        None, "--kind", help="mixer, optimizer, task or executor, when a name is ambiguous."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show what NAME is: description, options with defaults, complexity, source plugin."""
    from mixbench.core.plugin_loader import get_registry
    from mixbench.core.registry import KINDS

    registry = get_registry()
    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    kinds = [kind] if kind else list(KINDS)
    found = [registry.get(k, name) for k in kinds if (k, name) in registry]
    if not found:
        if kind:
            registry.get(kind, name)  # raises with suggestions, or names a conflict
        conflicted = [k for k in kinds if (k, name) in registry.conflicts()]
        if conflicted:
            registry.get(conflicted[0], name)
        every = {n for k in kinds for n in registry.names(k)}
        raise UnknownNameError("name", name, every)
    if as_json:
        out = [e.describe() for e in found]
        typer.echo(json.dumps(out[0] if len(out) == 1 else out, indent=2))
        return
    from rich.table import Table

    console = _console()
    for entry in found:
        d = entry.describe()
        console.print(f"[bold cyan]{entry.name}[/bold cyan]  ({entry.kind}, plugin {entry.plugin})")
        if entry.description:
            console.print(f"  {entry.description}")
        if entry.complexity:
            console.print(f"  complexity: {entry.complexity}")
        for key, value in d["metadata"].items():
            console.print(f"  {key}: {value}")
        if d["options"]:
            table = Table(title="options", title_justify="left")
            for col in ("option", "type", "default"):
                table.add_column(col)
            for opt, spec in d["options"].items():
                default = "(required)" if spec["required"] else repr(spec["default"])
                table.add_row(opt, spec["type"], default)
            console.print(table)
        else:
            console.print("  options: none")


def plugins_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List plugins: version, hooks, status (ok, failed, disabled) and any error."""
    from mixbench.core.plugin_loader import ENV_VAR, get_plugins

    plugins = get_plugins()
    _ = plugins.registry  # run the register hooks, so hook failures show up too
    infos = sorted(plugins.infos.values(), key=lambda i: (not i.builtin, i.name))
    if as_json:
        typer.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    from rich.table import Table

    table = Table(title="plugins", title_justify="left")
    for col in ("name", "version", "source", "hooks", "registered", "status"):
        table.add_column(col)
    for info in infos:
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in info.registered.items())
        status = {"ok": "[green]ok[/green]", "failed": "[red]failed[/red]"}.get(
            info.status, f"[yellow]{info.status}[/yellow]"
        )
        if info.error:
            status += f"\n{info.error}"
        source = "built-in" if info.builtin else (info.distribution or info.module)
        table.add_row(
            info.name, info.version or "", source, ", ".join(info.hooks), registered, status
        )
    console = _console()
    console.print(table)
    console.print(f"External plugins load as chosen by {ENV_VAR} (unset: all; empty: none).")


def env_command(
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the environment a benchmark would record: versions, device, CPU, threads."""
    from mixbench.runs.environment import collect_environment, resolve_device

    env = collect_environment(resolve_device(device))
    if as_json:
        typer.echo(json.dumps(env, indent=2, default=str))
        return
    console = _console()
    for key, value in env.items():
        if key == "plugins":
            value = ", ".join(f"{n} {v['version'] or ''}".strip() for n, v in value.items())
        console.print(f"[bold]{key}[/bold]: {value}")
