"""One ``[[grid]]`` table of a sweep file: its keys, checked values, and combinations.

The keys of a grid are the fields of its ``kind``'s options dataclass (``BenchOptions``,
``TrainOptions``; see ``mixbench.runs.cell_kinds``), so every option is a key and a new
option needs no change here. Values are checked for type and, for mixer, optimizer,
task and executor names, against the registry's names (via ``mixbench.core.namecache``, without
importing the plugins). A combination (`Point`) turns into the command's keyword arguments
exactly as the command line would give them (``--seed 1`` is ``["1"]``), so that the
command's planner builds the very cells it builds for the same command line.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixbench.core.namecache import NameCheck
from mixbench.errors import UsageError, suggest
from mixbench.runs.cell_kinds import cell_kinds

GRID_ONLY = ("kind", "include", "exclude", "timeout")
# Keys whose values are registered names (checked against the registry, split on commas).
NAMED = ("mixer", "optimizer", "task")
# Command options that describe a run, not a cell. (A cell's timeout is the sweep's
# ``timeout`` key; a command's own ``--timeout`` default applies when the file gives none.)
RUN_LEVEL = (
    "out",
    "as_json",
    "quiet",
    "timeout",
    "resume",
    "executor",
    "executor_option",
    "ray_address",
    "max_parallel",
)


# -- the keys each kind of cell accepts, read from its options dataclass --------------------


@dataclass(frozen=True)
class KeySpec:
    """One field of a kind's options, as a sweep key."""

    name: str  # the key as the planner receives it (the command line's parameter name)
    flag: str
    shape: str  # names | list | pairs | str | int | float | bool
    registry_kind: str | None  # mixer/optimizer/task for names and pairs
    default: Any

    @property
    def key(self) -> str:
        """How the file spells it: the flag, with underscores (``batch_size``, ``compile``)."""
        return self.flag.lstrip("-").replace("-", "_")


def _shape(annotation: Any, key: str) -> str:
    base = annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None -> X
        base = next(a for a in typing.get_args(annotation) if a is not type(None))
    origin = typing.get_origin(base)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return "pairs"
    if origin in (list, tuple):
        return "names" if key in NAMED else "list"
    for kind, shape in ((bool, "bool"), (int, "int"), (float, "float")):
        if base is kind:
            return shape
    return "str"


def option_keys(kind: str) -> dict[str, KeySpec]:
    """The sweep keys of a kind of cell: every field of its options dataclass but the
    run-level ones, under the name the command line gives it."""
    from mixbench.core.plugin_loader import import_string
    from mixbench.runs.cell_kinds import cell_kind

    spec = cell_kind(kind)
    options = import_string(spec.options)
    hints = typing.get_type_hints(options)
    specs: dict[str, KeySpec] = {}
    for item in dataclasses.fields(options):
        key = spec.keys.get(item.name, item.name)
        if key in RUN_LEVEL:
            continue
        shape = _shape(hints[item.name], key)
        registry_kind = None
        if shape == "pairs":
            registry_kind = key.removesuffix("_option")
        elif shape == "names":
            registry_kind = key
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            default = None
        flag = "--" + key.replace("_", "-")
        specs[key] = KeySpec(key, flag, shape, registry_kind, default)
    return specs


def default_timeout(kind: str) -> float | None:
    """A cell's timeout when the sweep gives none: the default of the kind's options'
    ``timeout`` field, if they have one."""
    from mixbench.core.plugin_loader import import_string
    from mixbench.runs.cell_kinds import cell_kind

    options = import_string(cell_kind(kind).options)
    for item in dataclasses.fields(options):
        if item.name == "timeout" and isinstance(item.default, (int, float)):
            return float(item.default)
    return None


def aliases(specs: Mapping[str, KeySpec]) -> dict[str, str]:
    """Spelling in the file -> parameter name: ``batch-size``, ``batch_size``, ``json``..."""
    found: dict[str, str] = {}
    for spec in specs.values():
        flag = spec.flag.lstrip("-")
        for alias in (spec.name, flag, flag.replace("-", "_")):
            found[alias] = spec.name
    return found


# -- reading grid tables: the first pass, no torch --------------------------------------------


