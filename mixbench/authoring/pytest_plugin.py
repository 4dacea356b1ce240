"""mixbench's pytest plugin (entry point ``pytest11``): testing tools for plugin authors.

A plugin package's whole conformance suite is two lines of a test file:

    from mixbench.pytest_plugin import mixbench_conformance

    test_conformance = mixbench_conformance("my-mixer")

That collects one test per (registered mixer or optimizer of the plugin, check, grid) and runs
the conformance kit (``mixbench.testing``) on each, with only the built-ins and the named
plugin loaded, so another installed plugin can neither shadow nor clash with the one under
test. A contract break fails with the kit's message (plugin, mixer, check, shapes), not a
traceback from inside torch.

Fixtures:

* ``mixbench_registry``: the registry as the installed (and permitted) plugins fill it;
* ``mixbench_only``: ``mixbench_only("my-mixer")`` loads the built-ins plus the named
  installed plugins for one test and returns the registry;
* ``mixbench_benchmark``: with the marker ``@pytest.mark.mixbench_benchmark("my_mixer",
  grids=[(256,), (16, 16)])`` times the mixer's forward (or training) step with
  pytest-benchmark's ``benchmark`` fixture, one test per mixer and grid; skipped with a
  reason when pytest-benchmark is not installed.

This module loads in every pytest run of an environment where mixbench is installed, so it
imports neither torch nor any plugin at import time; only tests that use it pay for them.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from mixbench.core.plugin_loader import PluginSet
    from mixbench.core.registry import Registry

BENCHMARK_MARKER = "mixbench_benchmark"
_CONFORMANCE_KINDS = ("mixer", "optimizer")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{BENCHMARK_MARKER}(*mixers, grids=[(256,)], dim=64, batch=8, mode='infer', "
        "options=None, plugin=None): time each mixer on each grid with pytest-benchmark "
        "through the mixbench_benchmark fixture (one test per mixer and grid)",
    )


# -- choosing which plugins load ------------------------------------------------------------


def _normalise(name: str) -> str:
    """PEP 503 normalisation: ``My_Mixer`` and ``my-mixer`` name one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def plugins_env_value(names: Iterable[str]) -> str:
    """The ``MIXBENCH_PLUGINS`` value that loads exactly the installed plugins ``names``
    (entry-point or distribution names; distribution names compare PEP 503-normalised).

    Raises ``LookupError`` naming what is installed when a name matches nothing, which is
    nearly always a plugin that was never ``pip install``-ed.
    """
    from importlib import metadata

    from mixbench import ENTRY_POINT_GROUP

    points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    allowed: set[str] = set()
    for requested in names:
        wanted = _normalise(requested)
        hits = {ep.name for ep in points if ep.name == requested}
        hits |= {dist for dist in map(_dist_name, points) if dist and _normalise(dist) == wanted}
        if not hits:
            installed = sorted({d for d in map(_dist_name, points) if d and d != "mixbench"})
            raise LookupError(
                f"no installed mixbench plugin is called {requested!r} (neither an entry "
                f"point nor a distribution in the {ENTRY_POINT_GROUP!r} group). Installed "
                f"plugin distributions: {', '.join(installed) or '(none)'}. Install yours "
                "first, for example with `pip install -e .` in its directory."
            )
        allowed |= hits
    return ",".join(sorted(allowed))


def _dist_name(ep: Any) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def _owned(plugins: PluginSet, requested: str) -> list[str]:
    """Names of the loaded plugins that ``requested`` (entry point or distribution) means."""
    wanted = _normalise(requested)
    return [
        info.name
        for info in plugins.infos.values()
        if info.name == requested
        or info.name.endswith(f":{requested}")
        or (info.distribution is not None and _normalise(info.distribution) == wanted)
    ]


def _problems(plugins: PluginSet, owned: Sequence[str]) -> list[str]:
    """Why the plugins ``owned`` cannot be tested: failed loads and name clashes."""
    registry = plugins.registry  # runs the hooks, so hook failures are recorded too
    problems = [
        f"plugin {name!r} failed to load: {plugins.infos[name].error}"
        for name in owned
        if plugins.infos[name].status != "ok"
    ]
    for (kind, thing), names in sorted(registry.conflicts().items()):
        if set(names) & set(owned):
            problems.append(
                f"{kind} {thing!r} is registered by more than one plugin "
                f"({' and '.join(map(repr, names))}); rename yours"
            )
    return problems


