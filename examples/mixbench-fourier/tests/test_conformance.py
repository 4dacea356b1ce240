"""The mixbench conformance kit over everything this package registers (fourier, lion)."""

from mixbench.pytest_plugin import mixbench_conformance

test_conformance = mixbench_conformance("mixbench-fourier")
