"""Running cells and keeping their results, whatever the cells measure.

``cells`` (a cell and its key), ``cell_kinds`` (the registry of kinds of cell: how each is
planned and run, and whether it must run alone), ``store`` (run directories, rows,
manifests, timestamps, JSON conversion), ``environment`` (what a run ran on), ``driver``
(runs a run directory's cells through an executor, resumably), ``executors`` (the executor
contract and scheduler), ``worker`` (isolated worker processes) and ``repeats`` (process
repeats of timing cells)."""