def _activate(monkeypatch: pytest.MonkeyPatch, env_value: str) -> Registry:
    """Load the built-ins plus ``env_value``'s plugins as the process-wide plugin set."""
    from mixbench.core import plugin_loader as plugins

    monkeypatch.setenv(plugins.ENV_VAR, env_value)
    plugins.reset()
    return plugins.get_registry()


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def mixbench_registry() -> Registry:
    """The registry of every installed (and permitted) mixbench plugin."""
    from mixbench.core.plugin_loader import get_registry

    return get_registry()


@pytest.fixture
def mixbench_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Registry]]:
    """``mixbench_only("my-mixer", ...)``: load the built-ins and just the named installed
    plugins for this test, and return the registry; the previous plugin set comes back
    afterwards. Fails the test, saying why, when a named plugin is missing or broken."""
    from mixbench.core import plugin_loader as plugins

    def load(*names: str) -> Registry:
        try:
            env_value = plugins_env_value(names)
        except LookupError as exc:
            pytest.fail(str(exc), pytrace=False)
        registry = _activate(monkeypatch, env_value)
        current = plugins.get_plugins()
        owned = [name for requested in names for name in _owned(current, requested)]
        problems = _problems(current, owned)
        if problems:
            pytest.fail("; ".join(problems), pytrace=False)
        return registry

    yield load
    plugins.reset()


# -- the conformance suite ------------------------------------------------------------------


