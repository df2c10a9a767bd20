"""Shared fixtures: one embedded broker per session, real workers, a real Kafka producer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from partner_stream.dev.broker import EmbeddedBroker, free_port
from tests.support.workers import Topics, Worker

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def broker(artifacts_dir: Path) -> Iterator[EmbeddedBroker]:
    """The real Kafka-protocol broker (Tansu) on a free loopback port, for the whole session."""
    embedded = EmbeddedBroker(port=free_port(), log_path=artifacts_dir / "broker.log")
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture(scope="session")
async def producer(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    await client.start()
    yield client
    await client.stop()


def new_worker(broker: EmbeddedBroker, tmp_path: Path, artifacts_dir: Path, name: str, **kwargs) -> Worker:
    """A worker with its own app id, topics and data dir (not started)."""
    suffix = uuid.uuid4().hex[:6]
    return Worker(
        broker_url=broker.url,
        app_id=f"ps-{name}-{suffix}",
        topics=Topics(prefix=f"{name}-{suffix}"),
        data_dir=tmp_path / f"{name}-data",
        log_path=artifacts_dir / f"worker-{name}-{suffix}.log",
        **kwargs,
    )


@pytest.fixture(scope="session")
async def shared_worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> AsyncIterator[Worker]:
    """One long-lived worker for tests that only add state (each uses its own restaurant IDs)."""
    worker = new_worker(broker, tmp_path_factory.mktemp("shared"), artifacts_dir, "shared")
    await worker.start()
    yield worker
    await worker.stop()


def restaurant_id() -> str:
    """A restaurant ID no other test uses."""
    return f"r-{uuid.uuid4().hex[:10]}"
