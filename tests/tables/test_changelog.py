"""The changelog outbox hands a table's records to the producer in the order written, and loses none when the
producer refuses or the agent is cancelled halfway (tables/changelog.py). The real producer path runs in every
integration test."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from partner_stream_tables import changelog
from partner_stream_tables.changelog import ChangelogOutbox


class Producer:
    """aiokafka's ``send`` as the outbox uses it: a coroutine returning the record's delivery future."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, bytes | None]] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.refusals = 0  # the next sends raise, as a buffer full past the request timeout does
        self.gate: asyncio.Event | None = None  # while set and clear, a send waits (a full batch waiting to drain)

    async def send(self, topic: str, value: bytes | None, *, key: bytes, partition: int) -> asyncio.Future[Any]:
        if self.gate is not None:
            await self.gate.wait()
        if self.refusals:
            self.refusals -= 1
            raise TimeoutError("buffer full")
        self.sent.append((partition, key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future

    def acknowledge_all(self) -> None:
        for offset, future in enumerate(self.futures):
            if not future.done():
                future.set_result(offset)


def outbox_for(producer: Producer, taken: list[Any]) -> ChangelogOutbox:
    return ChangelogOutbox(producer=lambda: producer, topic=lambda: "changelog", on_sent=lambda f: taken.append(f))


async def test_records_of_writes_go_out_in_the_order_written_and_the_newest_of_each_partition_is_persisted() -> None:
    producer, taken = Producer(), []
    outbox = outbox_for(producer, taken)
    outbox.add(0, b"o1", b"order")
    outbox.add(1, b"r2", None)
    outbox.add(0, b"h1", b"head")
    await outbox.hand_over()
    assert producer.sent == [(0, b"o1", b"order"), (1, b"r2", None), (0, b"h1", b"head")] and len(outbox) == 0
    producer.acknowledge_all()
    await asyncio.sleep(0)  # done callbacks run on the next loop step
    assert sorted(future.result() for future in taken) == [1, 2]  # the newest record of partitions 1 and 0


async def test_a_second_agent_waits_behind_a_hand_over_in_progress_so_records_keep_their_order() -> None:
    producer, taken = Producer(), []
    outbox = outbox_for(producer, taken)
    producer.gate = asyncio.Event()
    outbox.add(0, b"first", b"1")
    first = asyncio.create_task(outbox.hand_over())
    await asyncio.sleep(0)  # first is waiting in send
    outbox.add(0, b"second", b"2")
    second = asyncio.create_task(outbox.hand_over())
    await asyncio.sleep(0)
    assert not second.done()  # returning now would let its event be acknowledged before its record is sent
    producer.gate.set()
    await asyncio.gather(first, second)
    assert [key for _, key, _ in producer.sent] == [b"first", b"second"]


async def test_records_the_producer_refuses_are_kept_first_in_line_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changelog, "RETRY_FIRST", 0.0)
    producer, taken = Producer(), []
    outbox = outbox_for(producer, taken)
    for n in range(3):
        outbox.add(0, f"k{n}".encode(), b"v")
    producer.refusals = 2
    await outbox.hand_over()
    assert [key for _, key, _ in producer.sent] == [b"k0", b"k1", b"k2"] and len(outbox) == 0


async def test_an_agent_cancelled_halfway_leaves_the_rest_to_a_task_the_stop_does_not_cancel() -> None:
    producer, taken = Producer(), []
    outbox = outbox_for(producer, taken)
    producer.gate = asyncio.Event()
    outbox.add(0, b"a", b"1")
    outbox.add(1, b"b", b"2")
    agent = asyncio.create_task(outbox.hand_over())
    await asyncio.sleep(0)
    agent.cancel()
    with pytest.raises(asyncio.CancelledError):
        await agent
    producer.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [key for _, key, _ in producer.sent] == [b"a", b"b"] and len(outbox) == 0


async def test_a_failed_record_is_retrieved_and_persists_no_offset() -> None:
    producer, taken = Producer(), []
    outbox = outbox_for(producer, taken)
    outbox.add(0, b"a", b"1")
    await outbox.hand_over()
    producer.futures[0].set_exception(RuntimeError("dropped by a fenced worker"))
    await asyncio.sleep(0)
    assert taken == []
