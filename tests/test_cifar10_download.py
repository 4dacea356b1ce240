"""cifar10's ``download=true`` end to end against a local HTTP server (127.0.0.1, a thread):
a small archive in the official format is fetched, verified and read; a corrupt or partial
download is reported, deleted and never used."""

from __future__ import annotations

import hashlib
import http.server
import inspect
import io
import re
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from typer.testing import CliRunner

from mixbench.cli.app import app
from mixbench.errors import UsageError
from mixbench_builtins.tasks import cifar10
from mixbench_builtins.tasks.cifar10 import make_cifar10

RECORDS = 6
VAL = 5


def _archive(seed: int = 0) -> bytes:
    """A .tar.gz laid out as the official one: cifar-10-batches-bin/ with the six batches."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in (*cifar10.TRAIN_FILES, cifar10.TEST_FILE, "batches.meta.txt"):
            records = rng.integers(0, 256, size=(RECORDS, cifar10.RECORD_BYTES), dtype=np.uint8)
            records[:, 0] = rng.integers(0, 10, RECORDS)
            data = records.tobytes() if name.endswith(".bin") else b"airplane\n"
            info = tarfile.TarInfo(f"{cifar10.SUBDIR}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ARCHIVE = _archive()  # built once: gzip stamps the time, so each build differs
GOOD_MD5 = hashlib.md5(ARCHIVE).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` by path; ``/short/...`` promises more bytes than it sends."""

    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        body = self.files.get(self.path.removeprefix("/short"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        short = self.path.startswith("/short")
        self.send_header("Content-Length", str(len(body) * 2 if short else len(body)))
        self.end_headers()
        self.wfile.write(body)
        if short:
            self.close_connection = True

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server() -> Iterator[str]:
    good = ARCHIVE
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF
    Handler.files = {"/cifar-10-binary.tar.gz": good, "/corrupt.tar.gz": bytes(corrupt)}
    Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


fetch = partial(make_cifar10, 0, download=True, md5=GOOD_MD5, num_val=VAL)


def _left(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_defaults_are_the_official_archive_and_its_published_checksum() -> None:
    defaults = inspect.signature(make_cifar10).parameters
    assert defaults["url"].default == "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    assert defaults["md5"].default == "c32a1d4ab5d03f1284b67883e8d87530"
    assert defaults["download"].default is False


def test_download_verifies_extracts_and_reads_then_reuses_the_copy(
    server: str, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    task = fetch(root=str(root), url=f"{server}/cifar-10-binary.tar.gz")
    assert task.x_test is not None and len(task.x_test) == RECORDS
    assert len(task.x_train) + len(task.x_val) == 5 * RECORDS
    assert task.info["downloaded_from"] == f"{server}/cifar-10-binary.tar.gz"
    # Only the six batches are kept, by name; the archive itself is gone.
    assert _left(root) == [cifar10.SUBDIR]
    assert _left(root / cifar10.SUBDIR) == sorted((*cifar10.TRAIN_FILES, cifar10.TEST_FILE))
    # The same data as reading the extracted copy directly.
    local = make_cifar10(0, root=str(root), num_val=VAL)
    assert local.x_test is not None and (local.x_test == task.x_test).all()
    # A second call finds the verified copy and does not download again.
    fetch(root=str(root), url=f"{server}/cifar-10-binary.tar.gz")
    assert Handler.requests == ["/cifar-10-binary.tar.gz"]


def test_the_cache_directory_is_used_without_root(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIXBENCH_CACHE_DIR", str(tmp_path / "cache"))
    fetch(url=f"{server}/cifar-10-binary.tar.gz")
    assert (tmp_path / "cache" / "cifar10" / cifar10.SUBDIR / cifar10.TEST_FILE).is_file()


def test_a_corrupt_download_is_reported_deleted_and_never_used(server: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    with pytest.raises(UsageError, match=f"not the published {GOOD_MD5}") as error:
        fetch(root=str(root), url=f"{server}/corrupt.tar.gz")
    assert "deleted, nothing was used" in str(error.value)
    assert _left(root) == []
    # Nothing half-done stays behind to be picked up: the next good download proceeds.
    fetch(root=str(root), url=f"{server}/cifar-10-binary.tar.gz")


def test_a_partial_download_is_reported_and_deleted(server: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    with pytest.raises(UsageError, match="partial file was deleted"):
        fetch(root=str(root), url=f"{server}/short/cifar-10-binary.tar.gz")
    assert _left(root) == []


def test_an_unreachable_server_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(
        UsageError, match=re.escape("downloading http://127.0.0.1:9/x.tar.gz failed")
    ):
        fetch(root=str(tmp_path), url="http://127.0.0.1:9/x.tar.gz")


def test_an_incomplete_existing_copy_is_not_overwritten(server: str, tmp_path: Path) -> None:
    (tmp_path / cifar10.SUBDIR).mkdir()
    with pytest.raises(UsageError, match="exists but lacks"):
        fetch(root=str(tmp_path), url=f"{server}/cifar-10-binary.tar.gz")
    assert Handler.requests == []


def test_the_cli_exits_2_with_the_reason_on_a_corrupt_archive(server: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    result = CliRunner().invoke(
        app,
        ["train", "-m", "identity", "-t", "cifar10", "--steps", "1", "--quiet",
         "--out", str(tmp_path / "runs"), "--task-option", "download=true",
         "--task-option", f"url={server}/corrupt.tar.gz", "--task-option", f"md5={GOOD_MD5}",
         "--task-option", f"root={root}", "--task-option", f"num_val={VAL}"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "MD5" in result.output and "Traceback" not in result.output
    assert _left(root) == []
