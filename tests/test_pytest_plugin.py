"""The pytest plugin as a plugin author meets it: test files run by pytester against
throwaway plugin distributions (tests/conftest.py ``install_dist``)."""

from __future__ import annotations

import json
import subprocess
import sys
from fnmatch import fnmatch

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True, scope="module")
def _optimizer_modules_imported() -> None:
    """pytester's in-process runs drop the modules first imported inside them, so import
    what an optimizer step pulls in (torch._dynamo, ~3 s) once, out here."""
    import torch

    weight = torch.nn.Parameter(torch.ones(1))
    weight.grad = torch.ones(1)
    torch.optim.SGD([weight], lr=0.1).step()


GOOD = """
import torch
from torch import nn
import mixbench

class Shift(nn.Module):
    '''Rolls tokens by ``amount`` positions, then a linear map.'''
    def __init__(self, dim, grid, *, amount: int = 1):
        super().__init__()
        self.amount = amount
        self.mix = nn.Linear(dim, dim)
    def forward(self, x):
        return self.mix(torch.roll(x, self.amount, dims=1))

@mixbench.hookimpl
def register_mixers(register):
    register("shift", Shift, complexity="O(N)")

@mixbench.hookimpl
def register_optimizers(register):
    register("plain_sgd", lambda params, lr: torch.optim.SGD(params, lr=lr))
"""

BATCH_MIXING = """
from torch import nn
import mixbench

class Leaky(nn.Module):
    def __init__(self, dim, grid):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
    def forward(self, x):
        return self.proj(x - x.mean(dim=0, keepdim=True))

@mixbench.hookimpl
def register_mixers(register):
    register("leaky", Leaky)
"""

RAISES_IN_FORWARD = """
from torch import nn
import mixbench

class WrongWidth(nn.Module):
    def __init__(self, dim, grid):
        super().__init__()
        self.proj = nn.Linear(dim + 1, dim)
    def forward(self, x):
        return self.proj(x)  # the line the failure should point at

@mixbench.hookimpl
def register_mixers(register):
    register("wrong_width", WrongWidth)
"""

CONFORMANCE = """
from mixbench.authoring.pytest_plugin import mixbench_conformance

test_conformance = mixbench_conformance({args})
"""


def _run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_plugin=source)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs", *args)


def test_conformance_runs_every_check_on_every_grid_and_the_optimizer(
    install_dist, pytester: pytest.Pytester
) -> None:
    install_dist("mixbench-shift", "mixbench_shift", GOOD, {"shift": "mixbench_shift"})
    result = _run(pytester, CONFORMANCE.format(args='"mixbench-shift"'), "-v")
    result.assert_outcomes(passed=5 * 2 + 2)
    result.stdout.fnmatch_lines(
        [
            "*test_conformance?mixer-shift-shape-64? PASSED*",
            "*test_conformance?mixer-shift-batch_independence-8x8? PASSED*",
            "*test_conformance?optimizer-plain_sgd-state_dict? PASSED*",
        ]
    )


def test_a_mixer_that_mixes_the_batch_fails_naming_the_check(
    install_dist, pytester: pytest.Pytester
) -> None:
    install_dist("mixbench-leaky", "mixbench_leaky", BATCH_MIXING, {"leaky": "mixbench_leaky"})
    result = _run(pytester, CONFORMANCE.format(args='"mixbench-leaky"'))
    result.assert_outcomes(passed=8, failed=2)  # batch independence, on both grids
    result.stdout.fnmatch_lines(
        [
            "*mixer 'leaky' from plugin 'leaky' failed check 'batch independence': changing "
            "sample 1 of a batch (3, 64, 32) changed sample 0's output by *",
        ]
    )
    assert "mixes information across the batch dimension" in result.stdout.str()
    assert "torch/nn/modules" not in result.stdout.str()  # a message, not a torch traceback


def test_an_exception_inside_torch_points_at_the_plugins_own_line(
    install_dist, pytester: pytest.Pytester
) -> None:
    install_dist("mixbench-wrong", "mixbench_wrong", RAISES_IN_FORWARD, {"w": "mixbench_wrong"})
    result = _run(
        pytester, CONFORMANCE.format(args='"mixbench-wrong", grids=[(16,)]'), "-k", "shape"
    )
    result.assert_outcomes(failed=1, deselected=4)
    result.stdout.fnmatch_lines(
        [
            "*mixer 'wrong_width' from plugin 'w' failed check 'shape': forward on input "
            "(3, 16, 32) raised RuntimeError*",
            "*raised at *mixbench_wrong.py:10 in forward",
        ]
    )


def test_options_and_visible_skips(install_dist, pytester: pytest.Pytester) -> None:
    install_dist("mixbench-shift", "mixbench_shift", GOOD, {"shift": "mixbench_shift"})
    args = '"shift", options={"shift": {"amount": 3}}, skip={"shift": ["bfloat16"]}, grids=[(8,)]'
    result = _run(pytester, CONFORMANCE.format(args=args))
    result.assert_outcomes(passed=4 + 2, skipped=1)
    result.stdout.fnmatch_lines(["*'bfloat16' skipped for 'shift' by the test file*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ('"mixbench-nope"', "no installed mixbench plugin is called 'mixbench-nope'*"),
        ('"mixbench-shift", options={"shfit": {}}', "*given settings for 'shfit'*registers: *"),
        ('"mixbench-shift", skip={"shift": ["speed"]}', "*unknown check(s) ?'speed'?*"),
    ],
    ids=["not-installed", "unknown-name", "unknown-check"],
)
def test_a_suite_that_cannot_run_fails_saying_why(
    install_dist, pytester: pytest.Pytester, args: str, message: str
) -> None:
    install_dist("mixbench-shift", "mixbench_shift", GOOD, {"shift": "mixbench_shift"})
    result = _run(pytester, CONFORMANCE.format(args=args), "-v")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*plugin-not-testable*FAILED*", f"*{message}"])


