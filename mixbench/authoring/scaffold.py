"""``mixbench new-plugin``: write a complete, installable plugin package from templates.

The generated package is meant to work before its author changes a line: ``pip install -e``
makes its mixer, optimizer or task appear in ``mixbench list``, and ``pytest`` runs the
conformance kit over it. The example implementations are small but real (a depthwise
convolution mixer, the Signum optimizer, a synthetic majority-token task), so the author edits
working code instead of filling in blanks.

Naming, for ``mixbench new-plugin my-mixer``: the directory and distribution are ``my-mixer``,
the import package and the registered name are ``my_mixer``, and the entry point
``my_mixer = "my_mixer.mixer"`` sits in the ``mixbench`` group.

This module imports neither torch nor any plugin; the checks that need the registry import it
when they run.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template

import mixbench
from mixbench.errors import UsageError

KINDS = ("mixer", "optimizer", "task")
_DIST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class PluginNames:
    """Every name a new plugin package needs, derived from the one the user typed."""

    dist: str  # distribution and directory: my-mixer
    package: str  # import package, entry-point name and registered name: my_mixer
    class_name: str  # MyMixer

    @property
    def registered(self) -> str:
        return self.package


def plugin_names(name: str) -> PluginNames:
    """Derive the names, or raise ``UsageError`` saying why ``name`` cannot be a package."""
    if not name:
        raise UsageError("the plugin name is empty")
    if not _DIST_NAME.match(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
        why = (
            f"it contains {', '.join(map(repr, bad))}"
            if bad
            else "it starts or ends with '-', '_' or '.'"
        )
        raise UsageError(
            f"{name!r} is not a valid package name: {why}. A package name (PEP 508) is "
            "ASCII letters, digits, '-', '_' and '.', starting and ending with a letter or "
            "digit (for example my-mixer)"
        )
    package = re.sub(r"[-_.]+", "_", name).lower()
    if package[0].isdigit():
        raise UsageError(
            f"{name!r} cannot be a plugin name: its import package {package!r} would start "
            "with a digit, which Python cannot import (try a name starting with a letter)"
        )
    if keyword.iskeyword(package) or keyword.issoftkeyword(package):
        raise UsageError(f"{name!r} cannot be a plugin name: {package!r} is a Python keyword")
    if package in sys.stdlib_module_names:
        raise UsageError(
            f"{name!r} cannot be a plugin name: its import package {package!r} would shadow "
            "the standard library module of that name"
        )
    if importlib.util.find_spec(package) is not None:
        raise UsageError(
            f"{name!r} cannot be a plugin name: a module named {package!r} is already "
            "importable here, and two packages with one import name overwrite each other "
            "(choose another name, or uninstall the existing package)"
        )
    class_name = "".join(part.capitalize() for part in package.split("_"))
    return PluginNames(dist=name, package=package, class_name=class_name)


def check_name_is_free(kind: str, names: PluginNames) -> None:
    """Refuse a registered name that an installed plugin already uses: two plugins
    registering one name make it unusable (mixbench replaces nothing silently)."""
    from mixbench.plugins import get_registry

    registry = get_registry()
    if (kind, names.registered) in registry:
        entry = registry.get(kind, names.registered)
        raise UsageError(
            f"{kind} {names.registered!r} is already registered by plugin {entry.plugin!r}; "
            "choose another plugin name"
        )


def _dependency_bound() -> str:
    """``mixbench>=0.1,<0.2`` for mixbench 0.1.x: before 1.0 a minor release may change the
    plugin API, after it only a major one (docs/publishing.md)."""
    major, minor = (int(part) for part in mixbench.__version__.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"mixbench>={major}.{minor},<{upper}"


def render(kind: str, names: PluginNames) -> dict[str, str]:
    """Relative path -> file content of a new plugin package of ``kind``."""
    if kind not in KINDS:
        raise UsageError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    values = {
        "dist": names.dist,
        "package": names.package,
        "name": names.registered,
        "class_name": names.class_name,
        "kind": kind,
        "requirement": _dependency_bound(),
        "summary": SUMMARIES[kind],
        "next_command": NEXT_COMMANDS[kind].replace("$name", names.registered),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        ".gitignore": GITIGNORE,
        f"src/{names.package}/__init__.py": INIT,
        f"src/{names.package}/{kind}.py": MODULES[kind],
        f"tests/test_{names.package}.py": TESTS[kind],
    }
    return {path: Template(text).substitute(values) for path, text in files.items()}


def write_plugin(name: str, kind: str = "mixer", parent: Path | str = ".") -> Path:
    """Write the package ``parent/name`` and return its path.

    Refuses to touch an existing path; a failure half-way removes what it wrote, so a retry
    starts clean.
    """
    names = plugin_names(name)
    if kind not in KINDS:
        raise UsageError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    target = Path(parent) / names.dist
    if target.exists() or target.is_symlink():
        raise UsageError(f"{target} already exists; refusing to overwrite it")
    check_name_is_free(kind, names)
    files = render(kind, names)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.mkdir()
    except FileExistsError:
        raise UsageError(f"{target} already exists; refusing to overwrite it") from None
    try:
        for relative, content in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


# -- templates ------------------------------------------------------------------------------
# string.Template placeholders: $dist, $package, $name, $class_name, $kind, $requirement,
# $summary, $next_command. The generated code passes `ruff check` and the conformance kit.

SUMMARIES = {
    "mixer": "a token mixer",
    "optimizer": "an optimizer",
    "task": "a training task",
}

NEXT_COMMANDS = {
    "mixer": "mixbench bench --mixer $name --quick",
    "optimizer": "mixbench train --mixer pooling --optimizer $name --task digits --steps 100",
    "task": "mixbench train --mixer attention --task $name --steps 200",
}

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$summary for mixbench"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["$requirement"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-benchmark>=4"]

# mixbench loads plugins from this entry-point group: the name is what `mixbench plugins`
# shows, the value the module whose @mixbench.hookimpl functions register things.
[project.entry-points.mixbench]
$name = "$package.$kind"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = ["--import-mode=importlib"]

[tool.ruff]
line-length = 100

[tool.ruff.lint]
select = ["E", "F", "W", "I", "UP", "B"]
"""

