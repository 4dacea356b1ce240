"""Measurement primitives: statistics, timing, memory, FLOPs and hardware probes.

Each module does one job and knows nothing about mixers, cells or the CLI, so the same
primitives serve ``mixbench bench``, the training runner and the harness benchmarks:

* ``stats``: median, IQR, a distribution-free confidence interval of the median, the noise
  flag, and the log-log slope used for empirical scaling exponents (pure Python);
* ``timing``: warm-up, blocked timing with adaptive sampling, CUDA-event timing;
* ``memory``: peak bytes allocated during one step above the live baseline;
* ``flops``: model and executed FLOPs (``FlopCounterMode`` counts, a module's own analytic
  ``extra_flops`` and stated ``model_flops``; docs/conventions.md);
* ``probes``: a short matmul-peak and memory-bandwidth probe of this machine.

Only ``stats`` is imported here; the others import torch and are imported where needed.
"""

from __future__ import annotations

from mixbench.measure.stats import Summary, loglog_slope, median_ci95, summarize

__all__ = ["Summary", "loglog_slope", "median_ci95", "summarize"]
