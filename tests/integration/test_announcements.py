"""OrderSeen / OrderUnseen on Kafka, from real workers, with the real SignalR client as the tablet.

Absence is asserted behind a barrier, never after a sleep: announcements of one restaurant are keyed by it, so
they are read in the order they were made. When an order published *later* has been announced at its
threshold, an earlier order due before it would have been announced already.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from partner_stream.dev.broker import EmbeddedBroker
from tests.conftest import restaurant_id
from tests.integration.test_cluster import Cluster, start_pair
from tests.integration.test_hub import node_modules, signalr_config  # noqa: F401  (fixture)
from tests.integration.test_stream_core import created, publish
from tests.support.polling import eventually
from tests.support.signalr_node import NodeSignalRClient
from tests.support.tablets import PlainTablet
from tests.support.workers import Worker

#: Long enough that a loaded 2-core machine acknowledges (or announces step 0) well before it.
THRESHOLD = 6.0
ENV = {"PARTNER_STREAM_UNSEEN_AFTER": f"{THRESHOLD:g}s", "PARTNER_STREAM_UNSEEN_ARRIVAL_GRACE": "1"}


class Announcements:
    """Every record of the order-seen and order-unseen topics, read from the start, as it arrives."""

    def __init__(self, broker: EmbeddedBroker, seen_topic: str, unseen_topic: str) -> None:
        self.kind = {seen_topic: "OrderSeen", unseen_topic: "OrderUnseen"}
        self.records: list[dict[str, Any]] = []
        self._consumer = AIOKafkaConsumer(
            seen_topic, unseen_topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
            fetch_max_wait_ms=50, metadata_max_age_ms=1000,
        )  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Announcements:
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()

    async def _read(self) -> None:
        async for record in self._consumer:
            body = orjson.loads(record.value)
            assert record.key == body["RestaurantId"].encode(), record
            self.records.append({"Kind": self.kind[record.topic], **body})

    def of(self, order: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records if r["OrderId"] == order and (kind is None or r["Kind"] == kind)]

    async def wait_for(self, order: str, kind: str, check: Callable[[dict[str, Any]], bool] = bool) -> dict[str, Any]:
        async def found() -> list[dict[str, Any]]:
            return [r for r in self.of(order, kind) if check(r)]

        matches = await eventually(found, bool, timeout=60, what=f"{kind} of {order}")
        return matches[0]


@pytest.fixture(scope="module")
async def pair(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> AsyncIterator[Cluster]:
    cluster = await start_pair(broker, tmp_path_factory.mktemp("announce"), artifacts_dir, "announce", ENV)
    yield cluster
    for worker in cluster.live():
        await worker.stop()


@pytest.fixture
async def announcements(broker: EmbeddedBroker, pair: Cluster) -> AsyncIterator[Announcements]:
    topics = pair.workers[0].topics
    reader = await Announcements(broker, topics.seen, topics.unseen).start()
    yield reader
    await reader.stop()


async def tablet(worker: Worker, restaurant: str) -> NodeSignalRClient:
    """A SignalR tablet that shows orders but acknowledges only when told to."""
    client = await NodeSignalRClient.start(signalr_config(worker, restaurant))
    await client.wait_for("PendingOrders")
    return client


async def wait_for_push(client: NodeSignalRClient, pair: Cluster, restaurant: str, name: str, order: str) -> None:
    """Wait for the tablet to be pushed ``name`` for ``order``; on a timeout, say what each worker did.

    It told, the second time a push never came (2 in about 3,000 test runs): the owner had applied the order's
    rejection before its creation, which travels on another topic, and so never showed the order; the test
    published the rejection without waiting for the order to show."""
    try:
        await client.wait_for(lambda e: e["event"] == name and e["args"][0]["orderId"] == order)
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}\n{await what_the_workers_did(pair, restaurant)}") from None


async def what_the_workers_did(pair: Cluster, restaurant: str) -> str:
    lines = []
    for worker in pair.live():
        counts = {
            family: sum(sample.value for sample in await worker.metric_samples(family))
            for family in ("partner_stream_events_applied", "partner_stream_pushes", "partner_stream_connections")
        }
        lines.append(f"{worker.base_url}: {counts}")
    status, body = await pair.workers[0].get_json(f"/api/restaurants/{restaurant}/pending-orders")
    lines.append(f"{restaurant}'s pending orders: {status} {body}")
    return "\n".join(lines)


async def new_order(producer: AIOKafkaProducer, worker: Worker, restaurant: str) -> str:
    order = f"o-{uuid.uuid4().hex[:8]}"
    await publish(producer, worker.topics.created, created(restaurant, order), key=restaurant.encode())
    return order


async def test_a_tablet_that_acknowledges_makes_one_order_seen_and_no_order_unseen(
    pair: Cluster, producer: AIOKafkaProducer, announcements: Announcements
) -> None:
    restaurant = restaurant_id()
    entry = pair.workers[0]
    client = await tablet(entry, restaurant)
    try:
        order = await new_order(producer, entry, restaurant)
        await wait_for_push(client, pair, restaurant, "NewOrder", order)
        await client.invoke("Acknowledge", order)
        await client.invoke("Acknowledge", order)  # a second tablet's ack, or a retry: still one OrderSeen
        seen = await announcements.wait_for(order, "OrderSeen")
        assert seen["RestaurantId"] == restaurant and seen["ConnectedTablets"] == 1 and seen["SeenAt"]
        assert seen["AnnouncementId"] == f"{order}:seen"

        seen_barrier = await new_order(producer, entry, restaurant)  # acknowledged after the repeat was applied
        await wait_for_push(client, pair, restaurant, "NewOrder", seen_barrier)
        await client.invoke("Acknowledge", seen_barrier)
        await announcements.wait_for(seen_barrier, "OrderSeen")
        unseen_barrier = await new_order(producer, entry, restaurant)  # never acknowledged: announced at its threshold
        await announcements.wait_for(unseen_barrier, "OrderUnseen")
        assert announcements.of(order) == [seen], "one OrderSeen, and no OrderUnseen for the order that was seen"
    finally:
        await client.close()


async def test_no_tablet_connected_is_announced_on_arrival_then_seen_follows(
    pair: Cluster, producer: AIOKafkaProducer, announcements: Announcements
) -> None:
    restaurant = restaurant_id()
    entry = pair.workers[0]
    order = await new_order(producer, entry, restaurant)
    unseen = await announcements.wait_for(order, "OrderUnseen")
    assert unseen["Reason"] == "no-tablet-connected" and unseen["Step"] == 0 and unseen["ConnectedTablets"] == 0
    assert unseen["PendingForSeconds"] < THRESHOLD, "announced on arrival, not at the threshold"
    assert unseen["ThresholdSeconds"] == 0 and unseen["CreatedAt"] and unseen["AnnouncementId"] == f"{order}:unseen:0"

    client = await tablet(entry, restaurant)
    try:
        await client.invoke("Acknowledge", order)
        seen = await announcements.wait_for(order, "OrderSeen")
        assert seen["ConnectedTablets"] == 1
    finally:
        await client.close()


async def test_a_tablet_that_never_acknowledges_gets_order_unseen_once_and_resolved_orders_none(
    pair: Cluster, producer: AIOKafkaProducer, announcements: Announcements
) -> None:
    restaurant = restaurant_id()
    entry = pair.workers[1]
    client = await tablet(entry, restaurant)
    try:
        accepted = await new_order(producer, entry, restaurant)
        rejected = await new_order(producer, entry, restaurant)
        # The upstream topics are not ordered with each other: a resolution read before its creation is remembered
        # and the order never shows (no push at all). Resolve only what the tablet has shown.
        await wait_for_push(client, pair, restaurant, "NewOrder", accepted)
        await wait_for_push(client, pair, restaurant, "NewOrder", rejected)
        await publish(producer, entry.topics.accepted, {"OrderId": accepted, "RestaurantId": restaurant})
        await publish(producer, entry.topics.rejected, {"OrderId": rejected, "RestaurantId": restaurant, "Reason": "x"})
        await wait_for_push(client, pair, restaurant, "OrderRejected", rejected)
        await wait_for_push(client, pair, restaurant, "OrderAccepted", accepted)

        ignored = await new_order(producer, entry, restaurant)
        unseen = await announcements.wait_for(ignored, "OrderUnseen")
        assert unseen["Reason"] == "not-acknowledged" and unseen["Step"] == 1 and unseen["ConnectedTablets"] == 1
        assert unseen["PendingForSeconds"] >= THRESHOLD and unseen["ThresholdSeconds"] == THRESHOLD

        barrier = await new_order(producer, entry, restaurant)
        await announcements.wait_for(barrier, "OrderUnseen")
        assert announcements.of(ignored) == [unseen], "announced once"
        assert announcements.of(accepted) == [] and announcements.of(rejected) == []
    finally:
        await client.close()


async def test_a_tablet_relayed_through_another_worker_counts_as_connected(
    pair: Cluster, producer: AIOKafkaProducer, announcements: Announcements
) -> None:
    """Every tablet of a restaurant ends on its owner's hub, so the owner's count is the cluster's."""
    first, second = pair.workers
    restaurant = restaurant_id()
    owner = (await pair.owner_of(restaurant)).rstrip("/")
    elsewhere = second if owner == first.base_url else first
    tablet_elsewhere = await PlainTablet.connect(elsewhere, restaurant)
    try:
        await tablet_elsewhere.wait_for("PendingOrders")
        order = await new_order(producer, elsewhere, restaurant)
        await tablet_elsewhere.wait_for(lambda m: m.get("type") == "NewOrder" and m["data"]["orderId"] == order)
        await tablet_elsewhere.send({"type": "ack", "orderId": order})
        seen = await announcements.wait_for(order, "OrderSeen")
        assert seen["ConnectedTablets"] == 1

        barrier = await new_order(producer, elsewhere, restaurant)
        await announcements.wait_for(barrier, "OrderUnseen")
        assert announcements.of(order, "OrderUnseen") == [], "no no-tablet-connected for a relayed tablet's order"
        assert announcements.of(barrier, "OrderUnseen")[0]["Reason"] == "not-acknowledged"
    finally:
        await tablet_elsewhere.close()


