"""Exceptions with the exit codes the CLI maps them to.

A ``UsageError`` is the user's to fix (unknown name, bad option value, malformed file):
the CLI prints its message and exits with code 2, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MixbenchError(Exception):
    """Base class of every error mixbench raises on purpose."""


class UsageError(MixbenchError):
    """Bad input from the user: exit code 2."""


class UnknownNameError(UsageError):
    """A mixer, optimizer, task or executor name that nothing registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        message = f"unknown {kind} {name!r}."
        if close:
            message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        message += " Registered: " + (", ".join(known) if known else "(none)") + "."
        super().__init__(message)
        self.kind, self.name, self.known, self.suggestions = kind, name, known, close


class OptionError(UsageError):
    """An option that a factory does not accept, or a value of the wrong type."""


class ContractError(MixbenchError):
    """A plugin broke the plugin contract (wrong shape, cross-batch mixing, ...)."""

    def __init__(self, plugin: str, kind: str, name: str, check: str, detail: str) -> None:
        super().__init__(f"{kind} {name!r} from plugin {plugin!r} failed check {check!r}: {detail}")
        self.plugin, self.kind, self.name, self.check, self.detail = (
            plugin,
            kind,
            name,
            check,
            detail,
        )


def suggest(name: str, known: Iterable[str]) -> list[str]:
    """Close matches of ``name`` among ``known``, best first."""
    return difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5)


class IncompatibleError(OptionError):
    """A valid option that cannot work with this grid or input (a window larger than the
    grid, an MLP mixer built for another length). Benchmarks record such a cell as
    ``skipped`` with this message as the reason."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocator ran out of memory (CPU or accelerator).

    torch raises ``torch.OutOfMemoryError`` on CUDA and a plain ``RuntimeError`` from the CPU
    allocator ("DefaultCPUAllocator: can't allocate memory"); Python's own is MemoryError.
    Read by type name and message, so this module needs no torch import.
    """
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("out of memory", "can't allocate memory", "not enough memory")
    )
