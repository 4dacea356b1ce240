"""Optional test dependencies: skipped on a developer's machine, required under CI.

A test that needs ray or a browser skips, with the reason, where they are missing; under
CI (``CI=true``, as GitHub Actions and most CI services set it) the same absence fails the
run, so CI cannot stay green by silently testing less.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason: str) -> NoReturn:
    """Skip the test, or fail it under CI, because ``reason``."""
    if under_ci():
        pytest.fail(f"CI is set, so this cannot be skipped: {reason}", pytrace=False)
    pytest.skip(reason)


def import_or_skip(name: str, reason: str) -> ModuleType:
    """``import name``; when that fails, skip (locally) or fail (under CI)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(reason)
