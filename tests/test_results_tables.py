"""Every result table in the README is the current rendering of committed rows.

Three checks, each of which fails on its own kind of drift:

* each study in ``results/studies`` re-rendered from its committed rows (into a temporary
  copy of ``results/``) gives exactly the committed Markdown files, so a renderer changed
  without ``python results/regenerate.py --render-only`` fails;
* each README block between ``<!-- table: results/<study>/<file>.md -->`` and
  ``<!-- end table -->`` equals that file, so a README table edited by hand fails;
* each file a marker names exists.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
MARKER = re.compile(
    r"^<!-- table: (?P<path>\S+) -->\n(?P<body>.*?)^<!-- end table -->$", re.M | re.S
)


def regenerate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("regenerate", RESULTS / "regenerate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Studies with committed rows. A study written but not yet run (no results/<study>/) has no
# numbers to quote; `nox -s results` runs it and from then on it is held to the same checks.
STUDIES = {
    name: module
    for name, module in regenerate().load_studies().items()
    if (RESULTS / name).is_dir()
}


def quoted_tables(readme: str) -> dict[str, str]:
    """``{path named by a marker: the text between it and its end marker}``."""
    found: dict[str, str] = {}
    for match in MARKER.finditer(readme):
        found[match["path"]] = match["body"]
    return found


def stale_quotes(readme: str, repo: Path) -> list[str]:
    """What is wrong with the README's quoted tables: missing files, differing text, and
    markers left unclosed."""
    problems = []
    tables = quoted_tables(readme)
    opened = len(re.findall(r"^<!-- table: ", readme, re.M))
    if opened != len(tables):
        problems.append(f"{opened - len(tables)} table marker(s) without a matching end marker")
    for path, body in tables.items():
        file = repo / path
        if not file.is_file():
            problems.append(f"{path}: named in README but missing")
        elif file.read_text(encoding="utf-8") != body:
            problems.append(f"{path}: README differs (python results/regenerate.py --render-only)")
    return problems


def test_readme_quotes_each_rendered_table_verbatim() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert quoted_tables(readme), "the README quotes no rendered table"
    assert stale_quotes(readme, REPO) == []


def test_a_hand_edited_readme_table_is_caught() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    path, body = next(iter(quoted_tables(readme).items()))
    digit = re.search(r"\d", body)
    assert digit is not None
    changed = str((int(digit.group()) + 1) % 10)
    edited_body = body[: digit.start()] + changed + body[digit.end() :]
    edited = readme.replace(body, edited_body, 1)
    new_problems = set(stale_quotes(edited, REPO)) - set(stale_quotes(readme, REPO))
    assert new_problems == {f"{path}: README differs (python results/regenerate.py --render-only)"}
    gone = readme.replace(f"<!-- table: {path} -->", "<!-- table: results/none/x.md -->", 1)
    assert "results/none/x.md: named in README but missing" in stale_quotes(gone, REPO)


def test_every_study_has_a_readme_quote() -> None:
    quoted = {Path(p).parts[1] for p in quoted_tables((REPO / "README.md").read_text("utf-8"))}
    assert sorted(set(STUDIES) - quoted) == []


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_committed_tables_are_the_rendering_of_committed_rows(name: str, tmp_path: Path) -> None:
    shutil.copytree(RESULTS / name, tmp_path / name)
    rendered = STUDIES[name].render(tmp_path)
    assert rendered, f"study {name} renders nothing"
    for file_name, text in rendered.items():
        committed = RESULTS / name / file_name
        assert committed.is_file(), f"{committed} is not committed"
        assert committed.read_text(encoding="utf-8") == text, (
            f"results/{name}/{file_name} is stale: python results/regenerate.py --render-only"
        )
