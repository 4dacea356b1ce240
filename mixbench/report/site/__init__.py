"""The HTML report: a static site of run directories (``mixbench report``) and a full-page
HTML leaderboard (``mixbench leaderboard --format html``).

The site is a directory holding ``index.html`` and the charting library beside it, so it
opens from ``file://`` with no network and no server, and can be published as it is.

Charts are drawn by plotly.js. It is made for exactly these figures (log-log axes,
asymmetric error bars, hover read-outs, zoom, legend toggling) and the ``plotly`` Python
package ships the complete minified library (``plotly.offline.get_plotlyjs``), which is
copied next to the page, so nothing is fetched at view time. The figures are written as
plain plotly JSON specs from ``mixbench.report.figure_data`` (the same series as the PNGs);
plotly's Python figure API is not needed. Vega-Lite through altair would have served too,
but altair does not ship the vega, vega-lite and vega-embed bundles for offline use, and
hand-written SVG would re-implement axes, ticks and tooltips badly. Tables are plain HTML
sorted and filtered by a few lines of vanilla JavaScript.

Nothing here imports torch; ``plotly`` is needed only to build a site (the ``report``
extra), not to render a leaderboard page.
"""

from __future__ import annotations

from mixbench.report.site.build import build_site, leaderboard_page

__all__ = ["build_site", "leaderboard_page"]
