"""Order events published with a real Kafka client become pending orders on a real worker."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from partner_stream.dev.broker import EmbeddedBroker
from tests.conftest import new_worker, restaurant_id
from tests.support.polling import eventually
from tests.support.workers import Worker


def created(restaurant: str, order: str, *, camel: bool = False, **extra: Any) -> dict[str, Any]:
    body = {
        "OrderId": order,
        "RestaurantId": restaurant,
        "CustomerName": "Ana",
        "Items": [{"Name": "Pad Thai", "Quantity": 2, "UnitPrice": 9.5, "Notes": "no peanuts"}],
        "TotalPrice": 19.0,
        **extra,
    }
    return _camel(body) if camel else body


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


async def publish(producer: AIOKafkaProducer, topic: str, body: Any, key: bytes | None = None) -> None:
    value = body if isinstance(body, bytes) else orjson.dumps(body)
    await producer.send_and_wait(topic, value, key=key)


async def pending(worker: Worker, restaurant: str) -> dict[str, Any]:
    status, body = await worker.get_json(f"/api/restaurants/{restaurant}/pending-orders")
    assert status == 200, body
    return body


def order_ids(snapshot: dict[str, Any]) -> list[str]:
    return [o["orderId"] for o in snapshot["orders"]]


async def wait_for_orders(worker: Worker, restaurant: str, expected: list[str], **kw: Any) -> dict[str, Any]:
    return await eventually(
        lambda: pending(worker, restaurant),
        lambda snap: sorted(order_ids(snap)) == sorted(expected),
        what=f"orders {expected} for {restaurant}",
        **kw,
    )


async def test_pascal_case_event_becomes_pending_order(shared_worker: Worker, producer: AIOKafkaProducer) -> None:
    restaurant = restaurant_id()
    order = str(uuid.uuid4())
    await publish(producer, shared_worker.topics.created, created(restaurant, order), key=order.encode())

    snapshot = await wait_for_orders(shared_worker, restaurant, [order])

    (pending_order,) = snapshot["orders"]
    assert snapshot["seq"] == 1
    assert pending_order["customerName"] == "Ana"
    assert pending_order["items"] == [{"name": "Pad Thai", "quantity": 2, "unitPrice": 9.5, "notes": "no peanuts"}]
    assert pending_order["totalPrice"] == 19.0
    assert pending_order["createdAt"]  # filled from the Kafka timestamp when the producer omits it


async def test_camel_case_integer_ids_and_any_key_are_accepted(
    shared_worker: Worker, producer: AIOKafkaProducer
) -> None:
    restaurant_number = int(uuid.uuid4().int % 10**12)
    restaurant = str(restaurant_number)
    body = created(restaurant_number, 7, camel=True, unknownField={"x": 1})  # type: ignore[arg-type]
    await publish(producer, shared_worker.topics.created, body, key=None)
    await publish(producer, shared_worker.topics.created, created(restaurant, "8"), key=restaurant.encode())

    snapshot = await wait_for_orders(shared_worker, restaurant, ["7", "8"])
    assert snapshot["seq"] == 2


async def test_accept_and_reject_remove_orders(shared_worker: Worker, producer: AIOKafkaProducer) -> None:
    restaurant = restaurant_id()
    topics = shared_worker.topics
    for order in ("a", "b", "c"):
        await publish(producer, topics.created, created(restaurant, order))
    await wait_for_orders(shared_worker, restaurant, ["a", "b", "c"])

    await publish(producer, topics.accepted, {"OrderId": "a", "RestaurantId": restaurant})
    await publish(producer, topics.rejected, {"orderId": "c", "restaurantId": restaurant, "reason": "closed"})

    snapshot = await wait_for_orders(shared_worker, restaurant, ["b"])
    assert snapshot["seq"] == 5


async def test_duplicates_and_early_resolutions_are_idempotent(
    shared_worker: Worker, producer: AIOKafkaProducer
) -> None:
    restaurant = restaurant_id()
    topics = shared_worker.topics
    # The three upstream topics are not ordered with each other, so each step waits until the
    # worker has applied the previous one: otherwise the test measures the race, not the rules.
    # An accept for an order not seen yet changes nothing a tablet sees, only the table's memory.
    unchanged_accepts = await applied_events(shared_worker, kind="OrderAccepted", changed=False)
    await publish(producer, topics.accepted, {"OrderId": "early", "RestaurantId": restaurant})
    await eventually(
        lambda: applied_events(shared_worker, kind="OrderAccepted", changed=False),
        lambda count: count > unchanged_accepts,
        what="the early accept applied",
    )
    # Creates keyed by restaurant share one partition, so each wait below also covers the creates before it.
    key = restaurant.encode()
    await publish(producer, topics.created, created(restaurant, "dup"), key=key)
    await publish(producer, topics.created, created(restaurant, "dup"), key=key)
    await publish(producer, topics.created, created(restaurant, "gone"), key=key)
    await wait_for_orders(shared_worker, restaurant, ["dup", "gone"])
    await publish(producer, topics.rejected, {"OrderId": "gone", "RestaurantId": restaurant})
    await wait_for_orders(shared_worker, restaurant, ["dup"])
    # A late duplicate of a resolved order, then the early order's OrderCreated: neither shows.
    await publish(producer, topics.created, created(restaurant, "gone"), key=key)
    await publish(producer, topics.created, created(restaurant, "early"), key=key)
    await publish(producer, topics.created, created(restaurant, "last"), key=key)

    snapshot = await wait_for_orders(shared_worker, restaurant, ["dup", "last"])
    # dup, gone, gone's rejection, last: the duplicates and the early order never counted.
    assert snapshot["seq"] == 4


def key_on_other_partition(restaurant: str, partitions: int) -> bytes:
    """A record key the default partitioner puts on a partition that is not the restaurant's."""
    home = DefaultPartitioner()(restaurant.encode(), list(range(partitions)), [])
    for n in range(1000):
        key = f"order-{n}".encode()
        if DefaultPartitioner()(key, list(range(partitions)), []) != home:
            return key
    raise AssertionError("no key found")


