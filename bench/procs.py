"""Processes the suite runs: a fresh embedded broker, partner-stream workers, the floor bridge, tablet fleets.

Every process is started by the harness and stopped by it (by its own pid), with its output in the run's log dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from partner_stream.dev.broker import EmbeddedBroker, free_port, stop_process
from partner_stream.dev.local import REPO_ROOT, WORKER_COMMAND, NotReady, local_worker_env, log_tail, spawn, wait_ready
from partner_stream_web.capacity import raise_open_file_limit

BENCH_JWT_SECRET = "partner-stream-bench-secret-0123456789abcdef"
#: The floor's fixed fetch wait. Workers keep the embedded profile's own: 5 ms while records flow, 50 ms when idle.
FETCH_MAX_WAIT_MS = 5
TOPIC_CREATED = "order-created"
TOPIC_ACCEPTED = "order-accepted"
TOPIC_REJECTED = "order-rejected"


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one (children inherit it); return the new soft limit."""
    return raise_open_file_limit()[0]


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its own, not its children's)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class CpuMeter:
    """CPU used by a set of processes between start() and stop(), as % of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._t0 = 0.0
        self.seconds: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: _safe_cpu(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        #: CPU seconds of each process over the window, for costs per unit of work.
        self.seconds = {name: _safe_cpu(pid) - self._start[name] for name, pid in self.pids.items()}
        return {name: round(100.0 * used / elapsed, 1) for name, used in self.seconds.items()}


def _safe_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def machine_info() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(), "fd_limit": fd_limit()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            info["commit"] = commit.stdout.strip()
    return info


# -- broker ----------------------------------------------------------------------------------


async def create_upstream_topics(bootstrap: str, partitions: int) -> None:
    """The OrderService's topics, created before anything consumes them (as the table's partitions)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [NewTopic(t, partitions, 1) for t in (TOPIC_CREATED, TOPIC_ACCEPTED, TOPIC_REJECTED)]
        await admin.create_topics(topics)
    finally:
        await admin.close()


def start_broker(log_dir: Path) -> EmbeddedBroker:
    broker = EmbeddedBroker(port=free_port(), log_path=log_dir / "broker.log")
    return broker.start()


async def new_producer(bootstrap: str, linger_ms: int) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks=1)
    await producer.start()
    return producer


# -- servers (partner-stream worker, floor bridge) ---------------------------------------------


@dataclass
class Server:
    """A server process under test: a partner-stream worker or the floor bridge."""

    kind: str  # "worker", "floor" or "bare-faust"
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    web_port: int
    process: subprocess.Popen[bytes] | None = None
    data_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Server:
        self.process = spawn(self.command, self.env, self.log_path)
        return self

    async def wait_ready(self, timeout: float = 120.0) -> float:
        """Poll /readyz until 200; return the seconds it took."""
        assert self.process is not None
        try:
            return await wait_ready(self.base_url, self.process, self.log_path, timeout=timeout)
        except NotReady as exc:
            raise RuntimeError(f"{self.name} {exc}") from None

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            stop_process(self.process, timeout)

    def kill(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


def worker(
    broker: EmbeddedBroker,
    log_dir: Path,
    *,
    name: str = "worker",
    app_id: str = "bench",
    partitions: int = 8,
    loop: str = "uvloop",
    extra_env: dict[str, str] | None = None,
) -> Server:
    """A real ``faust -A partner_stream worker`` against ``broker`` (not started)."""
    port = free_port()
    data_dir = log_dir / f"{name}-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = {
        "APP_ID": app_id,
        "TOPIC_PARTITIONS": str(partitions),
        "TOPIC_ORDER_CREATED": TOPIC_CREATED,
        "TOPIC_ORDER_ACCEPTED": TOPIC_ACCEPTED,
        "TOPIC_ORDER_REJECTED": TOPIC_REJECTED,
    }
    # FAUST_LOOP is Faust's own loop switch; partner-stream defaults to uvloop, "aio" is asyncio's loop.
    extra = {"FAUST_LOOP": "uvloop" if loop == "uvloop" else "aio", **(extra_env or {})}
    env = local_worker_env(
        broker_url=broker.url,
        data_dir=data_dir,
        web_port=port,
        jwt_secret=BENCH_JWT_SECRET,
        settings=settings,
        extra=extra,
    )
    return Server("worker", name, list(WORKER_COMMAND), env, log_dir / f"{name}.log", port, data_dir=data_dir)


