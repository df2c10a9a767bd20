"""Pending orders survive a graceful restart, a wiped data dir and a SIGKILL."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from partner_stream.broker import EmbeddedBroker
from tests.conftest import new_worker, restaurant_id
from tests.integration.test_stream_core import created, pending, publish, wait_for_orders
from tests.support.polling import eventually
from tests.support.workers import Worker


@pytest.fixture(scope="module")
async def worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> AsyncIterator[Worker]:
    worker = new_worker(broker, tmp_path_factory.mktemp("durable"), artifacts_dir, "durable")
    await worker.start()
    yield worker
    await worker.stop()


async def seed(worker: Worker, producer: AIOKafkaProducer, count: int = 3) -> dict[str, dict]:
    """Publish pending and resolved orders for a few restaurants; return their applied snapshots."""
    restaurants = [restaurant_id() for _ in range(count)]
    for restaurant in restaurants:
        for order in ("o1", "o2", "o3"):
            await publish(producer, worker.topics.created, created(restaurant, order))
    # The accept goes out only once o2 is pending: it travels on another topic and could overtake its
    # creation, and then the snapshot below could be taken before o2's creation lands (a different seq).
    for restaurant in restaurants:
        await wait_for_orders(worker, restaurant, ["o1", "o2", "o3"])
        await publish(producer, worker.topics.accepted, {"OrderId": "o2", "RestaurantId": restaurant})
    return {r: await wait_for_orders(worker, r, ["o1", "o3"]) for r in restaurants}


async def assert_all_pending(worker: Worker, expected: dict[str, dict]) -> None:
    for restaurant, snapshot in expected.items():
        assert await pending(worker, restaurant) == snapshot, f"{restaurant} changed across the restart"


async def wait_all_pending(worker: Worker, expected: dict[str, dict]) -> None:
    """After a SIGKILL: a change whose changelog record was not sent yet comes back from the upstream replay.

    Ready means the table is recovered, and the replay of uncommitted upstream events may still be running.
    """
    for restaurant, snapshot in expected.items():

        async def now(restaurant: str = restaurant) -> dict:
            return await pending(worker, restaurant)

        await eventually(now, lambda seen, want=snapshot: seen == want, what=f"{restaurant} as before the kill")


async def test_graceful_restart_keeps_pending_orders(worker: Worker, producer: AIOKafkaProducer) -> None:
    expected = await seed(worker, producer)
    await worker.stop()
    await worker.start()
    await assert_all_pending(worker, expected)


async def test_wiped_data_dir_is_rebuilt_from_the_changelog(worker: Worker, producer: AIOKafkaProducer) -> None:
    expected = await seed(worker, producer)
    await worker.stop()
    shutil.rmtree(worker.data_dir)
    await worker.start()
    await assert_all_pending(worker, expected)


async def test_sigkill_loses_nothing_and_events_published_while_down_are_applied(
    worker: Worker, producer: AIOKafkaProducer
) -> None:
    expected = await seed(worker, producer)
    assert await worker.kill() == -9
    late = restaurant_id()
    await publish(producer, worker.topics.created, created(late, "while-down"))
    await worker.start()
    await wait_all_pending(worker, expected)
    await wait_for_orders(worker, late, ["while-down"])
