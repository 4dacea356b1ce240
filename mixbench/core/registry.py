"""What plugins registered: mixers, optimizers, tasks and executors, with their options.

Options are read from each factory's signature, so a plugin author documents an option by
giving it a default (and ideally a type hint): that is what ``mixbench info`` shows and what
``--mixer-option KEY=VALUE`` is validated and converted against.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixbench.core.plain_json import plain
from mixbench.errors import OptionError, UnknownNameError, UsageError

KINDS = ("mixer", "optimizer", "task", "executor")

# Parameters of each kind's factory that the harness supplies; they are not options.
RESERVED: dict[str, tuple[str, ...]] = {
    "mixer": ("dim", "grid", "index"),
    "optimizer": ("params", "lr"),
    "task": ("seed",),
    "executor": (),
}

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


@dataclass(frozen=True)
class OptionInfo:
    """One keyword option of a factory."""

    name: str
    default: Any
    annotation: Any  # a type, a typing construct, or None when the factory gave none

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    @property
    def type_name(self) -> str:
        ann = self.annotation
        if ann is None:
            return type(self.default).__name__ if not self.required else "any"
        if isinstance(ann, type):
            return ann.__name__
        return str(ann).replace("typing.", "")

    def convert(self, value: Any) -> Any:
        """Convert a value (a string from the command line, or a Python value)."""
        target = self.annotation
        if target is None and not self.required and self.default is not None:
            target = type(self.default)
        try:
            return _convert(value, target)
        except (TypeError, ValueError) as exc:
            raise OptionError(
                f"option {self.name!r}: cannot use {value!r} ({exc}); expected {self.type_name}"
            ) from None


def _convert(value: Any, target: Any) -> Any:
    if target is None or target is Any or target is inspect.Parameter.empty:
        return _literal(value) if isinstance(value, str) else value
    origin = typing.get_origin(target)
    args = typing.get_args(target)
    if origin is typing.Literal:
        for choice in args:
            try:
                if _convert(value, type(choice)) == choice:
                    return choice
            except (TypeError, ValueError):
                continue
        raise ValueError("accepted values are " + ", ".join(repr(a) for a in args))
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, str) and value.lower() in {"none", "null"} and type(None) in args:
            return None
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else list(value)
        inner = args[0] if args else None
        converted = [
            _convert(item.strip() if isinstance(item, str) else item, inner) for item in items
        ]
        return tuple(converted) if origin is tuple else converted
    if target is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("not a boolean (use true or false)")
    if target is int:
        if isinstance(value, bool):
            raise ValueError("not an integer")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("not an integer")
        return int(value)
    if target is float:
        if isinstance(value, bool):
            raise ValueError("not a number")
        return float(value)
    if target is str:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return value
    if isinstance(target, type) and isinstance(value, target):
        return value
    if isinstance(target, type) and isinstance(value, str):
        return target(value)
    return value


def _literal(text: str) -> Any:
    """Best guess for an option whose factory gave neither a type hint nor a default."""
    lowered = text.strip().lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def read_options(
    factory: Callable[..., Any], reserved: Iterable[str]
) -> tuple[dict[str, OptionInfo], bool, bool]:
    """(options, accepts_var_kwargs, accepts_index) of a factory's signature."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}, True, False
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:
        hints = {}
    reserved = set(reserved)
    options: dict[str, OptionInfo] = {}
    var_kwargs = False
    accepts_index = False
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            var_kwargs = True
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        if param.name == "index":
            accepts_index = True
        if param.name in reserved:
            continue
        annotation = hints.get(param.name)
        if annotation is None and param.annotation is not inspect.Parameter.empty:
            annotation = None if isinstance(param.annotation, str) else param.annotation
        options[param.name] = OptionInfo(param.name, param.default, annotation)
    return options, var_kwargs, accepts_index