README = """\
# $dist

$summary for [mixbench](https://github.com/mixbench/mixbench), registered as `$name`.

## Use

    pip install -e .            # or: pip install $dist, once published
    mixbench list               # $name is listed, with this plugin as its source
    mixbench info $name         # its options and defaults
    $next_command

## Develop

The implementation and its registration are in `src/$package/$kind.py`; the generated code
is a working example to replace with your own. `pytest` runs the tests in `tests/`, starting
with mixbench's conformance kit, which checks the plugin contract and names the check that
failed.

    pip install -e '.[test]'
    pytest

Options are the keyword arguments of the factory registered at the bottom of
`src/$package/$kind.py`: give each a default and a type hint and mixbench validates and
converts `--$kind-option KEY=VALUE` against them.

## Publish

Rename the project if `$dist` is taken on PyPI, then `python -m build` and `twine upload
dist/*`. See mixbench's docs/publishing.md for naming, versioning and selecting plugins with
`MIXBENCH_PLUGINS`.
"""

GITIGNORE = """\
__pycache__/
*.egg-info/
.pytest_cache/
.benchmarks/
build/
dist/
"""

INIT = '''\
"""$dist: $summary for mixbench (see $kind.py)."""

__version__ = "0.1.0"
'''

MIXER_MODULE = '''\
"""$class_name: a token mixer for mixbench, registered as ``$name``.

Replace this docstring with what your mixer does and why, and cite its paper.

As generated it is a working example: a depthwise convolution over the token grid, each
channel with its own kernel, as in ConvMixer (Trockman & Kolter 2022, "Patches Are All You
Need?", https://arxiv.org/abs/2201.09792).

The contract (docs/hooks.md in mixbench):

* ``factory(dim, grid, **options) -> nn.Module``; ``grid`` is ``(N,)`` for sequences and
  ``(H, W)`` for images;
* ``forward`` maps (B, N, dim) to (B, N, dim) with N = prod(grid), tokens in row-major order;
* each sample is mixed on its own: nothing may cross the batch dimension;
* options are keyword arguments with defaults and type hints (``--mixer-option
  kernel_size=5``); raise ``OptionError`` for a bad value and ``IncompatibleError`` for a
  valid one this grid cannot take (benchmarks record that cell as skipped).
"""

from __future__ import annotations

from typing import Any

import mixbench
import torch
from mixbench.errors import IncompatibleError, OptionError
from torch import nn


class $class_name(nn.Module):
    """Depthwise convolution over the token grid (1-D, 2-D or 3-D).

    FLOPs: mixbench counts convolutions and matmuls itself. Work its counter cannot see
    (pooling, FFTs, sorting, elementwise arithmetic) goes in a method
    ``extra_flops(self, batch_size: int) -> int`` returning this module's forward FLOPs.
    """

    def __init__(self, dim: int, grid: tuple[int, ...], *, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise OptionError(f"$name: kernel_size must be odd and positive, got {kernel_size}")
        if not 1 <= len(grid) <= 3:
            raise IncompatibleError(f"$name works on 1-D to 3-D grids, got {tuple(grid)}")
        self.grid = tuple(grid)
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[len(self.grid) - 1]
        self.conv = conv(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        image = x.transpose(1, 2).reshape(batch, channels, *self.grid)
        return self.conv(image).reshape(batch, channels, tokens).transpose(1, 2)


@mixbench.hookimpl
def register_mixers(register: Any) -> None:
    register(
        "$name",
        $class_name,
        description="depthwise convolution over the token grid (generated example)",
        complexity="O(N k^d)",
    )
'''