@dataclass(frozen=True)
class ConformanceCase:
    """One check of the kit on one registered mixer or optimizer (and, for mixers, one grid).

    ``problem`` is set instead when the plugin could not be loaded at collection time: the
    case then fails with that message, so a missing plugin is a failure, never a silently
    empty suite.
    """

    kind: str
    name: str
    check: str
    env_value: str
    grid: tuple[int, ...] = ()
    dim: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def id(self) -> str:
        if self.problem is not None:
            return "plugin-not-testable"
        parts = [self.kind, self.name, self.check.replace(" ", "_")]
        if self.grid:
            parts.append("x".join(map(str, self.grid)))
        return "-".join(parts)

    def run(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Run the check with only the built-ins and the plugin under test loaded."""
        from mixbench.authoring.conformance import MIXER_CHECKS, OPTIMIZER_CHECKS
        from mixbench.core import plugin_loader as plugins
        from mixbench.errors import ContractError, MixbenchError

        if self.problem is not None:
            pytest.fail(self.problem, pytrace=False)
        _activate(monkeypatch, self.env_value)
        kwargs: dict[str, Any] = {"options": dict(self.options)}
        if self.kind == "mixer":
            check = MIXER_CHECKS[self.check]
            kwargs["grid"] = self.grid
            if self.dim is not None:
                kwargs["dim"] = self.dim
        else:
            check = OPTIMIZER_CHECKS[self.check]
        try:
            check(self.name, **kwargs)
        except ContractError as exc:
            pytest.fail(str(exc) + _origin(exc), pytrace=False)
        except MixbenchError as exc:  # a bad option in the test file, an incompatible grid
            pytest.fail(f"{self.kind} {self.name!r}, check {self.check!r}: {exc}", pytrace=False)
        finally:
            plugins.reset()


def _origin(exc: BaseException) -> str:
    """Where the exception behind a contract error was raised, preferring the plugin's own
    code over frames inside torch or mixbench, so the author knows which line to look at."""
    cause = exc.__cause__
    if cause is None or cause.__traceback__ is None:
        return ""
    frames = traceback.extract_tb(cause.__traceback__)
    import mixbench

    library_dirs = [str(Path(mixbench.__file__).parent)]
    torch_module = sys.modules.get("torch")
    if torch_module is not None and torch_module.__file__:
        library_dirs.append(str(Path(torch_module.__file__).parent))
    own = [f for f in frames if not any(f.filename.startswith(d) for d in library_dirs)]
    frame = (own or frames)[-1]
    return f"\n  raised at {frame.filename}:{frame.lineno} in {frame.name}"


def conformance_cases(
    plugin: str,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    grids: Sequence[tuple[int, ...]] | None = None,
    dim: int | None = None,
    skip: Mapping[str, Iterable[str]] | None = None,
) -> list[Any]:
    """The ``pytest.param`` cases of ``mixbench_conformance`` (see there)."""
    from mixbench.authoring.conformance import (
        DEFAULT_GRIDS,
        MIXER_CHECKS,
        OPTIMIZER_CHECKS,
        causality_applies,
    )
    from mixbench.core import plugin_loader as plugins

    def failing(problem: str) -> list[Any]:
        case = ConformanceCase("plugin", plugin, "load", "", problem=problem)
        return [pytest.param(case, id=case.id)]

    try:
        env_value = plugins_env_value([plugin])
    except LookupError as exc:
        return failing(str(exc))
    with _environment(plugins.ENV_VAR, env_value):
        loaded = plugins.discover()
        registry = loaded.registry
    owned = _owned(loaded, plugin)
    problems = _problems(loaded, owned)
    if problems:
        return failing(f"plugin {plugin!r} cannot be tested: " + "; ".join(problems))
    entries = [e for k in _CONFORMANCE_KINDS for e in registry.entries(k) if e.plugin in owned]
    known = {e.name for e in entries}
    for name in [*(options or {}), *(skip or {})]:
        if name not in known:
            return failing(
                f"mixbench_conformance({plugin!r}) was given settings for {name!r}, which the "
                f"plugin does not register as a mixer or optimizer (it registers: "
                f"{', '.join(sorted(known)) or 'none'})"
            )
    if not entries:
        registered = {k: v for info in owned for k, v in loaded.infos[info].registered.items()}
        if registered:  # tasks or executors only: the kit has no checks for those yet
            case = ConformanceCase("plugin", plugin, "load", env_value)
            reason = f"the conformance kit checks mixers and optimizers; {plugin!r} registers " + (
                ", ".join(f"{kind}s {names}" for kind, names in registered.items())
            )
            return [pytest.param(case, id="nothing-to-check", marks=pytest.mark.skip(reason))]
        return failing(f"plugin {plugin!r} loaded but registered nothing")

    cases: list[Any] = []
    for entry in entries:
        skipped = set((skip or {}).get(entry.name, ()))
        chosen = dict((options or {}).get(entry.name, {}))
        if entry.kind == "mixer":
            names, grid_list = list(MIXER_CHECKS), [tuple(g) for g in (grids or DEFAULT_GRIDS)]
        else:
            names, grid_list = list(OPTIMIZER_CHECKS), [()]
        unknown = skipped - set(names)
        if unknown:
            return failing(
                f"skip for {entry.name!r} names unknown check(s) {sorted(unknown)}; "
                f"{entry.kind} checks are: {', '.join(names)}"
            )
        for check in names:
            for grid in grid_list:
                if check == "causality" and not causality_applies(entry, grid):
                    continue  # nothing to check: no test that cannot fail
                case = ConformanceCase(entry.kind, entry.name, check, env_value, grid, dim, chosen)
                reason = f"{check!r} skipped for {entry.name!r} by the test file"
                marks = [pytest.mark.skip(reason=reason)] if check in skipped else []
                cases.append(pytest.param(case, id=case.id, marks=marks))
    return cases


def mixbench_conformance(
    plugin: str,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    grids: Sequence[tuple[int, ...]] | None = None,
    dim: int | None = None,
    skip: Mapping[str, Iterable[str]] | None = None,
) -> Callable[..., None]:
    """A test function running the whole conformance kit over a plugin's mixers and
    optimizers; assign it to a ``test_*`` name in a test module.

    ``plugin`` is the installed plugin's distribution name (``my-mixer``) or entry-point
    name. ``options`` maps a registered name to the options to build it with;
    ``grids`` (mixers; default ``(64,)`` and ``(8, 8)``) and ``dim`` override the kit's
    sizes; ``skip`` maps a registered name to checks reported as skipped, visibly.
    The registry is read at collection time, so adding a mixer to the plugin adds its tests.
    """
    cases = conformance_cases(plugin, options=options, grids=grids, dim=dim, skip=skip)

    @pytest.mark.parametrize("mixbench_case", cases)
    def test_mixbench_conformance(
        mixbench_case: ConformanceCase, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        mixbench_case.run(monkeypatch)

    test_mixbench_conformance.__doc__ = f"The mixbench conformance kit over plugin {plugin!r}."
    return test_mixbench_conformance


# -- benchmarks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkCase:
    """What one ``mixbench_benchmark`` test times."""

    mixer: str
    grid: tuple[int, ...] = (256,)
    dim: int = 64
    batch: int = 8
    mode: str = "infer"  # infer: forward under no_grad; train: forward and backward
    options: Mapping[str, Any] = field(default_factory=dict)
    plugin: str | None = None

    @property
    def id(self) -> str:
        return f"{self.mixer}-{'x'.join(map(str, self.grid))}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise tests carrying the ``mixbench_benchmark`` marker over mixers and grids."""
    marker = metafunc.definition.get_closest_marker(BENCHMARK_MARKER)
    if marker is None:
        return
    if "mixbench_bench_case" not in metafunc.fixturenames:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: @pytest.mark.{BENCHMARK_MARKER} needs the test to "
            "take the mixbench_benchmark fixture"
        )
    if not marker.args:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: @pytest.mark.{BENCHMARK_MARKER} names no mixer"
        )
    settings = dict(marker.kwargs)
    grids = [tuple(g) for g in settings.pop("grids", [(256,)])]
    accepted = {"dim", "batch", "mode", "options", "plugin"}
    unknown = set(settings) - accepted
    if unknown:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: @pytest.mark.{BENCHMARK_MARKER} got unknown "
            f"argument(s) {sorted(unknown)}; accepted: grids, {', '.join(sorted(accepted))}"
        )
    if settings.get("mode", "infer") not in ("infer", "train"):
        raise pytest.UsageError(f"{BENCHMARK_MARKER}: mode must be 'infer' or 'train'")
    cases = [BenchmarkCase(str(m), g, **settings) for m in marker.args for g in grids]
    metafunc.parametrize("mixbench_bench_case", cases, ids=[c.id for c in cases], indirect=True)


