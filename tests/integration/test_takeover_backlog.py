"""A worker that takes over partitions while their backlog waits and orders keep arriving applies every order.

Regression test for issue #17, whose two halves each need a race window that lasts a round trip:

1. At the end of a rebalance Faust pauses the changelog partitions it has finished reading, and its live
   set of active partitions stays empty until the standby partitions resume. A fetch waiting on that set,
   woken by the standby seek's re-fetch, was read by aiokafka as "every partition": it drained the paused
   stream partitions' buffered backlog, moved their positions past it, and Faust dropped those records
   (partner_stream/faust_patches/transport.py).
2. The recovery then resumed the stream partitions before its seek to the committed offsets, and kept
   the read offsets of the newer records the fetcher handed over meanwhile, so the re-fetched backlog was
   dropped as duplicates (partner_stream/faust_patches/recovery.py).

The joining worker runs with tests/support/slow_standby/sitecustomize.py, which holds both windows open
(a slow ListOffsets for the standby highwaters, a slow OffsetFetch for the seek), so the outcome does not
depend on the machine's speed. The takeover is w2 joining w1: w2 gets half of the partitions as actives
(their changelog to read, the orders published during the rebalance waiting upstream) and the other half
as standbys (the seek that wakes the fetch). Before the fix (96967de) every run lost the backlog of
w2's partitions; with it, nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from partner_stream.dev.broker import EmbeddedBroker
from tests.conftest import new_worker, restaurant_id
from tests.integration.test_stream_core import created, order_ids, pending, publish
from tests.support.polling import eventually
from tests.support.workers import Worker

SLOW_STANDBY = Path(__file__).resolve().parents[1] / "support" / "slow_standby"
#: Each longer than Faust's 1 s fetch timeout and its 1 s sleep on an empty set of active partitions.
HOLD_STANDBY_SECONDS = 1.5
HOLD_SEEK_SECONDS = 1.5
#: One new order every this many seconds, round robin over the restaurants, for the whole takeover.
PUBLISH_EVERY = 0.05


def slow_takeover_env() -> dict[str, str]:
    """PYTHONPATH with the sitecustomize folder first (keeping any entries already set), and its switches."""
    paths = [str(SLOW_STANDBY), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return {
        "PYTHONPATH": os.pathsep.join(paths),
        "PS_TEST_SLOW_STANDBY_SECONDS": str(HOLD_STANDBY_SECONDS),
        "PS_TEST_SLOW_SEEK_SECONDS": str(HOLD_SEEK_SECONDS),
    }


def restaurants_per_partition(partitions: int, per_partition: int = 2) -> list[str]:
    """Restaurant IDs covering every partition (the producer's murmur2 placement of the restaurant key)."""
    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    chosen: dict[int, list[str]] = {p: [] for p in every}
    while any(len(ids) < per_partition for ids in chosen.values()):
        restaurant = restaurant_id()
        placed = chosen[partitioner(restaurant.encode(), every, every)]
        if len(placed) < per_partition:
            placed.append(restaurant)
    return [r for ids in chosen.values() for r in ids]


class Orders:
    """Publishes orders and remembers every one, so the end state can be checked order by order."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, restaurants: list[str]) -> None:
        self.producer = producer
        self.topic = topic
        self.restaurants = restaurants
        self.published: dict[str, list[str]] = {r: [] for r in restaurants}
        self.count = 0

    async def one(self) -> None:
        restaurant = self.restaurants[self.count % len(self.restaurants)]
        order = f"o{self.count}"
        self.count += 1
        # Keyed by restaurant, as the OrderService does: the order lands on its restaurant's partition.
        await publish(self.producer, self.topic, created(restaurant, order), key=restaurant.encode())
        self.published[restaurant].append(order)

    async def keep_publishing(self) -> None:
        while True:
            await self.one()
            await asyncio.sleep(PUBLISH_EVERY)

    async def missing(self, worker: Worker) -> dict[str, list[str]]:
        """Published orders the table does not hold, by restaurant (nothing is accepted or rejected here)."""
        gaps: dict[str, list[str]] = {}
        for restaurant, orders in self.published.items():
            held = set(order_ids(await pending(worker, restaurant)))
            if lost := [o for o in orders if o not in held]:
                gaps[restaurant] = lost
        return gaps


async def cluster_status(worker: Worker) -> dict[str, Any]:
    code, body = await worker.get_json("/api/cluster")
    assert code == 200, body
    return body


def settled(body: dict[str, Any], workers: int, partitions: int) -> bool:
    """Every worker ready, each owning some partitions, together every partition exactly once."""
    members = body["workers"]
    if len(members) != workers or any(not m.get("ready") or not m["activePartitions"] for m in members):
        return False
    return sorted(p for m in members for p in m["activePartitions"]) == list(range(partitions))


@pytest.fixture
async def pair(broker: EmbeddedBroker, tmp_path: Path, artifacts_dir: Path) -> AsyncIterator[tuple[Worker, Worker]]:
    """w1 (stock) and w2 (slow standby window) on one app id, not started; both stopped afterwards."""
    first = new_worker(broker, tmp_path, artifacts_dir, "takeover")
    second = first.sibling("b", tmp_path / "takeover-b-data", extra_env=slow_takeover_env())
    try:
        yield first, second
    finally:
        for worker in (second, first):
            with contextlib.suppress(AssertionError):
                await worker.stop()


async def test_a_joining_worker_applies_the_backlog_it_takes_over_while_orders_keep_arriving(
    pair: tuple[Worker, Worker], producer: AIOKafkaProducer
) -> None:
    w1, w2 = pair
    started = time.monotonic()
    await w1.start()
    orders = Orders(producer, w1.topics.created, restaurants_per_partition(w1.partitions))
    # Every changelog partition holds rows: w2 reads its new actives and seeks its standbys.
    for _ in orders.restaurants:
        await orders.one()
    await eventually(lambda: orders.missing(w1), lambda gaps: not gaps, what="the first orders on w1")

    publishing = asyncio.create_task(orders.keep_publishing())
    try:
        # w1 stops processing when the rebalance starts (Tansu holds the JoinGroup for seconds): the orders
        # published meanwhile are the backlog w2's partitions hold while w2 reads their changelog.
        await w2.start()
        await eventually(
            lambda: cluster_status(w1),
            lambda body: settled(body, 2, w1.partitions),
            timeout=60,
            interval=0.5,
            what="w1 and w2 sharing the partitions",
        )
        # Orders keep arriving on both workers' partitions after the takeover too.
        wanted = orders.count + 2 * len(orders.restaurants)

        async def published() -> int:
            return orders.count

        await eventually(published, lambda count: count >= wanted, what="more orders after the takeover")
    finally:
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing

    log = w2.log_path.read_text(errors="replace")
    assert "Done reading from changelog topics" in log, w2.log_tail()
    assert "holding the standby highwaters" in log and "holding the seek to committed" in log, (
        f"the window was not held open (sitecustomize not loaded?); log tail:\n{w2.log_tail()}"
    )

    gaps = await eventually(
        lambda: orders.missing(w1), lambda gaps: not gaps, timeout=30, what=f"all {orders.count} orders applied"
    )
    assert not gaps
    print(
        f"takeover backlog: {orders.count} orders over {len(orders.restaurants)} restaurants all applied, "
        f"standby window held {log.count('holding the standby highwaters')}x, {time.monotonic() - started:.1f} s"
    )