MIXER_TESTS = '''\
"""Tests for the $name mixer: mixbench's conformance kit, then behaviour of its own."""

from __future__ import annotations

import torch
from mixbench.pytest_plugin import mixbench_conformance

from $package.mixer import $class_name

# Every conformance check (shape, gradients, batch independence, determinism, bfloat16) on
# every mixer and optimizer this package registers, on a 1-D and a 2-D grid.
test_conformance = mixbench_conformance("$dist")


def test_a_token_reaches_only_its_neighbours() -> None:
    mixer = $class_name(4, (16,), kernel_size=3)
    impulse = torch.zeros(1, 16, 4)
    impulse[0, 8] = 1.0
    with torch.no_grad():
        response = mixer(impulse) - mixer(torch.zeros_like(impulse))  # remove the bias
    assert response[0].abs().sum(dim=1).nonzero().flatten().tolist() == [7, 8, 9]
'''

OPTIMIZER_MODULE = '''\
"""$class_name: an optimizer for mixbench, registered as ``$name``.

Replace this docstring with what your optimizer does and why, and cite its paper.

As generated it is a working example: Signum, the sign of the momentum as the update
(Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex Problems",
https://arxiv.org/abs/1802.04434), with decoupled weight decay.

The contract (docs/hooks.md in mixbench):

* ``factory(params, lr, **options) -> torch.optim.Optimizer``;
* training always calls ``optimizer.step(closure)``: the closure zeroes the gradients, runs
  forward and backward and returns the loss, so an optimizer may evaluate it more than once;
* ``state_dict()``/``load_state_dict()`` must round-trip (keep state in ``self.state``);
* options are keyword arguments with defaults and type hints (``--optimizer-option
  momentum=0.95``); raise ``OptionError`` for a bad value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import mixbench
import torch
from mixbench.errors import OptionError


class $class_name(torch.optim.Optimizer):
    """Signum: ``m = momentum * m + (1 - momentum) * g; p -= lr * sign(m)``."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(param.grad, alpha=1 - group["momentum"])
                param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(buffer.sign(), alpha=-group["lr"])
        return loss


def make_$package(
    params: Iterable[Any], lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """The factory mixbench calls; it validates the options before building."""
    if lr <= 0:
        raise OptionError(f"$name: lr must be positive, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise OptionError(f"$name: momentum must be in [0, 1), got {momentum}")
    if weight_decay < 0:
        raise OptionError(f"$name: weight_decay must be >= 0, got {weight_decay}")
    return $class_name(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@mixbench.hookimpl
def register_optimizers(register: Any) -> None:
    register(
        "$name",
        make_$package,
        description="Signum: sign of momentum (generated example)",
        default_lr=1e-3,  # what `mixbench train` uses without --lr
        test_lr=0.05,  # the conformance kit's "decreases loss" check
    )
'''

OPTIMIZER_TESTS = '''\
"""Tests for the $name optimizer: mixbench's conformance kit, then behaviour of its own."""

from __future__ import annotations

import pytest
import torch
from mixbench.pytest_plugin import mixbench_conformance

from $package.optimizer import $class_name

# The conformance checks (decreases a convex loss through step(closure), state_dict round
# trip) on every optimizer and mixer this package registers.
test_conformance = mixbench_conformance("$dist")


def test_first_step_moves_each_weight_by_lr_against_its_gradient_sign() -> None:
    weight = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))
    optimizer = $class_name([weight], lr=0.1, momentum=0.9)
    weight.grad = torch.tensor([0.5, -2.0, 0.0])
    optimizer.step()
    assert weight.tolist() == pytest.approx([0.9, -0.9, 0.5])
'''

