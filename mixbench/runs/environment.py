"""What a measurement ran on: recorded in every manifest and shown by ``mixbench env``."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import mixbench


def cpu_model() -> str:
    """The CPU's marketing name, where the OS tells it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def git_commit(cwd: Path | None = None) -> dict[str, Any] | None:
    """The commit of the working directory's repository (and whether it is dirty), if any."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            cwd=cwd,
            check=False,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=cwd,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"id": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def resolve_device(requested: str) -> str:
    """``auto`` -> cuda, mps or cpu, whichever is present; anything named must exist."""
    import torch

    from mixbench.errors import UsageError

    accepted = ("auto", "cpu", "cuda", "mps")
    base = requested.split(":", 1)[0]
    if base not in accepted:
        raise UsageError(f"--device: {requested!r} is not one of {', '.join(accepted)}")
    if base == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if base == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available on this machine")
    if base == "mps" and not (torch.backends.mps.is_available()):
        raise UsageError("--device mps: no MPS device is available on this machine")
    return requested


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(device)))
    if device.startswith("mps"):
        return "Apple MPS"
    return cpu_model()


def collect_environment(device: str = "cpu") -> dict[str, Any]:
    """Versions, hardware and threading facts for a manifest."""
    import torch

    from mixbench.core.plugin_loader import get_plugins

    env: dict[str, Any] = {
        "mixbench": mixbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "machine": platform.node(),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        # Other work on the machine inflates timings; recorded so a reader can tell.
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "device": device,
        "device_name": device_name(device),
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "git": git_commit(),
        "plugins": {
            name: {"version": info.version, "status": info.status, "builtin": info.builtin}
            for name, info in sorted(get_plugins().infos.items())
        },
        "env": {
            key: os.environ[key]
            for key in (
                "OMP_NUM_THREADS",
                "MKL_NUM_THREADS",
                "MIXBENCH_PLUGINS",
                "CUDA_VISIBLE_DEVICES",
            )
            if key in os.environ
        },
    }
    if torch.cuda.is_available() and device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        env["cuda_device"] = {
            "name": props.name,
            "total_memory_bytes": props.total_memory,
            "capability": f"{props.major}.{props.minor}",
        }
    return env


def busy_cores(window_s: float = 1.0) -> float | None:
    """How many cores other processes kept busy during the last ``window_s`` seconds.

    Measured from the kernel's CPU time counters (``/proc/stat``) while this process
    sleeps, so it says what is busy *now*: unlike the 1-minute load average, which an
    install that just finished keeps high for a minute after the machine went quiet.
    None where ``/proc/stat`` is not available (the caller then says what it used instead).
    """
    import time

    def totals() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = handle.readline().split()[1:]
        except OSError:
            return None
        ticks = [int(f) for f in fields[:8]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return sum(ticks), idle

    first = totals()
    if first is None:
        return None
    time.sleep(window_s)
    second = totals()
    if second is None or second[0] == first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return round((1 - idle / total) * (os.cpu_count() or 1), 2)
