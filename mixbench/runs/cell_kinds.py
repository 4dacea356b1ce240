"""The kinds of cell: one registry that planning, the driver, executors and workers consult.

A kind says, for its cells, what their typed options are (the dataclass whose fields are
a sweep file's keys), how a set of options becomes cells (the planner), how one cell runs
wherever an executor puts it (the runner), and whether its results are times (then it runs
alone, with the machine's probes recorded). Nothing else dispatches on a cell's kind, so a
new kind is one `register_cell_kind` call in a module listed in ``PROVIDERS``: the driver,
the executors and the sweep reader need no change.

Functions are named as ``module:function`` strings: an executor ships a cell to another
process or machine as plain data, and naming keeps this module (and ``mixbench --help``)
free of the imports behind each kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from mixbench.errors import UsageError, suggest

# Modules that register the kinds mixbench ships, imported on the first lookup.
PROVIDERS = ("mixbench.bench.kind", "mixbench.train.kind")


@dataclass(frozen=True)
class CellKind:
    """One kind of cell.

    * ``options``: ``module:Class`` of its options dataclass; every field but the run-level
      ones is a sweep key, spelled as ``keys`` says where the field's name differs from the
      command line's (``mixers`` is ``mixer``);
    * ``planner``: ``module:function`` taking those keys as keyword arguments with
      command-line-shaped values (``mixer=["attention"]``, ``tokens="256"``) and returning
      the cells, or ``(cells, settings)`` when its cells need per-cell settings; it raises
      ``UsageError`` for anything the command would reject and runs nothing;
    * ``runner``: ``module:function`` running one cell's payload in this process and
      returning ``{"row": ..., "curves": ...}`` (see ``mixbench.executors.Job``);
    * ``timing``: its results are times, so a cell runs alone (nothing else on the
      machine) and gets the machine's matmul and bandwidth probes;
    * ``preload``: modules a worker process imports once, before its first cell, so that
      no cell's time or timeout pays for them.

    A cell's timeout, when a sweep gives none, is the default of the options' ``timeout``
    field, if they have one.
    """

    name: str
    options: str
    planner: str
    runner: str
    timing: bool = False
    preload: tuple[str, ...] = ()
    keys: Mapping[str, str] = field(default_factory=dict)


_KINDS: dict[str, CellKind] = {}
_loaded = False


def register_cell_kind(kind: CellKind) -> None:
    """Add a kind; a second registration of one name is a programming error."""
    if kind.name in _KINDS and _KINDS[kind.name] != kind:
        raise ValueError(f"cell kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind


def cell_kinds() -> dict[str, CellKind]:
    """Every registered kind, by name."""
    global _loaded
    if not _loaded:
        for module in PROVIDERS:
            importlib.import_module(module)
        _loaded = True
    return dict(_KINDS)


def cell_kind(name: str) -> CellKind:
    """The kind called ``name``, or a ``UsageError`` listing the kinds there are."""
    kinds = cell_kinds()
    if name not in kinds:
        close = suggest(str(name), kinds)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown kind {name!r}.{hint} Accepted: {', '.join(kinds)}.")
    return kinds[name]


def preloaded_modules() -> list[str]:
    """Every kind's ``preload`` modules, each once."""
    return list(dict.fromkeys(m for kind in cell_kinds().values() for m in kind.preload))


def runs_alone(kind: str) -> bool:
    """Whether cells of ``kind`` must have the machine to themselves (unknown kinds don't)."""
    known = cell_kinds().get(kind)
    return known is not None and known.timing
