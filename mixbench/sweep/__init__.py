"""Sweep files: a TOML file of ``[[grid]]`` tables (``sweep_file``), each table's keys,
values and combinations (``grid_table``)."""
