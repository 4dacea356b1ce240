"""The documentation cannot drift: code it quotes equals the repository's files, every hook is
documented with its exact signature and has an example that is executed here, the commands it
shows parse, and the result schema names every field a real row carries."""

from __future__ import annotations

import inspect
import re
import shlex
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mixbench import hookspecs
from mixbench.core import plugin_loader as plugins

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
HOOKS = sorted(name for name, value in vars(hookspecs).items() if hasattr(value, "mixbench_spec"))
FENCE = re.compile(r"<!-- (\w[\w-]*): ([^>]+?) -->\n```[\w-]*\n(.*?)```", re.DOTALL)


def directives(kind: str) -> list[tuple[str, str, str]]:
    """(page, argument, fenced text) for every ``<!-- kind: argument -->`` + code block."""
    found = []
    for page in PAGES:
        for name, argument, text in FENCE.findall(page.read_text()):
            if name == kind:
                found.append((page.name, argument.strip(), text))
    return found


def test_docs_exist_and_every_directive_is_followed_by_a_code_block() -> None:
    assert {p.name for p in PAGES} >= {
        "tutorial.md",
        "hooks.md",
        "results-schema.md",
        "publishing.md",
        "testing.md",
    }
    for page in PAGES:
        text = page.read_text()
        assert text.count("<!-- ") == len(FENCE.findall(text)), (
            f"{page.name}: a directive without its code block"
        )


@pytest.mark.parametrize(("page", "path", "text"), directives("file"), ids=lambda v: str(v)[:60])
def test_included_files_are_the_repository_files(page: str, path: str, text: str) -> None:
    assert text == (ROOT / path).read_text(), f"{page} quotes {path}, which has changed"


@pytest.mark.parametrize(("page", "path", "text"), directives("excerpt"), ids=lambda v: str(v)[:60])
def test_excerpts_appear_verbatim_in_their_files(page: str, path: str, text: str) -> None:
    assert text in (ROOT / path).read_text(), f"{page}: this excerpt is no longer in {path}"


def test_the_tutorial_quotes_the_whole_example_package() -> None:
    quoted = {path for _, path, _ in directives("file") + directives("excerpt")}
    example = ROOT / "examples" / "mixbench-fourier"
    for module in (
        "src/mixbench_fourier/fourier.py",
        "src/mixbench_fourier/lion.py",
        "pyproject.toml",
    ):
        assert f"examples/mixbench-fourier/{module}" in quoted
        assert (example / module).exists()


