"""The real Prometheus Alertmanager (Debian's 0.25), one per test module, on loopback.

Why real: what Alertmanager accepts, merges and resolves is the point of these tests. The
binary comes from `make install` (tools/system-deps.sh); a missing binary fails the tests
loudly instead of skipping them. Clustering is off (`--cluster.listen-address=`), so the
instance never gossips or waits for peers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

BINARY = "prometheus-alertmanager"
CONFIG = """\
route: {receiver: "null", group_wait: 1s, group_interval: 1s, repeat_interval: 1h}
receivers: [{name: "null"}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a fresh, running Alertmanager."""
    binary = shutil.which(BINARY)
    if binary is None:
        pytest.fail(
            f"{BINARY} not found: run make install: it installs Debian's prometheus-alertmanager"
        )
    root = tmp_path_factory.mktemp("alertmanager")
    (root / "am.yml").write_text(CONFIG)
    url = f"http://127.0.0.1:{free_port()}"
    argv = [
        binary,
        f"--config.file={root / 'am.yml'}",
        f"--storage.path={root / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with (root / "am.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        with httpx.Client(timeout=1) as client:
            while True:
                if proc.poll() is not None:
                    pytest.fail(
                        f"{BINARY} exited {proc.returncode}:\n{(root / 'am.log').read_text()}"
                    )
                try:
                    if client.get(f"{url}/-/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"{BINARY} not ready in 15 s:\n{(root / 'am.log').read_text()}")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
