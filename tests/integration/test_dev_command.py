"""The README's run command: `partner-stream dev` starts broker + worker and serves sample orders."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from partner_stream.dev.broker import free_port
from partner_stream.settings import DEV_JWT_SECRET
from partner_stream_web.auth import mint_operator_token
from tests.support.polling import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]
RESTAURANTS = ("1", "2", "3")


async def start_dev(tmp_path: Path, log_path: Path, web_port: int, **options: Any) -> asyncio.subprocess.Process:
    """`partner-stream dev` on free ports, its output (and its worker's) into ``log_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_STREAM_")}
    with log_path.open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "partner_stream.cli", "dev",
            "--web-port", str(web_port),
            "--broker-port", str(free_port()),
            "--interval", "0.2",
            "--data-dir", str(tmp_path / "dev-data"),
            cwd=REPO_ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=asyncio.subprocess.STDOUT,
            **options,
        )  # fmt: skip


async def total_pending(session: aiohttp.ClientSession, web_port: int) -> int:
    headers = {"Authorization": f"Bearer {mint_operator_token(DEV_JWT_SECRET)}"}
    total = 0
    for restaurant in RESTAURANTS:
        url = f"http://127.0.0.1:{web_port}/api/restaurants/{restaurant}/pending-orders"
        async with session.get(url, headers=headers) as response:
            total += len((await response.json())["orders"])
    return total


async def test_dev_command_serves_sample_orders_over_http(tmp_path: Path, artifacts_dir: Path) -> None:
    web_port = free_port()
    log_path = artifacts_dir / "dev-command.log"
    process = await start_dev(tmp_path, log_path, web_port)
    try:
        async with aiohttp.ClientSession() as session:
            pending = await eventually(
                lambda: total_pending(session, web_port), lambda n: n > 0, timeout=120, what="sample orders"
            )
            assert pending > 0
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(process.wait(), 60)
        except TimeoutError:
            process.kill()
            code = await process.wait()
    assert code == 0, log_path.read_text()[-3000:]


def process_stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process from /proc, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": the comm may hold spaces
    return int(fields[1]), fields[0], int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """Every process below ``pid`` (in any session or group): pid -> start time."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := process_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    found: dict[int, int] = {}
    parents = {pid}
    while parents:
        children = {p: s for p, s in stats.items() if s[0] in parents and p not in found}
        found.update({p: s[2] for p, s in children.items()})
        parents = set(children)
    return found


def running(pid: int, started: int) -> bool:
    """Whether that very process (not a later one with its pid) still runs; a zombie does not."""
    stat = process_stat(pid)
    return stat is not None and stat[2] == started and stat[1] != "Z"


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the dev command's children in /proc")
async def test_ctrl_c_in_a_terminal_stops_the_worker_then_the_broker_cleanly(
    tmp_path: Path, artifacts_dir: Path
) -> None:
    """A terminal's Ctrl-C sends SIGINT to its whole foreground process group, not only to `partner-stream dev`.

    It used to kill the broker at once, and the worker then logged thousands of connection errors for 30 s.
    """
    web_port = free_port()
    log_path = artifacts_dir / "dev-command-ctrl-c.log"
    # A process group of its own, as a terminal gives a command: the test can signal all of it, like Ctrl-C does.
    process = await start_dev(tmp_path, log_path, web_port, start_new_session=True)
    pgid = process.pid
    children: dict[int, int] = {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:

            async def ready() -> int:
                async with session.get(f"http://127.0.0.1:{web_port}/readyz") as response:
                    return response.status

            await eventually(ready, lambda status: status == 200, timeout=120, what="the worker's /readyz")
            # Orders flow: the worker is in its consumer group and commits offsets, as when a developer stops it.
            await eventually(
                lambda: total_pending(session, web_port), lambda n: n > 0, timeout=60, what="sample orders"
            )
        children = descendants(process.pid)
        assert len(children) >= 2, f"expected the broker and the worker below dev, found {children}"

        started = time.monotonic()
        os.killpg(pgid, signal.SIGINT)  # what Ctrl-C in a terminal does

        async def still_running() -> list[int]:
            alive = [pid for pid, start in children.items() if running(pid, start)]
            if process.returncode is None or group_exists(pgid):
                alive.append(process.pid)
            return alive

        await eventually(still_running, lambda alive: not alive, timeout=10, what="dev, the worker and the broker")
        stop_seconds = time.monotonic() - started
    finally:
        for pid, start in (children or descendants(process.pid)).items():
            if running(pid, start):
                os.kill(pid, signal.SIGKILL)
        if process.returncode is None:
            process.kill()
            await process.wait()

    output = log_path.read_text(errors="replace")
    errors = [line for line in output.splitlines() if "ERROR" in line or "Unable connect to node" in line]
    assert not errors, f"{len(errors)} error lines while stopping, the first ones:\n" + "\n".join(errors[:20])
    assert "Signal received" in output, "the worker must be stopped by a signal, not killed"
    assert process.returncode == 0, output[-3000:]
    print(f"stopped in {stop_seconds:.1f} s")