def sweep_error(source: str, where: str, message: str) -> UsageError:
    return UsageError(f"{source}: {where}: {message}" if where else f"{source}: {message}")


def unknown_key_error(
    source: str,
    where: str,
    key: str,
    accepted: Iterable[str],
    spellings: Mapping[str, str] | None = None,
) -> UsageError:
    """An unknown key, with close matches among the accepted keys and their spellings."""
    accepted = sorted(set(accepted))
    spellings = {**{a: a for a in accepted}, **(spellings or {})}
    close = list(dict.fromkeys(spellings[c] for c in suggest(key, spellings)))
    hint = (" Did you mean " + " or ".join(repr(c) for c in close) + "?") if close else ""
    return sweep_error(
        source, where, f"unknown key {key!r}.{hint} Accepted: {', '.join(accepted)}."
    )


def _text(value: Any) -> str:
    """An option value as the command line would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _split_names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass
class Grid:
    """One ``[[grid]]`` table, checked: fixed keys, axes, and the include/exclude lists."""

    index: int
    kind: str
    specs: dict[str, KeySpec]
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    include: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    timeout: float | None = None
    where: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"grid[{self.index}]"


# What each shape of option accepts from TOML, and how to say so.
_SCALARS: dict[str, tuple[tuple[type, ...], str]] = {
    "names": ((str,), "a name"),
    "list": ((str, int, float), "a number or a comma-separated string of them"),
    "str": ((str, int, float), "a string"),
    "int": ((int,), "a whole number"),
    "float": ((int, float), "a number"),
    "bool": ((bool,), "true or false"),
}


class SweepReader:
    """The first pass over a parsed file: keys, types, names and option keys."""

    def __init__(self, source: str, names: NameCheck) -> None:
        self.source = source
        self.names = names
        self._specs: dict[str, dict[str, KeySpec]] = {}

    def specs(self, kind: str) -> dict[str, KeySpec]:
        if kind not in self._specs:
            self._specs[kind] = option_keys(kind)
        return self._specs[kind]

    def fail(self, where: str, message: str) -> UsageError:
        return sweep_error(self.source, where, message)

    # -- one value -------------------------------------------------------------------
    def value(self, spec: KeySpec, value: Any, where: str) -> tuple[bool, list[Any]]:
        """(is an axis, its values) after checking every value's type and names."""
        if spec.shape == "pairs":
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                return True, [self.pairs(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return False, [self.pairs(value, where)]
        if isinstance(value, list):
            if not value:
                raise self.fail(where, "an empty list gives no cells")
            return True, [self.scalar(spec, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return False, [self.scalar(spec, value, where)]

    def pairs(self, value: Any, where: str) -> dict[str, str]:
        """Options as ``KEY -> VALUE`` text; a table under a name scopes its options to that
        name (``{sam = {rho = 0.1}}`` is ``sam.rho=0.1``), as the command line writes it."""
        if isinstance(value, dict):
            out: dict[str, str] = {}
            for key, item in value.items():
                if not isinstance(item, dict):
                    out[str(key)] = _text(item)
                    continue
                for option, inner in item.items():
                    if isinstance(inner, dict):
                        raise self.fail(f"{where}.{key}.{option}", "tables nest one level only")
                    out[f"{key}.{option}"] = _text(inner)
            return out
        if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
            return dict(item.split("=", 1) for item in value)
        raise self.fail(
            where,
            "expected a table of options (for example {window_size = 7}), a list of such "
            "tables (an axis), or a list of 'KEY=VALUE' strings",
        )

    def scalar(self, spec: KeySpec, value: Any, where: str) -> Any:
        types_, wanted = _SCALARS[spec.shape]
        if isinstance(value, bool) != (spec.shape == "bool") or not isinstance(value, types_):
            raise self.fail(where, f"expected {wanted}, got {value!r} ({_toml_type(value)})")
        if spec.shape == "names" and spec.registry_kind:
            for name in _split_names(str(value)):
                try:
                    self.names.require(spec.registry_kind, name)
                except ValueError as exc:
                    raise self.fail(where, str(exc)) from None
        return value

    def canonical(self, kind: str, key: str, where: str) -> KeySpec:
        specs = self.specs(kind)
        spelled = aliases(specs)
        if key in spelled:
            return specs[spelled[key]]
        if key.replace("-", "_") in (*RUN_LEVEL, "json"):
            raise self.fail(where, f"{key!r} is set on the sweep's command line, not in the file")
        spellings = {alias: specs[name].key for alias, name in spelled.items()}
        raise unknown_key_error(
            self.source, where, key, [*(s.key for s in specs.values()), *GRID_ONLY], spellings
        )

    # -- one table of keys (a grid, an include or exclude entry, the defaults) --------
    def table(
        self, kind: str, table: Mapping[str, Any], prefix: str, skip: Sequence[str] = ()
    ) -> dict[str, tuple[KeySpec, bool, list[Any], str]]:
        out: dict[str, tuple[KeySpec, bool, list[Any], str]] = {}
        for key, raw in table.items():
            if key in skip:
                continue
            where = f"{prefix}.{key}"
            spec = self.canonical(kind, key, where)
            if spec.name in out:
                raise self.fail(where, f"{spec.flag} is given twice (as {out[spec.name][3]})")
            is_axis, values = self.value(spec, raw, where)
            out[spec.name] = (spec, is_axis, values, where)
        return out

    def grid(self, index: int, table: Any, defaults: Mapping[str, Any]) -> Grid:
        prefix = f"grid[{index}]"
        if not isinstance(table, dict):
            raise self.fail(prefix, "each grid must be a table")
        kind = table.get("kind")
        kinds = cell_kinds()
        if kind not in kinds:
            close = suggest(str(kind), kinds)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            got = "missing" if kind is None else f"unknown kind {kind!r}"
            raise self.fail(f"{prefix}.kind", f"{got}.{hint} Accepted: {', '.join(kinds)}.")
        grid = Grid(index, kind, self.specs(kind))
        accepted = aliases(grid.specs)
        applied = {k: v for k, v in defaults.items() if k in accepted and k not in table}
        entries = self.table(kind, applied, "defaults")
        entries.update(self.table(kind, table, prefix, skip=GRID_ONLY))
        for name, (_, is_axis, values, where) in entries.items():
            grid.where[name] = where
            if is_axis:
                grid.axes[name] = values
            else:
                grid.fixed[name] = values[0]
        grid.timeout = self.timeout(table.get("timeout"), f"{prefix}.timeout")
        for which in ("include", "exclude"):
            listed = table.get(which, [])
            if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
                raise self.fail(
                    f"{prefix}.{which}",
                    f'expected a list of tables, e.g. {which} = [{{mixer = "pooling", seed = 1}}]',
                )
            for j, entry in enumerate(listed):
                checked = self.table(kind, entry, f"{prefix}.{which}[{j}]")
                if not checked:
                    raise self.fail(f"{prefix}.{which}[{j}]", "an empty table")
                getattr(grid, which).append(
                    {
                        name: (values if is_axis else values[0], is_axis, where)
                        for name, (_, is_axis, values, where) in checked.items()
                    }
                )
        return grid

    def timeout(self, value: Any, where: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.fail(where, f"expected a number of seconds > 0, got {value!r}")
        return float(value)


def _toml_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return names.get(type(value), "table" if isinstance(value, dict) else type(value).__name__)


# -- combinations ----------------------------------------------------------------------------


@dataclass
class Point:
    """One combination of a grid: parameter -> file value, and where it came from."""

    grid: Grid
    values: dict[str, Any]
    origin: str

    def cli(self) -> dict[str, Any]:
        """The command's keyword arguments for this combination (CLI-shaped values).

        An option scoped to a name (``mixer_option = {pooling = {pool_size = 5}}``) goes only
        to the combinations that have that name: the grid's other mixers never see it.
        """
        out = {}
        for name, value in self.values.items():
            spec = self.grid.specs[name]
            if spec.shape == "pairs" and spec.registry_kind:
                value = self._in_scope(spec.registry_kind, value)
            out[name] = _cli(spec, value)
        return out

    def _in_scope(self, kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
        chosen = self.values.get(kind)
        if chosen is None:  # the command's default set of names: it checks scopes itself
            return dict(options)
        names = {chosen} if isinstance(chosen, str) else {str(n) for n in chosen}
        return {
            key: value
            for key, value in options.items()
            if "." not in key or key.rpartition(".")[0] in names
        }

    def describe(self) -> str:
        shown = {k: v for k, v in self.values.items() if k in self.grid.axes or k == "mixer"}
        return ", ".join(
            f"{k}={_text(v) if not isinstance(v, dict) else v}" for k, v in shown.items()
        )


def _cli(spec: KeySpec, value: Any) -> Any:
    if spec.shape == "pairs":
        return [f"{k}={v}" for k, v in value.items()]
    if spec.shape == "names":
        return [str(value)]
    if spec.shape in ("list", "str"):  # a list as the command line spells it: "256,1024"
        return str(value)
    return value


def _product(fixed: Mapping[str, Any], axes: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(axes)
    return [
        {**fixed, **dict(zip(names, combo, strict=True))}
        for combo in itertools.product(*(axes[n] for n in names))
    ]


def _matches(grid: Grid, values: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    for name, (wanted, is_axis, _) in entry.items():
        spec = grid.specs[name]
        options = wanted if is_axis else [wanted]
        if _cli(spec, values.get(name)) not in [_cli(spec, w) for w in options]:
            return False
    return True


def combinations(grid: Grid, source: str) -> list[Point]:
    """The grid's product less ``exclude``, then each ``include`` entry's own product."""
    points = []
    hit = [False] * len(grid.exclude)
    for values in _product(grid.fixed, grid.axes):
        matched = [_matches(grid, values, entry) for entry in grid.exclude]
        hit = [a or b for a, b in zip(hit, matched, strict=True)]
        if not any(matched):
            points.append(Point(grid, values, grid.label))
    for j, entry in enumerate(grid.exclude):
        for name, (_, _, where) in entry.items():
            if name not in grid.fixed and name not in grid.axes:
                raise sweep_error(source, where, f"the grid does not set {grid.specs[name].flag}")
        if not hit[j]:
            raise sweep_error(
                source, f"{grid.label}.exclude[{j}]", "matches no combination of the grid"
            )
    for j, entry in enumerate(grid.include):
        fixed = {k: v for k, v in grid.fixed.items() if k not in entry}
        axes = {k: v for k, v in grid.axes.items() if k not in entry}
        for name, (value, is_axis, _) in entry.items():
            (axes if is_axis else fixed)[name] = value
        points += [Point(grid, v, f"{grid.label}.include[{j}]") for v in _product(fixed, axes)]
    return points


def check_option_keys(point: Point, names: NameCheck, source: str) -> None:
    """Each KEY of ``mixer_option`` (and the like) must be accepted by at least one of the
    combination's mixers, and a scoped ``NAME.KEY`` by that one: a typo fails here, from the
    name cache, before torch is imported. (The command's planner applies its own, possibly
    stricter, rules in the second pass.)"""
    for spec in point.grid.specs.values():
        if spec.shape != "pairs" or spec.name not in point.values or not spec.registry_kind:
            continue
        kind = spec.registry_kind
        named = point.values.get(kind)
        default = point.grid.specs[kind].default if kind in point.grid.specs else None
        targets = (
            _split_names(named)
            if named is not None
            else [n for d in (default or []) for n in _split_names(d)] or names.known.names(kind)
        )
        for key in point.values[spec.name]:
            scope, _, option = key.rpartition(".")
            among = [scope] if scope in targets else targets
            if scope and scope not in targets:
                continue  # a name outside this combination: the planner says so
            found = [f for f in (names.entry(kind, t) for t in among) if f is not None]
            if not found or any(var_kwargs for _, var_kwargs in found):
                continue
            accepted = sorted({k for options, _ in found for k in options})
            if option not in accepted:
                close = suggest(option, accepted)
                hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                raise sweep_error(
                    source,
                    point.grid.where.get(spec.name, point.origin),
                    f"no {kind} of {', '.join(among)} has an option {option!r}.{hint} "
                    f"Accepted: {', '.join(accepted) or '(none)'}.",
                )
