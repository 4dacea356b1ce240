"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``bench``, ``results``.

Each session installs torch 2.13.0 first (on the project's CI machines that is a local CPU
wheel; an unpinned torch would pull a multi-GB CUDA build).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"


@nox.session
def tests(session: nox.Session) -> None:
    """The default test suite (what CI and the README run)."""
    session.install(TORCH)
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.5")
    paths = ("mixbench", "mixbench_builtins", "tests", "examples", "results", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the core package."""
    session.install(TORCH)
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks of the harness itself (pytest-benchmark), not part of the test run."""
    session.install(TORCH)
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "benchmarks",
        "--benchmark-enable",
        "--benchmark-only",
        "--benchmark-autosave",
        *session.posargs,
    )


@nox.session
def results(session: nox.Session) -> None:
    """Rerun every study in results/studies and re-render its tables and plots (run it on a
    quiet machine; ``python results/regenerate.py STUDY`` reruns one)."""
    session.install(TORCH)
    session.install("-e", ".[test]", "nox")  # the peers study runs `nox -s peers`
    session.run("python", "results/regenerate.py", *session.posargs)


PEER_TORCH = ("torch==2.14.1", "torchvision==0.29.1")


@nox.session
def peers(session: nox.Session) -> None:
    """mixbench's built-in mixers against the implementations a user would otherwise use
    (timm 1.0, reformer-pytorch 1.4), as time ratios in one process, with equality checks:
    ``benchmarks/peers.py``. Its own environment, since timm needs torchvision and the peers
    are pinned to their own torch (about 6 GB, a CUDA build that also runs on CPU). Pass
    ``--write`` after ``--`` to record the ratios in ``results/peers/``."""
    session.install(*PEER_TORCH)
    session.install("timm>=1.0,<1.1", "reformer-pytorch>=1.4,<1.5")
    session.install("-e", ".")
    session.run("python", "benchmarks/peers.py", *session.posargs)