def test_relative_links_point_at_existing_pages() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([\w./-]+\.md)(?:#[\w-]+)?\)", page.read_text()):
            assert (DOCS / target).exists(), f"{page.name} links to missing {target}"


# -- hooks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_exact_signature(hook: str) -> None:
    signature = inspect.signature(getattr(hookspecs, hook), eval_str=True)
    assert f"```python\ndef {hook}{signature}\n```" in (DOCS / "hooks.md").read_text()


def test_the_register_callback_is_documented_as_it_is() -> None:
    documented = 'register(name: str, factory: Callable[..., Any], *, description: str = "", '
    documented += 'complexity: str = "", **metadata: Any) -> None'
    assert documented in (DOCS / "hooks.md").read_text()
    params = inspect.signature(plugins._collector("mixer", "p", [])).parameters.values()
    shape = [(p.name, p.kind.name, p.default) for p in params if p.kind.name != "VAR_KEYWORD"]
    assert shape == [
        ("name", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("factory", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("description", "KEYWORD_ONLY", ""),
        ("complexity", "KEYWORD_ONLY", ""),
    ]
    assert any(p.kind.name == "VAR_KEYWORD" for p in params)


def load_example(hook: str) -> types.ModuleType:
    """The hooks.md example of ``hook``, executed as a module and registered as a plugin."""
    (source,) = [text for _, name, text in directives("example") if name == hook]
    module = types.ModuleType(f"docs_example_{hook}")
    sys.modules[module.__name__] = module
    exec(compile(source, f"docs/hooks.md ({hook})", "exec"), vars(module))
    plugins.register_plugin(module, f"docs-{hook}")
    return module


@pytest.fixture
def example() -> Iterator[Callable[[str], types.ModuleType]]:
    loaded: list[str] = []

    def load(hook: str) -> types.ModuleType:
        loaded.append(f"docs_example_{hook}")
        return load_example(hook)

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


def check_mixers_example(module: types.ModuleType) -> None:
    from mixbench.authoring.conformance import check_mixer

    entry = plugins.get_registry().get("mixer", "token_shift")
    assert (entry.complexity, set(entry.options)) == ("O(N)", {"fraction"})
    check_mixer("token_shift")


def check_optimizers_example(module: types.ModuleType) -> None:
    from mixbench.authoring.conformance import check_optimizer
    from mixbench.train.cell import default_lr

    check_optimizer("nesterov")
    assert default_lr("nesterov") == 0.05


def check_tasks_example(module: types.ModuleType) -> None:
    import torch

    import mixbench

    first, again = (mixbench.create_task("parity", seed=3) for _ in range(2))
    assert torch.equal(first.x_train, again.x_train)
    assert torch.equal(first.y_val, first.x_val.sum(dim=1) % 2)
    model = mixbench.create_model("identity", task=first, preset="tiny", depth=1, dim=16)
    assert model(first.x_train[:4]).shape == (4, 2)


def check_executors_example(module: types.ModuleType) -> None:
    from mixbench.runs.executors import Executor, Job, create_executor

    module.echo = lambda payload: {"row": {"status": "ok", "seen": payload["config"]}}
    executor = create_executor("serial", max_parallel=1, run_dir=None, options={})
    assert isinstance(executor, Executor)
    executor.submit(Job(key="k1", kind="noop", config={"x": 1}, runner=f"{module.__name__}:echo"))
    assert executor.status() == "serial: 1 queued"
    (finished,) = executor.wait(timeout=1.0)
    assert finished.row == {"status": "ok", "seen": {"x": 1}, "key": "k1", "run_id": None}
    assert executor.wait(timeout=0.01) == []


def check_commands_example(module: types.ModuleType) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    plugins.get_plugins().add_commands(app)
    result = CliRunner().invoke(app, ["fft-flops", "64", "--dim", "32"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(5 * 2048 * 11)


EXAMPLE_CHECKS: dict[str, Callable[[types.ModuleType], None]] = {
    "register_mixers": check_mixers_example,
    "register_optimizers": check_optimizers_example,
    "register_tasks": check_tasks_example,
    "register_executors": check_executors_example,
    "register_commands": check_commands_example,
}


def test_every_hook_has_one_example_and_a_check() -> None:
    assert sorted(name for _, name, _ in directives("example")) == HOOKS
    assert sorted(EXAMPLE_CHECKS) == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_example_works_as_documented(hook: str, example) -> None:
    module = example(hook)
    assert plugins.get_plugins().infos[f"docs-{hook}"].hooks == [hook]
    EXAMPLE_CHECKS[hook](module)


# -- the tutorial's contract error ----------------------------------------------------------


def test_the_tutorials_contract_error_is_what_pytest_prints(monkeypatch, tmp_path: Path) -> None:
    """The tutorial shows the message the kit gives for ``fftn`` without ``dim=``; register
    that broken mixer under the real names and compare (the measured difference may vary)."""
    import mixbench
    from mixbench.authoring.conformance import check_mixer
    from mixbench.errors import ContractError

    package = ROOT / "examples" / "mixbench-fourier" / "src" / "mixbench_fourier"
    (tmp_path / "mixbench_fourier").symlink_to(package)  # not src/: no stray egg-info
    monkeypatch.syspath_prepend(str(tmp_path))
    ((_, _, shown),) = directives("contract-error")
    source = (ROOT / "examples/mixbench-fourier/tests/test_fourier.py").read_text()
    namespace: dict[str, Any] = {}
    exec(compile(source, "test_fourier.py", "exec"), namespace)

    class Broken:
        @mixbench.hookimpl
        def register_mixers(self, register: Any) -> None:
            register("fourier", namespace["LeakyFourier"])

    plugins.register_plugin(Broken(), "fourier")
    with pytest.raises(ContractError) as caught:
        check_mixer("fourier", grids=[(64,)])
    number = r"[0-9.e+-]+"
    expected = re.escape(shown.strip()).replace("4\\.52", number)
    assert re.fullmatch(expected, str(caught.value)), str(caught.value)
    for name in [n for n in sys.modules if n.startswith("mixbench_fourier")]:
        del sys.modules[name]


# -- commands shown in the docs -------------------------------------------------------------


def documented_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for page in PAGES:
        for block in re.findall(r"```console\n(.*?)```", page.read_text(), re.DOTALL):
            for line in block.splitlines():
                if line.startswith("$ mixbench "):
                    commands.append((page.name, shlex.split(line[2:].split("|")[0])[1:]))
    return commands


@pytest.mark.parametrize(
    ("page", "args"), documented_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_documented_commands_parse(page: str, args: list[str]) -> None:
    from mixbench.cli.app import app

    group = typer.main.get_command(app)
    assert args[0] in group.commands, f"{page}: `mixbench {args[0]}` is not a command"  # type: ignore[attr-defined]
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"{page}: `mixbench {' '.join(args)}`: {result.output}"


# -- the result schema ----------------------------------------------------------------------


def undocumented(data: dict[str, Any], page: str) -> list[str]:
    return sorted(key for key in data if f"`{key}`" not in page)


def test_results_schema_names_every_field_of_a_bench_row() -> None:
    from mixbench.bench.cell import run_cell

    config = {
        "level": "mixer", "mode": "infer", "lr": None, "dim": 8, "batch_size": 2,
        "preset": None, "device": "cpu", "dtype": "float32", "threads": 1, "compile": False,
        "seed": 0, "mixer": "pooling", "mixer_options": {}, "optimizer": None,
        "optimizer_options": {}, "tokens": 16, "grid": [4, 4], "image_size": None,
    }  # fmt: skip
    timing = {"warmup_iters": 1, "warmup_s": 0.0, "min_time_s": 0.01, "max_time_s": 0.02}
    row = run_cell({"kind": "bench", "key": "k", "config": config, "settings": {"timing": timing}})
    assert row["status"] == "ok", row["reason"]
    page = (DOCS / "results-schema.md").read_text()
    for part in (row, row["metrics"], row["runtime"], row["measurement"]):
        assert undocumented(part, page) == []


def train_rows(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    """Rows of a real ``mixbench train`` run (its ``--json`` output)."""
    import json

    from mixbench.cli.app import app

    result = CliRunner().invoke(app, ["train", *args, "--out", str(tmp_path), "--json", "-q"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_results_schema_names_every_field_of_a_train_row_and_manifest(
    example, tmp_path: Path
) -> None:
    import json

    example("register_tasks")  # the parity task from hooks.md
    (row,) = train_rows(
        tmp_path, "--mixer", "identity", "--optimizer", "sgd", "--task", "parity",
        "--steps", "3", "--batch-size", "16", "--depth", "1", "--dim", "8",
        "--target-acc", "0.5", "--sharpness", "--sharpness-steps", "1",
        "--sharpness-batch", "32", "--hessian",
    )  # fmt: skip
    assert row["status"] == "ok", row["reason"]
    page = (DOCS / "results-schema.md").read_text()
    for part in (row, row["config"], row["metrics"]):
        assert undocumented(part, page) == []
    (run,) = tmp_path.iterdir()
    assert undocumented(json.loads((run / "manifest.json").read_text()), page) == []
    curves = json.loads((run / row["curves_file"]).read_text())
    assert undocumented(curves, page) == []
