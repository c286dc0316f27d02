"""Shared fixtures: a real mosquitto broker on a free loopback port (install it with scripts/mosquitto.sh)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """One broker process; `stop()`/`start()` restart it on the same port (broker-outage tests)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._binary = binary
        self._config = workdir / "mosquitto.conf"
        self._config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self._log = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def write_config(self, text: str) -> None:
        """Replace the broker's mosquitto.conf (e.g. a TLS listener) before `start()`."""
        self._config.write_text(text)

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [self._binary, "-c", str(self._config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10.0
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self._log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {self.port}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh broker for this test; `.url` is `mqtt://127.0.0.1:PORT`. Stopped also when the test fails."""
    if MOSQUITTO is None:
        pytest.fail("mosquitto is not installed: run scripts/mosquitto.sh (scripts/test.sh does)")
    broker = Mosquitto(MOSQUITTO, tmp_path)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