TASK_MODULE = '''\
"""$class_name: a training task for mixbench, registered as ``$name``.

Replace this docstring with what your task measures and why, and cite its source.

As generated it is a working example: sequences of random tokens whose label is the most
frequent token (the smallest id on a tie). Every token matters, so a model must pool
information across the whole sequence.

The contract (docs/hooks.md in mixbench, and ``mixbench.tasks``):

* ``factory(seed, **options) -> mixbench.tasks.TaskData``: the whole train and validation
  split as tensors, plus how the shell reads them (``"tokens"``, ``"image"`` or
  ``"features"``);
* the same seed gives the same tensors, and nothing is downloaded at run time;
* options are keyword arguments with defaults and type hints (``--task-option
  seq_len=64``); raise ``OptionError`` for a bad value.
"""

from __future__ import annotations

from typing import Any

import mixbench
import torch
from mixbench.errors import OptionError
from mixbench.tasks import TaskData


def majority_labels(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The most frequent token of each row (argmax returns the first, smallest, on a tie)."""
    counts = torch.nn.functional.one_hot(tokens, vocab_size).sum(dim=1)
    return counts.argmax(dim=1)


def make_$package(
    seed: int,
    *,
    seq_len: int = 32,
    vocab_size: int = 4,
    num_train: int = 2048,
    num_val: int = 512,
) -> TaskData:
    """The factory mixbench calls: all data for ``seed``, generated, never downloaded."""
    for option, value in (("seq_len", seq_len), ("num_train", num_train), ("num_val", num_val)):
        if value < 1:
            raise OptionError(f"$name: {option} must be at least 1, got {value}")
    if vocab_size < 2:
        raise OptionError(f"$name: vocab_size must be at least 2, got {vocab_size}")
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(vocab_size, (num_train + num_val, seq_len), generator=generator)
    labels = majority_labels(tokens, vocab_size)
    y_val = labels[num_train:]
    chance = torch.bincount(y_val, minlength=vocab_size).max().item() / num_val
    return TaskData(
        x_train=tokens[:num_train],
        y_train=labels[:num_train],
        x_val=tokens[num_train:],
        y_val=y_val,
        num_classes=vocab_size,
        input="tokens",
        vocab_size=vocab_size,
        chance=chance,
        info={"num_train": num_train, "num_val": num_val},
    )


@mixbench.hookimpl
def register_tasks(register: Any) -> None:
    register("$name", make_$package, description="most frequent token (generated example)")
'''

TASK_TESTS = '''\
"""Tests for the $name task: the task contract, then behaviour of its own.

mixbench's conformance kit checks mixers and optimizers; a task's contract (same seed, same
data; shapes and labels a MetaFormer can read) is checked here.
"""

from __future__ import annotations

import mixbench
import torch

from $package.task import majority_labels


def test_same_seed_same_data_other_seed_other_data(mixbench_only) -> None:
    mixbench_only("$dist")
    first, again = mixbench.create_task("$name", seed=0), mixbench.create_task("$name", seed=0)
    other = mixbench.create_task("$name", seed=1)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_val, again.y_val)
    assert not torch.equal(first.x_train, other.x_train)


def test_shapes_and_labels_fit_the_declared_task(mixbench_only) -> None:
    mixbench_only("$dist")
    data = mixbench.create_task("$name", seed=0, options={"seq_len": "16", "num_val": "64"})
    assert data.x_train.shape[1] == 16 and data.x_val.shape == (64, 16)
    assert data.x_train.dtype == torch.long and int(data.x_train.max()) < data.vocab_size
    assert 0 <= int(data.y_train.min()) and int(data.y_train.max()) < data.num_classes
    assert data.chance is not None and 0 < data.chance < 1


def test_a_mixbench_model_reads_it(mixbench_only) -> None:
    mixbench_only("$dist")
    data = mixbench.create_task("$name", seed=0)
    model = mixbench.create_model("identity", task=data, preset="tiny")
    assert model(data.x_train[:4]).shape == (4, data.num_classes)


def test_label_is_the_most_frequent_token_smallest_on_a_tie() -> None:
    tokens = torch.tensor([[2, 2, 1, 0], [3, 1, 1, 3]])
    assert majority_labels(tokens, vocab_size=4).tolist() == [2, 1]
'''

MODULES = {"mixer": MIXER_MODULE, "optimizer": OPTIMIZER_MODULE, "task": TASK_MODULE}
TESTS = {"mixer": MIXER_TESTS, "optimizer": OPTIMIZER_TESTS, "task": TASK_TESTS}