@pytest.fixture
def mixbench_bench_case(request: pytest.FixtureRequest) -> BenchmarkCase | None:
    """The marker's case for this test (None when the test carries no marker)."""
    return getattr(request, "param", None)


@pytest.fixture
def mixbench_benchmark(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    mixbench_bench_case: BenchmarkCase | None,
) -> Callable[..., Any]:
    """A callable that times one registered mixer with pytest-benchmark.

    Called without arguments it times the marker's case; keyword arguments (``mixer``,
    ``grid``, ``dim``, ``batch``, ``mode``, ``options``) override it or, without a marker,
    say what to time. The mixer is built under ``torch.manual_seed(0)`` on a fixed input;
    ``infer`` times the forward pass under ``no_grad``, ``train`` forward and backward.
    The setting lands in the benchmark's ``extra_info``.
    """
    try:
        benchmark = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        pytest.skip("pytest-benchmark is not installed (pip install pytest-benchmark)")
    base = mixbench_bench_case

    def run(mixer: str | None = None, **overrides: Any) -> Any:
        from dataclasses import replace

        if mixer is None and base is None:
            raise TypeError("mixbench_benchmark(): name a mixer, or use the marker")
        changes: dict[str, Any] = dict(overrides)
        if mixer is not None:
            changes["mixer"] = mixer
        if "grid" in changes:
            changes["grid"] = tuple(changes["grid"])
        case = replace(base or BenchmarkCase(str(mixer)), **changes)
        if case.plugin is not None:
            try:
                _activate(monkeypatch, plugins_env_value([case.plugin]))
            except LookupError as exc:
                pytest.fail(str(exc), pytrace=False)
        return _time_mixer(benchmark, case)

    return run


def _time_mixer(benchmark: Any, case: BenchmarkCase) -> Any:
    import math

    import torch

    from mixbench.core.api import create_mixer

    torch.manual_seed(0)
    module = create_mixer(case.mixer, dim=case.dim, grid=case.grid, options=case.options)
    tokens = math.prod(case.grid)
    x = torch.randn(case.batch, tokens, case.dim, generator=torch.Generator().manual_seed(0))
    benchmark.extra_info.update(
        mixer=case.mixer,
        grid=list(case.grid),
        tokens=tokens,
        dim=case.dim,
        batch=case.batch,
        mode=case.mode,
        options=dict(case.options),
        parameters=sum(p.numel() for p in module.parameters()),
        torch_threads=torch.get_num_threads(),
    )
    if case.mode == "train":
        module.train()
        x.requires_grad_(True)

        def step() -> Any:
            module.zero_grad(set_to_none=True)
            x.grad = None
            out = module(x)
            out.sum().backward()
            return out

        return benchmark(step)

    module.eval()

    def forward() -> Any:
        with torch.no_grad():
            return module(x)

    return benchmark(forward)
