"""On the real embedded broker: producers writing one partition side by side, a consumer reading meanwhile.

Tansu shows a batch's offset before it has stored the batch, so a plain aiokafka consumer here steps over
a few offsets and never reads them (1-3 of 8,001 in this setup). This is what the workers do to each
restaurant partition when several of them re-key events into it; with the worker's fetch patch
(partner_stream/faust_patches/offset_holes.py) every record must be read, once and in order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

from partner_stream.dev.broker import EmbeddedBroker
from partner_stream.faust_patches import offset_holes
from partner_stream.settings import EMBEDDED_FETCH_MAX_WAIT_MS

PRODUCERS = 4
RECORDS_EACH = 2_000


@pytest.fixture
def fetch_stops_at_holes() -> Iterator[None]:
    offset_holes.install()
    yield
    offset_holes.uninstall()


async def produce(broker: EmbeddedBroker, tp: TopicPartition, name: str) -> None:
    """One record per batch and no linger: as many batches as records, so as many chances for the race."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, max_batch_size=1, linger_ms=0)
    await producer.start()
    try:
        for n in range(RECORDS_EACH):
            await producer.send(tp.topic, f"{name}-{n}".encode(), partition=tp.partition)
            if n % 50 == 0:
                await asyncio.sleep(0)  # let the other producers interleave
        await producer.flush()
    finally:
        await producer.stop()


async def read_until(consumer: AIOKafkaConsumer, tp: TopicPartition, total: int, deadline: float) -> list[int]:
    offsets: list[int] = []
    while time.monotonic() < deadline and (not offsets or offsets[-1] < total - 1):
        fetched = await consumer.getmany(tp, timeout_ms=100)
        offsets.extend(record.offset for record in fetched.get(tp, ()))
    return offsets


#: The race needs luck: a round usually meets 2-4 holes, so a few rounds are enough to meet one for sure.
MAX_ROUNDS = 5


async def one_round(broker: EmbeddedBroker) -> tuple[list[int], int]:
    """Every offset the consumer read from a fresh topic, and how many there are."""
    tp = TopicPartition(f"holes-{uuid.uuid4().hex[:8]}", 0)
    first = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await first.start()
    await first.send_and_wait(tp.topic, b"first", partition=tp.partition)  # creates the topic
    await first.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=EMBEDDED_FETCH_MAX_WAIT_MS
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        total = 1 + PRODUCERS * RECORDS_EACH
        reading = asyncio.create_task(read_until(consumer, tp, total, time.monotonic() + 120))
        await asyncio.gather(*(produce(broker, tp, f"p{n}") for n in range(PRODUCERS)))
        return await reading, total
    finally:
        await consumer.stop()


def holes_waited() -> float:
    return REGISTRY.get_sample_value("partner_stream_broker_offset_holes_total", {"outcome": "waited"}) or 0.0


@pytest.mark.usefixtures("fetch_stops_at_holes")
async def test_a_consumer_reads_every_offset_while_producers_write_one_partition_side_by_side(
    broker: EmbeddedBroker,
) -> None:
    before = holes_waited()
    for _ in range(MAX_ROUNDS):
        offsets, total = await one_round(broker)
        assert offsets == list(range(total))
        if holes_waited() > before:
            break
    assert holes_waited() > before, f"no hole in {MAX_ROUNDS} rounds: the race was not exercised"
