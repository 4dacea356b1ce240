"""Regenerate the committed evidence under ``results/``: ``nox -s results``.

Evidence is organised as *studies*: one module per study in ``results/studies/``. A study
module has

* ``TITLE``: one line saying what it shows;
* ``run(root: Path) -> None``: measures, by running ``mixbench`` commands as a user would
  (``python -m mixbench ...``), and leaves small run directories (``manifest.json`` and
  ``results.jsonl``, plus training curves) under ``root / <study>``;
* ``render(root: Path) -> dict[str, str]``: renders tables from those committed rows with the
  project's own report code, as ``{file name: markdown}``; each is written to
  ``root / <study> / <file name>``.

The README quotes each rendered table verbatim between a ``<!-- table: results/<study>/<file>
-->`` line and an ``<!-- end table -->`` line, and a test checks that every quoted table is
the current rendering of its committed rows. Nothing under ``results/`` is edited by hand.

Usage::

    python results/regenerate.py                 # run and render every study
    python results/regenerate.py lsh_scaling     # only the studies named
    python results/regenerate.py --render-only   # re-render from the committed rows

Either way the README's quoted tables are then replaced by their new renderings.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
STUDIES = HERE / "studies"


def load_studies(names: list[str] | None = None) -> dict[str, ModuleType]:
    """The study modules in ``results/studies``, by name (all of them when ``names`` is empty)."""
    found = {p.stem: p for p in sorted(STUDIES.glob("*.py")) if not p.stem.startswith("_")}
    wanted = names or list(found)
    unknown = [name for name in wanted if name not in found]
    if unknown:
        raise SystemExit(f"unknown study {', '.join(unknown)}; known: {', '.join(found)}")
    modules: dict[str, ModuleType] = {}
    for name in wanted:
        spec = importlib.util.spec_from_file_location(f"mixbench_study_{name}", found[name])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[name] = module
    return modules


def mixbench(*args: str, out: Path) -> Path:
    """Run one ``mixbench`` command writing into ``out`` and return the run directory it made.

    Studies call this so that every committed run is what a user's command line produces.
    """
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    subprocess.run([sys.executable, "-m", "mixbench", *args, "--out", str(out)], check=True)
    made = sorted(set(out.iterdir()) - before)
    if len(made) != 1:
        raise RuntimeError(f"expected one new run directory in {out}, found {made}")
    return made[0]


def render_study(name: str, module: ModuleType, root: Path = HERE) -> list[Path]:
    """Write every table the study renders; return the paths written."""
    written = []
    for file_name, text in module.render(root).items():
        path = root / name / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


README = HERE.parent / "README.md"
QUOTE = re.compile(
    r"(<!-- table: (?P<path>results/[^ ]+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S
)


def sync_readme(readme: Path = README) -> list[str]:
    """Replace every quoted table in the README by its file; return the paths replaced."""
    text = readme.read_text(encoding="utf-8")
    replaced: list[str] = []

    def quote(match: re.Match[str]) -> str:
        path = readme.parent / match["path"]
        if not path.is_file():
            raise SystemExit(f"README quotes {match['path']}, which no study wrote")
        body = path.read_text(encoding="utf-8")
        if not body.endswith("\n"):
            body += "\n"
        if body != match["body"]:
            replaced.append(match["path"])
        return match.group(1) + body + match.group(4)

    readme.write_text(QUOTE.sub(quote, text), encoding="utf-8")
    return replaced


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="*", help="study names (default: all)")
    parser.add_argument("--render-only", action="store_true", help="do not measure")
    args = parser.parse_args(argv)
    for name, module in load_studies(args.studies).items():
        if not args.render_only:
            print(f"== {name}: {module.TITLE}", flush=True)
            module.run(HERE)
        for path in render_study(name, module):
            print(f"wrote {path.relative_to(HERE.parent)}")
    for path in sync_readme():
        print(f"README: re-quoted {path}")


if __name__ == "__main__":
    main()