def floor(broker: EmbeddedBroker, log_dir: Path, *, name: str = "floor", loop: str = "uvloop") -> Server:
    """The raw floor: a plain aiokafka consumer forwarding to aiohttp WebSockets (bench/floor.py)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_STREAM_")}
    env["PYTHONUNBUFFERED"] = "1"
    command = [
        sys.executable,
        "-m",
        "bench.floor",
        "--bootstrap",
        broker.bootstrap,
        "--port",
        str(port),
        "--fetch-max-wait-ms",
        str(FETCH_MAX_WAIT_MS),
        "--topics",
        f"{TOPIC_CREATED},{TOPIC_ACCEPTED},{TOPIC_REJECTED}",
        "--loop",
        loop,
    ]
    return Server("floor", name, command, env, log_dir / f"{name}.log", port)


def bare_faust(
    broker: EmbeddedBroker, log_dir: Path, *, name: str = "bare-faust", fetch_max_wait_ms: int | None = None
) -> Server:
    """The framework's own floor: a stock Faust agent writing one table key per event (bench/bare_faust.py);
    ``fetch_max_wait_ms`` replaces Faust's 1.5 s fetch wait."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_STREAM_")}
    if fetch_max_wait_ms is not None:
        env["BARE_FETCH_MAX_WAIT_MS"] = str(fetch_max_wait_ms)
    env.update(
        BARE_BROKER_URL=broker.url,
        BARE_DATADIR=str(log_dir / f"{name}-data"),
        BARE_WEB_PORT=str(port),
        BARE_APP_ID=f"bench-bare-{port}",
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "-m", "faust", "-A", "bench.bare_faust", "worker", "-l", "info"]
    return Server("bare-faust", name, command, env, log_dir / f"{name}.log", port)


#: The worker's counter of applied events, and the kinds of them that came from upstream.
_APPLIED = "partner_stream_events_applied"
_UPSTREAM_KINDS = {"OrderCreated", "OrderAccepted", "OrderRejected"}


async def consumed(server: Server) -> float:
    """Upstream events ``server`` has taken in so far, by its own count (a worker: applied to its table)."""
    if server.kind == "worker":
        async with aiohttp.ClientSession() as session, session.get(f"{server.base_url}/metrics") as response:
            text = await response.text()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == _APPLIED
            for sample in family.samples
            if sample.name.endswith("_total") and sample.labels.get("kind") in _UPSTREAM_KINDS
        )
    path = "/count" if server.kind == "bare-faust" else "/readyz"
    async with aiohttp.ClientSession() as session, session.get(f"{server.base_url}{path}") as response:
        return float((await response.json())["consumed"])


# -- tablet fleets ---------------------------------------------------------------------------


class Fleet:
    """A separate process holding tablet sockets (bench/fleet.py), driven by JSON lines over stdin/stdout."""

    def __init__(self, log_dir: Path, name: str = "fleet") -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> Fleet:
        log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - tiny; handed to the child
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.fleet",
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            limit=256 * 1024 * 1024,
        )
        log.close()
        await self.call("hello", timeout=30)
        return self

    async def call(self, op: str, timeout: float = 300.0, **args: Any) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        async with self._lock:
            self.process.stdin.write(orjson.dumps({"op": op, **args}) + b"\n")
            await self.process.stdin.drain()
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} exited during {op!r}; see {self.log_path}")
        reply = orjson.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name} {op!r} failed: {reply['error']}")
        return reply

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.call("quit", timeout=15)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()

    def rss(self) -> int:
        return rss_bytes(self.pid)


def _box_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class BoxMeter:
    """Whole-machine CPU between start() and stop(), and what processes we did not start used of it."""

    def __init__(self, ours: CpuMeter) -> None:
        self.ours = ours
        self._busy0 = self._total0 = 0
        self._t0 = 0.0

    def start(self) -> None:
        self._busy0, self._total0 = _box_jiffies()
        self._t0 = time.monotonic()
        self.ours.start()

    def stop(self, harness_pid: int | None = None) -> dict[str, Any]:
        ours = self.ours.stop()
        busy, total = _box_jiffies()
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        ticks = os.sysconf("SC_CLK_TCK")
        box_cores = (busy - self._busy0) / ticks / elapsed
        ours_cores = sum(ours.values()) / 100.0
        return {
            "cpu_percent_of_core": ours,
            "cpu_seconds": {name: round(used, 3) for name, used in self.ours.seconds.items()},
            "box_busy_percent": round(100.0 * (busy - self._busy0) / max(total - self._total0, 1), 1),
            "other_processes_percent_of_core": round(max(box_cores - ours_cores, 0.0) * 100.0, 1),
        }


async def wait_for_quiet(limit_percent: float, max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) until the box is below ``limit_percent`` busy; return the last reading."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, total0 = _box_jiffies()
        await asyncio.sleep(1.0)
        busy, total = _box_jiffies()
        reading = 100.0 * (busy - busy0) / max(total - total0, 1)
        if reading <= limit_percent or time.monotonic() > deadline:
            return round(reading, 1)
