"""Workers as local processes on loopback: what ``partner-stream dev``, the tests and the benchmarks start.

One definition of the command (the one the container runs), of the settings a worker
needs to serve on loopback against the embedded broker, and of "ready" (``/readyz``
answers 200), so the three callers cannot drift apart.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from ..settings import ENV_PREFIX

#: ``faust -A partner_stream worker`` at ``-l info``, as the Dockerfile runs it (``-l warn`` turns on Faust's
#: spinner, which puts the root logger at DEBUG).
WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "faust", "-A", "partner_stream", "worker", "-l", "info")

REPO_ROOT = Path(__file__).resolve().parents[2]


def local_worker_env(
    *,
    broker_url: str,
    data_dir: Path,
    web_port: int,
    jwt_secret: str,
    settings: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
    keep_user_settings: bool = False,
) -> dict[str, str]:
    """This process's environment, plus a loopback worker's settings.

    ``settings`` are more partner-stream settings by field name (``{"APP_ID": "x"}``); ``extra`` is merged last,
    as is (other variables, or overrides). The caller's own ``PARTNER_STREAM_*`` variables are dropped (tests
    and benches must not inherit a developer's shell), unless ``keep_user_settings`` (``partner-stream dev``:
    the user's settings apply, under the loopback ones).
    """
    env = {k: v for k, v in os.environ.items() if keep_user_settings or not k.startswith(ENV_PREFIX)}
    local = {
        "BROKER_URL": broker_url,
        "BROKER_PROFILE": "embedded",
        "APP_DATADIR": str(data_dir),
        "WEB_BIND": "127.0.0.1",
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": str(web_port),
        "JWT_SECRET": jwt_secret,
        **(settings or {}),
    }
    env.update({ENV_PREFIX + name: value for name, value in local.items()})
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def spawn(command: list[str] | tuple[str, ...], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` from the repository root, appending its output to ``log_path`` after a start marker."""
    with open(log_path, "ab") as log:
        log.write(f"\n===== start {time.strftime('%X')} =====\n".encode())
        log.flush()
        return subprocess.Popen(list(command), cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def log_tail(log_path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class NotReady(RuntimeError):
    """The process exited, or ``/readyz`` did not answer 200 in time; the message ends with its log tail."""


async def wait_ready(
    base_url: str, process: subprocess.Popen[bytes], log_path: Path | None, *, timeout: float
) -> float:
    """Poll ``base_url/readyz`` until it answers 200; return the seconds it took.

    ``log_path`` is where the process writes (its tail goes into the error), or None if it writes to this terminal.
    """

    def tail() -> str:
        return f"; log tail:\n{log_tail(log_path)}" if log_path is not None else "; see its output above"

    started = time.monotonic()
    deadline = started + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            if process.poll() is not None:
                raise NotReady(f"exited early with code {process.returncode}{tail()}")
            try:
                async with session.get(f"{base_url}/readyz") as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise NotReady(f"not ready in {timeout:.0f} s{tail()}")
            await asyncio.sleep(0.1)