def test_a_plugin_that_fails_to_import_is_a_failure(install_dist, pytester) -> None:
    install_dist(
        "mixbench-bad", "mixbench_bad", "raise ImportError('no luck')", {"bad": "mixbench_bad"}
    )
    result = _run(pytester, CONFORMANCE.format(args='"mixbench-bad"'))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*plugin 'bad' failed to load: import failed: ImportError: no luck*"]
    )


def test_only_the_plugin_under_test_loads_so_others_cannot_clash(install_dist, pytester) -> None:
    """MIXBENCH_PLUGINS is empty in this test run, and a second installed plugin registers
    the same mixer name; the suite still loads exactly the plugin it names."""
    install_dist("mixbench-shift", "mixbench_shift", GOOD, {"shift": "mixbench_shift"})
    install_dist("mixbench-twin", "mixbench_twin", GOOD, {"twin": "mixbench_twin"})
    result = _run(pytester, CONFORMANCE.format(args='"mixbench-twin"'))
    result.assert_outcomes(passed=12)


def test_a_task_only_plugin_is_reported_as_nothing_to_check(install_dist, pytester) -> None:
    source = "import mixbench\n\n@mixbench.hookimpl\ndef register_tasks(register):\n"
    source += "    register('ones', lambda seed: None)\n"
    install_dist("mixbench-ones", "mixbench_ones", source, {"ones": "mixbench_ones"})
    result = _run(pytester, CONFORMANCE.format(args='"mixbench-ones"'))
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*checks mixers and optimizers; 'mixbench-ones' registers tasks*"])


def test_mixbench_only_loads_named_plugins_and_fails_on_unknown_ones(
    install_dist, pytester
) -> None:
    install_dist("mixbench-shift", "mixbench_shift", GOOD, {"shift": "mixbench_shift"})
    source = """
import pytest

def test_loads(mixbench_only, mixbench_registry):
    assert "shift" not in mixbench_registry.names("mixer")  # MIXBENCH_PLUGINS is empty
    registry = mixbench_only("mixbench-shift")
    assert registry.get("mixer", "shift").plugin == "shift"
    assert "attention" in registry.names("mixer")  # the built-ins stay

def test_unknown(mixbench_only):
    mixbench_only("mixbench-missing")
"""
    result = _run(pytester, source)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*no installed mixbench plugin is called 'mixbench-missing'*"])


BENCHMARK = """
import pytest

@pytest.mark.mixbench_benchmark("identity", "pooling", grids=[(16,), (4, 4)], dim=8, batch=2)
def test_speed(mixbench_benchmark):
    out = mixbench_benchmark()
    assert tuple(out.shape) == (2, 16, 8)

def test_without_marker(mixbench_benchmark):
    mixbench_benchmark("pooling", grid=[4, 4], dim=4, batch=1, mode="train")
"""


def test_benchmark_marker_times_each_mixer_on_each_grid(pytester: pytest.Pytester) -> None:
    report = pytester.path / "bench.json"
    result = _run(
        pytester,
        BENCHMARK,
        "-v",
        "--benchmark-min-rounds=1",
        "--benchmark-max-time=0",
        "--benchmark-warmup=off",
        f"--benchmark-json={report}",
    )
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        ["*test_speed?identity-16? PASSED*", "*test_speed?pooling-4x4? PASSED*"]
    )
    benchmarks = {b["name"]: b for b in json.loads(report.read_text())["benchmarks"]}
    info = benchmarks["test_speed[pooling-4x4]"]["extra_info"]
    assert info["mixer"] == "pooling" and info["grid"] == [4, 4] and info["tokens"] == 16
    assert (info["dim"], info["batch"], info["mode"]) == (8, 2, "infer")
    assert benchmarks["test_without_marker"]["extra_info"]["mode"] == "train"


def test_benchmark_is_skipped_without_pytest_benchmark(pytester: pytest.Pytester) -> None:
    result = _run(pytester, BENCHMARK, "-p", "no:benchmark")
    result.assert_outcomes(skipped=5)
    result.stdout.fnmatch_lines(["*pytest-benchmark is not installed*"])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "@pytest.mark.mixbench_benchmark('pooling')\ndef test_x():\n    pass\n",
            "*needs the test*",
        ),
        (
            "@pytest.mark.mixbench_benchmark()\ndef test_x(mixbench_benchmark):\n    pass\n",
            "*names no mixer*",
        ),
        (
            "@pytest.mark.mixbench_benchmark('pooling', tokens=5)\n"
            "def test_x(mixbench_benchmark):\n    pass\n",
            "*unknown argument(s) ?'tokens'?*",
        ),
    ],
    ids=["no-fixture", "no-mixer", "unknown-argument"],
)
def test_benchmark_marker_misuse_is_a_usage_error(pytester, source: str, message: str) -> None:
    result = _run(pytester, "import pytest\n\n" + source)
    assert result.ret != 0
    assert any(fnmatch(line, message) for line in result.outlines + result.errlines)


def test_the_plugin_costs_other_projects_no_torch_import(pytester: pytest.Pytester) -> None:
    """The plugin loads in every pytest run where mixbench is installed."""
    pytester.makepyfile(
        test_other="import sys\n\ndef test_no_torch():\n    assert 'torch' not in sys.modules\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mixbench.authoring.pytest_plugin; print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"
