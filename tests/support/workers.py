"""Real ``faust -A partner_stream worker`` processes for integration tests."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from partner_stream.dev.broker import free_port
from partner_stream.dev.local import WORKER_COMMAND, NotReady, local_worker_env, log_tail, spawn, wait_ready
from partner_stream_web.auth import mint_operator_token

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

    @property
    def seen(self) -> str:
        return f"{self.prefix}-order-seen"

    @property
    def unseen(self) -> str:
        return f"{self.prefix}-order-unseen"

    def env(self) -> dict[str, str]:
        return {
            "PARTNER_STREAM_TOPIC_ORDER_CREATED": self.created,
            "PARTNER_STREAM_TOPIC_ORDER_ACCEPTED": self.accepted,
            "PARTNER_STREAM_TOPIC_ORDER_REJECTED": self.rejected,
            "PARTNER_STREAM_TOPIC_DEAD_LETTER": self.dead_letter,
            "PARTNER_STREAM_TOPIC_ORDER_SEEN": self.seen,
            "PARTNER_STREAM_TOPIC_ORDER_UNSEEN": self.unseen,
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
        settings = {"APP_ID": self.app_id, "TOPIC_PARTITIONS": str(self.partitions)}
        return local_worker_env(
            broker_url=self.broker_url,
            data_dir=self.data_dir,
            web_port=self.web_port,
            jwt_secret=TEST_JWT_SECRET,
            settings=settings,
            extra={**self.topics.env(), **self.extra_env},
        )

    def sibling(self, name: str, data_dir: Path, extra_env: dict[str, str] | None = None) -> Worker:
        """Another worker of the same app (group, topics, table), with its own data dir, port and log."""
        return Worker(
            broker_url=self.broker_url,
            app_id=self.app_id,
            topics=self.topics,
            data_dir=data_dir,
            log_path=self.log_path.with_name(f"worker-{self.app_id}-{name}.log"),
            partitions=self.partitions,
            extra_env=dict(self.extra_env if extra_env is None else extra_env),
        )

    async def start(self, *, timeout: float = 90.0) -> Worker:
        assert self.process is None or self.process.poll() is not None, "worker already running"
        self.process = spawn(WORKER_COMMAND, self.env(), self.log_path)
        await self.wait_ready(timeout=timeout)
        return self

    async def wait_ready(self, *, timeout: float = 90.0) -> None:
        assert self.process is not None
        try:
            await wait_ready(self.base_url, self.process, self.log_path, timeout=timeout)
        except NotReady as exc:
            raise AssertionError(f"worker {exc}") from None

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
        return log_tail(self.log_path, lines)

    async def metric_samples(self, family_name: str) -> list[Any]:
        """The samples of one metric family on the worker's /metrics page (of a counter, the ``_total`` ones)."""
        async with aiohttp.ClientSession() as session, session.get(f"{self.base_url}/metrics") as response:
            text = await response.text()
        return [
            sample
            for family in text_string_to_metric_families(text)
            if family.name == family_name
            for sample in family.samples
            if family.type != "counter" or sample.name.endswith("_total")
        ]

    async def get_json(self, path: str, *, token: str | None = None) -> tuple[int, Any]:
        """GET with an operator token (or the given one; "" for none)."""
        token = operator_token() if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.base_url}{path}", headers=headers) as response,
        ):
            return response.status, await response.json(content_type=None)