@dataclass(frozen=True)
class Entry:
    """One registered thing: a mixer, optimizer, task or executor."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""
    complexity: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def signature(self) -> tuple[dict[str, OptionInfo], bool, bool]:
        return read_options(self.factory, RESERVED[self.kind])

    @property
    def options(self) -> dict[str, OptionInfo]:
        return self.signature[0]

    @property
    def accepts_index(self) -> bool:
        return self.signature[2]

    def validate_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Convert and check ``raw`` against the factory's signature.

        An unknown option is an error listing the accepted ones; options the factory
        takes through ``**kwargs`` are passed on as given (the factory validates them).
        """
        options, var_kwargs, _ = self.signature
        converted: dict[str, Any] = {}
        for key, value in raw.items():
            if key in RESERVED[self.kind]:
                raise OptionError(
                    f"{self.kind} {self.name!r}: {key!r} is set by the harness, not an option"
                )
            info = options.get(key)
            if info is not None:
                converted[key] = info.convert(value)
            elif var_kwargs:
                converted[key] = _literal(value) if isinstance(value, str) else value
            else:
                accepted = ", ".join(sorted(options)) or "(none)"
                raise OptionError(
                    f"{self.kind} {self.name!r} has no option {key!r}; accepted: {accepted}"
                )
        missing = [n for n, info in options.items() if info.required and n not in converted]
        if missing:
            raise OptionError(f"{self.kind} {self.name!r} needs option(s): {', '.join(missing)}")
        return converted

    def describe(self) -> dict[str, Any]:
        """Plain-data description, for ``mixbench info`` and ``list --json``."""
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "complexity": self.complexity,
            "options": {
                name: {
                    "type": info.type_name,
                    "default": None if info.required else plain(info.default),
                    "required": info.required,
                }
                for name, info in self.options.items()
            },
            "metadata": {k: plain(v) for k, v in self.metadata.items()},
        }


class Registry:
    """Every registered entry by kind and name, plus the names that clashed."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._conflicts: dict[tuple[str, str], list[str]] = {}

    def add(self, entry: Entry) -> None:
        existing = self._entries[entry.kind].get(entry.name)
        key = (entry.kind, entry.name)
        if key in self._conflicts:
            self._conflicts[key].append(entry.plugin)
            return
        if existing is not None:
            # Nothing is silently replaced: the name becomes unusable until one plugin goes.
            self._conflicts[key] = [existing.plugin, entry.plugin]
            del self._entries[entry.kind][entry.name]
            return
        self._entries[entry.kind][entry.name] = entry

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def conflicts(self) -> dict[tuple[str, str], list[str]]:
        return dict(self._conflicts)

    def get(self, kind: str, name: str) -> Entry:
        if kind not in self._entries:
            raise UsageError(f"unknown kind {kind!r}; accepted: {', '.join(KINDS)}")
        plugins = self._conflicts.get((kind, name))
        if plugins is not None:
            raise UsageError(
                f"{kind} {name!r} is registered by more than one plugin ("
                + " and ".join(repr(p) for p in plugins)
                + "); uninstall one, or choose which external plugins load with MIXBENCH_PLUGINS"
            )
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownNameError(kind, name, self._entries[kind]) from None

    def default(self, kind: str, use: str, flag: str) -> str:
        """The ``kind`` that ``use`` (``"train"``, ``"bench"``) takes when ``flag`` names
        none: the one registered with ``default_for=(use, ...)``. The core names no plugin:
        which optimizer trains by default is the optimizer plugin's statement, made exactly
        as a third party would make it."""
        claimed = [e.name for e in self.entries(kind) if use in e.metadata.get("default_for", ())]
        if len(claimed) == 1:
            return claimed[0]
        if not claimed:
            raise UsageError(f"{flag}: no {kind} is registered as the default for {use}; name one")
        raise UsageError(
            f"{flag}: {', '.join(claimed)} are each registered as the {kind} for {use} by "
            "default; name one"
        )

    def __contains__(self, item: tuple[str, str]) -> bool:
        kind, name = item
        return name in self._entries.get(kind, {})


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
