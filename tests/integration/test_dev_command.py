"""The README's run command: `partner-stream dev` starts broker + worker and serves sample orders."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from partner_stream.broker import free_port
from partner_stream.settings import DEV_JWT_SECRET
from tests.support.polling import eventually
from web.auth import mint_operator_token

REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_dev_command_serves_sample_orders_over_http(tmp_path: Path, artifacts_dir: Path) -> None:
    web_port, broker_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_STREAM_")}
    log = (artifacts_dir / "dev-command.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "partner_stream.cli",
        "dev",
        "--web-port",
        str(web_port),
        "--broker-port",
        str(broker_port),
        "--interval",
        "0.2",
        "--data-dir",
        str(tmp_path / "dev-data"),
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    headers = {"Authorization": f"Bearer {mint_operator_token(DEV_JWT_SECRET)}"}
    try:
        async with aiohttp.ClientSession() as session:

            async def total_pending() -> int:
                total = 0
                for restaurant in ("1", "2", "3"):
                    url = f"http://127.0.0.1:{web_port}/api/restaurants/{restaurant}/pending-orders"
                    async with session.get(url, headers=headers) as response:
                        total += len((await response.json())["orders"])
                return total

            assert await eventually(total_pending, lambda n: n > 0, timeout=120, what="sample orders") > 0
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(process.wait(), 60)
        except TimeoutError:
            process.kill()
            code = await process.wait()
        log.close()
    assert code == 0, (artifacts_dir / "dev-command.log").read_text()[-3000:]
