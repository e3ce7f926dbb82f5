"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) for the tests.

The session fixture installs the package when it is missing (as root: ``apt-get install``,
after ``apt-get update`` when the package lists do not know it yet), starts the binary on
loopback with ``deploy/alertmanager/alertmanager.yml``, its own storage directory and
clustering off, waits until its API answers, and stops it at the end of the session.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import free_port, stop_process

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"
PORT = int(os.environ.get("SM_TEST_ALERTMANAGER_PORT", "29193"))  # below the ephemeral range
BINARIES = ("prometheus-alertmanager", "alertmanager")


def _binary(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def install_debian_binary(package: str, *binaries: str) -> str:
    """The path of one of ``binaries``, installing Debian's ``package`` first when none is on
    PATH (as root; runs ``apt-get update`` when the package lists do not know the package)."""
    found = _binary(binaries)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"{package} is not installed and cannot be installed here (needs root and "
                    f"apt-get): apt-get install -y {package}")
    install = ("install", "-y", "-q", "--no-install-recommends", package)
    res = _apt(*install, timeout=600)
    if res.returncode != 0:  # a fresh machine: the package lists are empty or stale
        upd = _apt("update", "-q", timeout=600)
        if upd.returncode != 0:
            pytest.fail(f"apt-get update failed:\n{upd.stdout[-2000:]}\n{upd.stderr[-2000:]}")
        res = _apt(*install, timeout=900)
    found = _binary(binaries)
    if res.returncode != 0 or not found:
        pytest.fail(f"apt-get install {package} failed:\n{res.stdout[-2000:]}\n"
                    f"{res.stderr[-2000:]}")
    return found


def install_alertmanager() -> str:
    return install_debian_binary("prometheus-alertmanager", *BINARIES)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Alertmanager:
    def __init__(self, binary: str, workdir: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / "alertmanager.log"
        storage = workdir / "data"
        storage.mkdir(parents=True, exist_ok=True)
        config = workdir / "alertmanager.yml"
        shutil.copyfile(CONFIG, config)  # the deploy/ example, verbatim
        self._log_f = self.log.open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={storage}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
             "--log.level=info"],
            stdout=self._log_f, stderr=subprocess.STDOUT)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"alertmanager exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        status = self.get("/api/v2/status")
                        if status.get("config", {}).get("original"):
                            return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        pytest.fail(f"alertmanager not ready in {timeout}s ({last}):\n{self.tail()}")

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)
        self._log_f.close()

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    binary = install_alertmanager()
    port = PORT if _port_free(PORT) else free_port()
    am = Alertmanager(binary, tmp_path_factory.mktemp("alertmanager"), port)
    try:
        am.wait_ready()
        yield am
    finally:
        am.stop()