async def test_after_the_owner_is_killed_each_due_order_is_announced_exactly_once(
    pair: Cluster, producer: AIOKafkaProducer, announcements: Announcements
) -> None:
    """The owner announced some orders, then froze while others came due, then was killed: after the failover
    the survivor announces each due order once and repeats none of the recorded ones."""
    survivor, victim = pair.workers
    restaurants: list[str] = []
    while len(restaurants) < 3:
        candidate = restaurant_id()
        if (await pair.owner_of(candidate)).rstrip("/") == victim.base_url:
            restaurants.append(candidate)
    clients = [await tablet(victim, r) for r in restaurants]
    try:
        announced = [await new_order(producer, victim, r) for r in restaurants for _ in range(2)]
        for order in announced:
            await announcements.wait_for(order, "OrderUnseen")
        await eventually(
            lambda: victim.get_json("/api/worker/unseen?older_than=0s"),
            lambda answer: (
                sum(o.get("unseenStep") == 1 for o in answer[1]["orders"] if o["orderId"] in announced)
                == len(announced)
            ),
            what="the first orders' announcements recorded",
        )
        due = [await new_order(producer, victim, r) for r in restaurants for _ in range(2)]
        published_at = time.time()
        await eventually(
            lambda: victim.get_json("/api/worker/unseen?older_than=0s"),
            lambda answer: {o["orderId"] for o in answer[1]["orders"]} >= set(due),
            what="the second orders applied on the owner",
        )
        assert victim.process is not None
        victim.process.send_signal(signal.SIGSTOP)  # frozen before they come due: nobody announced them
        assert not any(announcements.of(order) for order in due), "announced before the freeze; threshold too short"
        await eventually(
            lambda: asyncio.sleep(0.1, time.time()), lambda now: now > published_at + THRESHOLD + 1, timeout=60
        )
        await victim.kill()

        for order in due:
            unseen = await announcements.wait_for(order, "OrderUnseen")
            assert unseen["Step"] == 1 and unseen["PendingForSeconds"] >= THRESHOLD
        for restaurant in restaurants:
            barrier = await new_order(producer, survivor, restaurant)
            await announcements.wait_for(barrier, "OrderUnseen")
        for order in announced + due:
            assert len(announcements.of(order)) == 1, f"{order}: {announcements.of(order)}"
    finally:
        for client in clients:
            await client.close()
