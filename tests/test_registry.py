"""Options are read from factory signatures, converted from strings, and checked."""

from __future__ import annotations

from typing import Literal

import pytest

from mixbench.core.registry import Entry, Registry
from mixbench.errors import OptionError


def factory(
    dim: int,
    grid: tuple[int, ...],
    *,
    heads: int = 4,
    rho: float = 0.05,
    shift: bool = True,
    mode: Literal["a", "b"] = "a",
    betas: tuple[float, float] = (0.9, 0.99),
    name: str | None = None,
    index: int = 0,
) -> None:
    return None


ENTRY = Entry("mixer", "demo", factory, "demo-plugin")


def test_options_exclude_harness_parameters() -> None:
    assert set(ENTRY.options) == {"heads", "rho", "shift", "mode", "betas", "name"}
    assert ENTRY.accepts_index


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"heads": "8"}, {"heads": 8}),
        ({"rho": "0.1"}, {"rho": 0.1}),
        ({"shift": "false"}, {"shift": False}),
        ({"shift": "YES"}, {"shift": True}),
        ({"mode": "b"}, {"mode": "b"}),
        ({"betas": "0.8,0.9"}, {"betas": (0.8, 0.9)}),
        ({"name": "none"}, {"name": None}),
        ({"name": "x"}, {"name": "x"}),
        ({"heads": 2}, {"heads": 2}),
    ],
)
def test_conversion(raw: dict[str, object], expected: dict[str, object]) -> None:
    assert ENTRY.validate_options(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"head": "8"}, "has no option 'head'; accepted: betas, heads, mode, name, rho, shift"),
        ({"heads": "eight"}, "option 'heads': cannot use 'eight'"),
        ({"heads": "2.5"}, "expected int"),
        ({"shift": "maybe"}, "not a boolean"),
        ({"mode": "c"}, "accepted values are 'a', 'b'"),
        ({"dim": "3"}, "set by the harness"),
    ],
)
def test_bad_options_say_what_is_accepted(raw: dict[str, object], message: str) -> None:
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ENTRY.validate_options(raw)


def test_registry_conflict_keeps_neither() -> None:
    registry = Registry()
    registry.add(Entry("mixer", "x", factory, "first"))
    registry.add(Entry("mixer", "x", factory, "second"))
    registry.add(Entry("mixer", "x", factory, "third"))
    assert registry.names("mixer") == []
    assert registry.conflicts()[("mixer", "x")] == ["first", "second", "third"]
