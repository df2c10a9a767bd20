"""Real ``faust -A partner_stream worker`` processes for integration tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from partner_stream.broker import free_port
from web.auth import mint_operator_token

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_JWT_SECRET = "test-secret-for-partner-stream-integration-tests"


def operator_token(secret: str = TEST_JWT_SECRET) -> str:
    return mint_operator_token(secret, ttl_seconds=3600)


@dataclass
class Topics:
    """Per-test-group topic names, so groups sharing a broker never read each other's events."""

    prefix: str

    @property
    def created(self) -> str:
        return f"{self.prefix}-order-created"

    @property
    def accepted(self) -> str:
        return f"{self.prefix}-order-accepted"

    @property
    def rejected(self) -> str:
        return f"{self.prefix}-order-rejected"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}-dlq"

    def env(self) -> dict[str, str]:
        return {
            "PARTNER_STREAM_TOPIC_ORDER_CREATED": self.created,
            "PARTNER_STREAM_TOPIC_ORDER_ACCEPTED": self.accepted,
            "PARTNER_STREAM_TOPIC_ORDER_REJECTED": self.rejected,
            "PARTNER_STREAM_TOPIC_DEAD_LETTER": self.dead_letter,
        }


@dataclass
class Worker:
    """One worker process; ``start``/``stop``/``kill`` keep its data dir unless told otherwise."""

    broker_url: str
    app_id: str
    topics: Topics
    data_dir: Path
    log_path: Path
    web_port: int = field(default_factory=free_port)
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_STREAM_")}
        env.update(
            {
                "PARTNER_STREAM_APP_ID": self.app_id,
                "PARTNER_STREAM_BROKER_URL": self.broker_url,
                "PARTNER_STREAM_BROKER_PROFILE": "embedded",
                "PARTNER_STREAM_APP_DATADIR": str(self.data_dir),
                "PARTNER_STREAM_TOPIC_PARTITIONS": str(self.partitions),
                "PARTNER_STREAM_WEB_BIND": "127.0.0.1",
                "PARTNER_STREAM_WEB_HOST": "127.0.0.1",
                "PARTNER_STREAM_WEB_PORT": str(self.web_port),
                "PYTHONUNBUFFERED": "1",
                "PARTNER_STREAM_JWT_SECRET": TEST_JWT_SECRET,
                **self.topics.env(),
                **self.extra_env,
            }
        )
        return env

    async def start(self, *, timeout: float = 90.0) -> Worker:
        assert self.process is None or self.process.poll() is not None, "worker already running"
        log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - tiny write; handed to the process
        log.write(f"\n===== start {time.strftime('%X')} =====\n".encode())
        log.flush()
        self.process = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; readiness is polled
            [sys.executable, "-m", "faust", "-A", "partner_stream", "worker", "-l", "info"],
            cwd=REPO_ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        await self.wait_ready(timeout=timeout)
        return self

    async def wait_ready(self, *, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise AssertionError(f"worker exited early; log tail:\n{self.log_tail()}")
                try:
                    async with session.get(f"{self.base_url}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"worker not ready in {timeout:.0f} s; log tail:\n{self.log_tail()}")
                await asyncio.sleep(0.2)

    async def stop(self, *, timeout: float = 60.0) -> int:
        """Graceful stop (SIGTERM), as an orchestrator would do it."""
        return await self._signal(signal.SIGTERM, timeout)

    async def kill(self) -> int:
        """Crash (SIGKILL): no flush, no leave-group."""
        return await self._signal(signal.SIGKILL, 30.0)

    async def _signal(self, signum: int, timeout: float) -> int:
        process = self.process
        if process is None or process.poll() is not None:
            return process.returncode if process else 0
        process.send_signal(signum)
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise AssertionError(f"worker ignored signal {signum}; log tail:\n{self.log_tail()}")
            await asyncio.sleep(0.1)
        return process.returncode

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    async def get_json(self, path: str, *, token: str | None = None) -> tuple[int, Any]:
        """GET with an operator token (or the given one; "" for none)."""
        token = operator_token() if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.base_url}{path}", headers=headers) as response,
        ):
            return response.status, await response.json(content_type=None)
