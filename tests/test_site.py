"""The HTML report in a real headless browser: ``mixbench report`` and the HTML leaderboard.

Playwright drives the system's Chromium (Debian's ``chromium`` package; ``.ci/run`` installs
it). Every request the page makes is checked to be a local file, so "opens offline" is
tested, not assumed. Without Playwright or Chromium the browser tests skip, except under
CI, where they fail (see ``tests/ci.py``).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ci import import_or_skip, missing, under_ci
from test_results import write_bench_run, write_train_run
from typer.testing import CliRunner

from mixbench.cli.app import app

REPO = Path(__file__).resolve().parents[1]
COMMITTED = [REPO / "results" / "bench", REPO / "results" / "train"]
runner = CliRunner()


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = import_or_skip("playwright.sync_api", "playwright is not installed")
    executable = chromium_path()
    if executable is None:
        missing("no chromium on PATH (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


class Page:
    """A page opened from file:// that records console errors and non-local requests."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.errors: list[str] = []
        self.remote: list[str] = []
        self.page = browser.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else 0)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.route("**/*", self._only_local)
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")

    def _only_local(self, route: Any) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            self.remote.append(route.request.url)
            route.abort()

    def column(self, table_id: str, index: int) -> list[str]:
        return list(
            self.page.eval_on_selector_all(
                f"#{table_id} tbody tr",
                f"rows => rows.filter(r => !r.hidden).map(r => r.cells[{index}].dataset.value)",
            )
        )

    def drawn(self, chart_id: str) -> tuple[int, int]:
        """(traces, points) plotly drew as SVG in one chart."""
        self.page.wait_for_selector(f"#{chart_id} .scatterlayer .trace", state="attached")
        return tuple(  # type: ignore[return-value]
            self.page.eval_on_selector(
                f"#{chart_id}",
                "el => [el.querySelectorAll('.scatterlayer .trace').length,"
                " el.querySelectorAll('.scatterlayer .point').length]",
            )
        )


def ok_rows(run: Path) -> list[dict[str, Any]]:
    lines = (run / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [row for row in map(json.loads, lines) if row["status"] == "ok"]


def test_report_of_the_committed_runs_renders_offline(browser: Any, tmp_path: Path) -> None:
    site = tmp_path / "site"
    args = ["report", *map(str, COMMITTED), "--output", str(site)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    page = Page(browser, site / "index.html")
    bench, train = ok_rows(COMMITTED[0]), ok_rows(COMMITTED[1])
    mixers = {row["config"]["mixer"] for row in bench}
    token_counts = {row["config"]["tokens"] for row in bench}
    with_memory = [row for row in bench if row["metrics"]["peak_mem_bytes"] > 0]
    pairs = {(row["config"]["mixer"], row["config"]["optimizer"]) for row in train}
    # Every kind of chart draws a trace per series and a point per measured cell (a zero
    # memory, the identity mixer's, has no place on a log axis).
    traces, points = page.drawn("chart-latency")
    assert traces == len(mixers) and points >= len(bench)
    traces, points = page.drawn("chart-memory")
    assert traces == len(mixers) and points >= len(with_memory)
    traces, points = page.drawn("chart-curves")
    assert traces == len(pairs) and points >= 10 * len(pairs)
    traces, points = page.drawn("chart-pareto-0")
    assert traces == len(pairs) + 1 and points >= len(pairs)  # + the Pareto front
    assert page.page.locator("#chart-latency .xtick text").count() == len(token_counts)
    assert page.errors == [] and page.remote == []
    # Provenance: the command and the machine of each run.
    text = page.page.inner_text("body")
    assert "mixbench bench --mixer attention" in text and "Intel(R) Xeon(R)" in text


def test_tables_sort_by_number_and_filter(browser: Any, tmp_path: Path) -> None:
    run = write_bench_run(tmp_path / "runs" / "bench-a", mixers=("attention", "pooling", "mlp"))
    site = tmp_path / "site"
    assert runner.invoke(app, ["report", str(run), "--output", str(site)]).exit_code == 0
    page = Page(browser, site / "index.html")
    table, column = "bench-latency", 3  # mixer, tokens=256, tokens=1024, tokens=4096, rank
    header = page.page.locator(f"#{table} thead th").nth(column)
    header.click()
    values = [float(v) for v in page.column(table, column)]
    assert values == sorted(values) and len(values) == 3
    header.click()
    assert [float(v) for v in page.column(table, column)] == sorted(values, reverse=True)
    page.page.locator(f"#{table}").locator("th").first.click()
    assert page.column(table, 0) == ["attention", "mlp", "pooling"]
    page.page.fill(f'input[data-table="{table}"]', "pool")
    assert page.column(table, 0) == ["pooling"]
    assert page.errors == []


def test_leaderboard_html_is_a_full_sortable_page(browser: Any, tmp_path: Path) -> None:
    run = write_bench_run(tmp_path / "bench-a", mixers=("attention", "pooling"))
    out = tmp_path / "board.html"
    args = ["leaderboard", str(run), "--format", "html", "--output", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    page = Page(browser, out)
    page.page.locator("#leaderboard thead th").nth(1).click()
    values = [float(v) for v in page.column("leaderboard", 1)]
    assert values == sorted(values)
    assert page.errors == [] and page.remote == []


def test_compare_marks_each_regression(tmp_path: Path) -> None:
    # Five processes a side: compare judges process-level samples, and fewer cannot be judged.
    base = write_bench_run(tmp_path / "base", seed=1, processes=5)
    new = write_bench_run(tmp_path / "new", slowdown=1.5, seed=2, processes=5)
    site = tmp_path / "site"
    args = ["report", str(base), "--compare", str(base), str(new), "--output", str(site)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    page = (site / "index.html").read_text(encoding="utf-8")
    assert page.count('<tr class="regressed">') == 6  # 2 mixers x 3 token counts, 1.5x slower
    assert "6 regression(s)" in page
    same = runner.invoke(app, ["report", str(base), "--compare", str(base), str(base),
                               "--output", str(site)])  # fmt: skip
    assert same.exit_code == 0
    assert 'class="regressed"' not in (site / "index.html").read_text(encoding="utf-8")


def test_report_charts_from_train_runs_without_curves_say_why(tmp_path: Path) -> None:
    run = write_train_run(tmp_path / "train-a", {("attention", "adam"): [0.9, 0.8]})
    shutil.rmtree(run / "curves")
    site = tmp_path / "site"
    result = runner.invoke(app, ["report", str(run), "--output", str(site)])
    assert result.exit_code == 0, result.output
    page = (site / "index.html").read_text(encoding="utf-8")
    assert "no readable training curves" in page and 'id="chart-pareto-0"' in page


def test_report_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["report", str(tmp_path / "nope"), "--output", str(tmp_path)])
    assert result.exit_code == 2 and "no such run directory" in result.output
    run = write_bench_run(tmp_path / "bench-a")
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    result = runner.invoke(app, ["report", str(run), "--output", str(tmp_path / "site")])
    assert result.exit_code == 2 and "pip install 'mixbench[report]'" in result.output


def test_missing_browser_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert under_ci()
    with pytest.raises(pytest.fail.Exception, match="cannot be skipped: no chromium"):
        missing("no chromium")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        missing("no chromium")
