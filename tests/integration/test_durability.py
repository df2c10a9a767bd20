"""Pending orders survive a graceful restart, a wiped data dir, a SIGKILL and an upgrade of the table layout."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from partner_stream.dev.broker import EmbeddedBroker
from tests.conftest import new_worker, restaurant_id
from tests.integration.test_stream_core import created, order_ids, pending, publish, wait_for_orders
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


def legacy_value(restaurant: str, seq: int, pending: list[str], resolved: list[str], rejected: list[str]) -> bytes:
    """A value exactly as the one-value-per-restaurant layout (main before 2026-12-04) wrote it."""
    orders = [
        {
            "orderId": order,
            "restaurantId": restaurant,
            "customerName": "Ana",
            "items": [{"name": "Pad Thai", "quantity": 2, "unitPrice": 9.5, "notes": None}],
            "totalPrice": 19.0,
            "createdAt": f"2026-12-01T18:0{n}:00Z",
            "seq": n + 1,
            "acknowledgedAt": None,
        }
        for n, order in enumerate(pending)
    ]
    value = {"restaurantId": restaurant, "seq": seq, "pending": orders, "resolved": resolved, "rejected": rejected}
    return orjson.dumps(value)


async def test_a_changelog_and_data_dir_of_the_one_value_layout_keep_every_pending_order(
    worker: Worker, producer: AIOKafkaProducer
) -> None:
    """An upgrade in place: the old layout's changelog records are read, then rewritten by the next event."""
    touched, untouched = restaurant_id(), restaurant_id()
    await worker.stop()
    changelog = f"{worker.app_id}-pending-orders-changelog"
    # Key bytes and murmur2, as Faust's producer wrote them: the restaurant's changelog partition.
    await producer.send_and_wait(
        changelog, legacy_value(touched, 9, ["p1", "p2", "p3"], ["a", "b"], ["b"]), key=touched.encode()
    )
    await producer.send_and_wait(changelog, legacy_value(untouched, 4, ["q1"], [], []), key=untouched.encode())
    await worker.start()  # the data dir is behind the changelog: recovery reads the legacy values into it

    before = await pending(worker, touched)
    assert order_ids(before) == ["p1", "p2", "p3"] and before["seq"] == 9

    await publish(producer, worker.topics.created, created(touched, "p4"), key=touched.encode())
    await wait_for_orders(worker, touched, ["p1", "p2", "p3", "p4"])
    await publish(producer, worker.topics.accepted, {"OrderId": "p2", "RestaurantId": touched}, key=touched.encode())
    await publish(producer, worker.topics.created, created(touched, "b"), key=touched.encode())  # rejected before
    await publish(producer, worker.topics.created, created(touched, "p5"), key=touched.encode())
    after = await wait_for_orders(worker, touched, ["p1", "p3", "p4", "p5"])
    assert after["seq"] == 12

    await worker.stop()
    await worker.start()  # the data dir now holds migrated records
    assert await pending(worker, touched) == after
    await worker.stop()
    shutil.rmtree(worker.data_dir)
    await worker.start()  # and the changelog replays legacy value, then records, to the same state
    assert await pending(worker, touched) == after
    untouched_now = await pending(worker, untouched)
    assert order_ids(untouched_now) == ["q1"] and untouched_now["seq"] == 4