async def routed_events(worker: Worker) -> dict[str, float]:
    routed = {"direct": 0.0, "rekeyed": 0.0}
    for sample in await worker.metric_samples("partner_stream_events_routed"):
        routed[sample.labels["route"]] = sample.value
    return routed


async def applied_events(worker: Worker, *, kind: str, changed: bool) -> float:
    samples = await worker.metric_samples("partner_stream_events_applied")
    wanted = {"kind": kind, "changed": str(changed)}
    return sum(s.value for s in samples if s.labels == wanted)


@pytest.mark.parametrize("keyed_by", ["restaurant", "other-partition"])
async def test_events_keyed_by_restaurant_skip_the_rekey_hop_and_others_take_it(
    shared_worker: Worker, producer: AIOKafkaProducer, keyed_by: str
) -> None:
    """Both routes deliver every event in order; /metrics tells operators which route their upstream takes."""
    restaurant = restaurant_id()
    topics = shared_worker.topics
    if keyed_by == "restaurant":
        key, route = restaurant.encode(), "direct"
    else:
        key, route = key_on_other_partition(restaurant, shared_worker.partitions), "rekeyed"
    before = await routed_events(shared_worker)

    for order in ("a", "b", "c"):
        await publish(producer, topics.created, created(restaurant, order), key=key)
    snapshot = await wait_for_orders(shared_worker, restaurant, ["a", "b", "c"])
    assert [o["orderId"] for o in snapshot["orders"]] == ["a", "b", "c"]  # one partition: in order
    # The upstream topics are not ordered with each other: accept once the creates are in.
    await publish(producer, topics.accepted, {"OrderId": "b", "RestaurantId": restaurant}, key=key)

    snapshot = await wait_for_orders(shared_worker, restaurant, ["a", "c"])
    assert snapshot["seq"] == 4
    after = await routed_events(shared_worker)
    assert after[route] - before[route] >= 4


async def test_unknown_restaurant_has_no_pending_orders(shared_worker: Worker) -> None:
    snapshot = await pending(shared_worker, restaurant_id())
    assert snapshot["orders"] == [] and snapshot["seq"] == 0


async def test_a_new_worker_answers_for_its_restaurants_after_a_dead_letter_and_runs_on_uvloop(
    broker: EmbeddedBroker,
    producer: AIOKafkaProducer,
    tmp_path: Path,
    artifacts_dir: Path,
) -> None:
    """The first thing a worker produces is a dead letter (a topic the producer did not know): aiokafka then
    narrows the producer's metadata to that topic, and Faust's owner lookup, which hashes with the producer,
    lost the table's topic: every operator query answered 500."""
    worker = new_worker(broker, tmp_path, artifacts_dir, "fresh")
    await worker.start()
    try:
        marker = uuid.uuid4().hex.encode()
        await producer.send_and_wait(worker.topics.created, b"not json", key=marker)
        await read_dead_letter(broker, worker.topics.dead_letter, marker)

        snapshot = await pending(worker, restaurant_id())
        assert snapshot["orders"] == [] and snapshot["seq"] == 0
        assert "event loop: uvloop.Loop" in worker.log_path.read_text()
    finally:
        await worker.stop()


@pytest.mark.parametrize(
    ("topic_attr", "value", "reason_fragment"),
    [
        ("created", b"this is not json", "not JSON"),
        ("created", b'{"OrderId": "x", "RestaurantId": "r"}', "CustomerName: Field required"),
        ("accepted", b'{"OrderId": "x", "RestaurantId": true}', "RestaurantId"),
        ("rejected", b"[1, 2]", "expected a JSON object"),
    ],
)
async def test_malformed_event_goes_to_dead_letter_topic_and_worker_continues(
    shared_worker: Worker,
    producer: AIOKafkaProducer,
    broker: EmbeddedBroker,
    topic_attr: str,
    value: bytes,
    reason_fragment: str,
) -> None:
    topics = shared_worker.topics
    source_topic = getattr(topics, topic_attr)
    marker = uuid.uuid4().hex.encode()
    record = await (await producer.send(source_topic, value, key=marker))
    restaurant = restaurant_id()
    await publish(producer, topics.created, created(restaurant, "after-bad"))

    await wait_for_orders(shared_worker, restaurant, ["after-bad"])
    dead = await read_dead_letter(broker, topics.dead_letter, marker)
    headers = dict(dead.headers)
    assert dead.value == value
    assert reason_fragment in headers["x-dead-letter-reason"].decode()
    assert headers["x-source-topic"].decode() == source_topic
    assert int(headers["x-source-partition"]) == record.partition
    assert int(headers["x-source-offset"]) == record.offset


async def read_dead_letter(broker: EmbeddedBroker, topic: str, key: bytes, timeout: float = 30.0) -> Any:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=50
    )
    await consumer.start()
    try:

        async def next_batch() -> list[Any]:
            batches = await consumer.getmany(timeout_ms=500)
            return [r for records in batches.values() for r in records if r.key == key]

        found = await eventually(next_batch, bool, timeout=timeout, interval=0, what="dead letter")
        return found[0]
    finally:
        await consumer.stop()
