"""The CLI's registry commands, start-up cost, and usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mixbench.cli.app import app, parse_key_values
from mixbench.errors import UsageError

runner = CliRunner()


def test_help_does_not_import_torch_or_plugins() -> None:
    code = (
        "import sys\n"
        "from mixbench.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
        "print('PLUGINS' if 'mixbench_builtins' in sys.modules else 'NO-PLUGINS')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "NO-TORCH" in out.stdout and "NO-PLUGINS" in out.stdout
    assert "Commands" in out.stdout


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("mixbench ")


def test_list_shows_six_mixers_and_four_optimizers_with_plugins() -> None:
    mixers = json.loads(runner.invoke(app, ["list", "mixers", "--json"]).output)
    assert {m["name"] for m in mixers} == {
        "attention",
        "lsh",
        "window",
        "pooling",
        "mlp",
        "identity",
    }
    assert all(m["plugin"] for m in mixers)
    optimizers = json.loads(runner.invoke(app, ["list", "optimizers", "--json"]).output)
    assert {o["name"] for o in optimizers} == {"sgd", "adam", "adamw", "sam"}
    table = runner.invoke(app, ["list", "mixers"])
    assert table.exit_code == 0 and "plugin" in table.output and "lsh" in table.output


def test_info_shows_options_and_defaults() -> None:
    result = runner.invoke(app, ["info", "sam", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["kind"] == "optimizer" and data["plugin"]
    assert data["options"]["rho"]["default"] == 0.05
    assert data["options"]["base"]["default"] == "sgd"
    text = runner.invoke(app, ["info", "pooling"])
    assert "pool_size" in text.output and "complexity" in text.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "atention"], "Did you mean 'attention'"),
        (["list", "widgets"], "accepted: all, mixers"),
        (["info", "sgd", "--kind", "gadget"], "--kind"),
        (["env", "--device", "tpu"], "--device"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_plugins_command_lists_builtins() -> None:
    result = runner.invoke(app, ["plugins", "--json"])
    data = {p["name"]: p for p in json.loads(result.output)}
    assert data["attention"]["builtin"] and data["attention"]["status"] == "ok"
    assert "register_mixers" in data["attention"]["hooks"]


def test_env_json() -> None:
    result = runner.invoke(app, ["env", "--json", "--device", "cpu"])
    data = json.loads(result.output)
    assert data["device"] == "cpu" and data["torch"] and data["cores"] >= 1


def test_parse_key_values() -> None:
    assert parse_key_values(["a=1", "b = x=y"], "--opt") == {"a": "1", "b": "x=y"}
    with pytest.raises(UsageError, match="not KEY=VALUE"):
        parse_key_values(["oops"], "--opt")
    with pytest.raises(UsageError, match="given twice"):
        parse_key_values(["a=1", "a=2"], "--opt")
