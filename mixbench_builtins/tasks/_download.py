"""Download a data archive once, verify its published checksum, never use a bad copy.

Only tasks the user asks to download (``--task-option download=true``) come here; nothing
else in mixbench touches the network. The archive streams into ``<name>.part`` while its MD5
is computed, with a progress bar on stderr. It takes its final name only when it is complete
(as long as the server said) and its MD5 equals the published one; otherwise the partial or
corrupt file is deleted and a UsageError says what went wrong, so a bad download is never
read and the next attempt starts clean.

Where archives go: ``--task-option root=PATH`` where the task has one, else the cache
directory: ``$MIXBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/mixbench``, else
``~/.cache/mixbench``, with one folder per task.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

from mixbench.errors import UsageError

CACHE_ENV_VAR = "MIXBENCH_CACHE_DIR"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60


def cache_dir(task: str) -> Path:
    """The default folder for ``task``'s downloads (see the module docstring)."""
    base = os.environ.get(CACHE_ENV_VAR)
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = str(Path(xdg) / "mixbench") if xdg else str(Path.home() / ".cache" / "mixbench")
    return Path(base).expanduser() / task


def download_verified(url: str, md5: str, target: Path, *, task: str) -> Path:
    """Fetch ``url`` to ``target`` and check its MD5; returns ``target``.

    Raises UsageError (the partial file deleted) on a network error, a short read, or a
    checksum that differs from ``md5``.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    expected: int | None = None
    progress = Progress(
        TextColumn(f"{task}: downloading {target.name}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, partial.open("wb") as out:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            with progress:
                bar = progress.add_task("download", total=expected)
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    progress.update(bar, advance=len(chunk))
    except (OSError, HTTPException, ValueError) as exc:
        partial.unlink(missing_ok=True)
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise UsageError(
            f"{task}: downloading {url} failed after {received} bytes ({reason}); the partial "
            "file was deleted, nothing was used"
        ) from None
    if expected is not None and received != expected:
        partial.unlink(missing_ok=True)
        raise UsageError(
            f"{task}: the download of {url} is incomplete ({received} of {expected} bytes); "
            "the partial file was deleted, nothing was used"
        )
    if digest.hexdigest() != md5.lower():
        partial.unlink(missing_ok=True)
        raise UsageError(
            f"{task}: {url} has MD5 {digest.hexdigest()}, not the published {md5.lower()}: the "
            "download is corrupt or not the expected file; it was deleted, nothing was used"
        )
    partial.replace(target)
    return target
