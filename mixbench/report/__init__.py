"""Turning run directories into tables, verdicts, figures and pages: ``results`` (load
rows, metric meanings), ``leaderboard``, ``compare``, ``tables`` (bench tables),
``figure_data`` with ``plots`` (PNG) and ``site`` (HTML), ``artifacts`` (all of a run's
tables and figures as files), and ``pytest_benchmark`` (export in pytest-benchmark's
format)."""
