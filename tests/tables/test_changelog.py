"""The changelog outbox hands a table's records to the producer in the order written, and loses none when the
producer refuses or the agent is cancelled halfway (tables/changelog.py). The real producer path runs in every
integration test."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, ProducerClosed

from partner_stream_tables import changelog
from partner_stream_tables.changelog import ChangelogOutbox


class Producer:
    """aiokafka's ``send`` as the outbox uses it: a coroutine returning the record's delivery future."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, bytes | None]] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.refusals: list[Exception] = []  # the next sends raise these, in turn
        self.gate: asyncio.Event | None = None  # while set and clear, a send waits (a full batch waiting to drain)

    async def send(self, topic: str, value: bytes | None, *, key: bytes, partition: int) -> asyncio.Future[Any]:
        if self.gate is not None:
            await self.gate.wait()
        if self.refusals:
            raise self.refusals.pop(0)
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
    """A buffer full past the request timeout is waited out; the event is held, never dead-lettered."""
    monkeypatch.setattr(changelog, "RETRY_FIRST", 0.0)
    producer, taken = Producer(), []
    outbox = outbox_for(producer, taken)
    for n in range(3):
        outbox.add(0, f"k{n}".encode(), b"v")
    producer.refusals = [KafkaTimeoutError(), KafkaTimeoutError()]
    await outbox.hand_over()
    assert [key for _, key, _ in producer.sent] == [b"k0", b"k1", b"k2"] and len(outbox) == 0


async def test_any_other_producer_error_stops_the_worker_and_keeps_the_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """As an error in Faust's own producer path did; the event is not acknowledged, so it is read again."""
    monkeypatch.setattr(changelog, "RETRY_FIRST", 0.0)
    producer, taken, crashes = Producer(), [], []

    async def crash(exc: BaseException) -> None:
        crashes.append(exc)

    outbox = ChangelogOutbox(producer=lambda: producer, topic=lambda: "changelog", on_sent=taken.append, crash=crash)
    outbox.add(0, b"k", b"v")
    producer.refusals = [ProducerClosed()]
    await outbox.hand_over()  # here the crash stops nothing, so the retry gets through
    assert [type(exc) for exc in crashes] == [ProducerClosed] and [key for _, key, _ in producer.sent] == [b"k"]


async def test_a_producer_not_there_yet_takes_nothing_out_of_the_outbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changelog, "RETRY_FIRST", 0.0)
    producer, taken = Producer(), []
    attempts: list[int] = []

    def the_producer() -> Producer:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("producer not started")
        return producer

    outbox = ChangelogOutbox(producer=the_producer, topic=lambda: "changelog", on_sent=taken.append)
    outbox.add(0, b"k", b"v")
    await outbox.hand_over()
    assert [key for _, key, _ in producer.sent] == [b"k"]


@pytest.mark.parametrize("wiped", [False, True])
async def test_an_agent_cancelled_halfway_leaves_the_rest_to_a_task_the_stop_does_not_cancel(wiped: bool) -> None:
    """Unless the store the records were written to was wiped meanwhile: the events are read again after the
    rejoin, and the records must not reach the changelog after the new owner's."""
    producer, taken = Producer(), []
    outbox = outbox_for(producer, taken)
    producer.gate = asyncio.Event()
    outbox.add(0, b"a", b"1")
    outbox.add(1, b"b", b"2")
    agent = asyncio.create_task(outbox.hand_over())
    await asyncio.sleep(0)  # waiting in the first send
    if wiped:
        outbox.discard()
    agent.cancel()
    with pytest.raises(asyncio.CancelledError):
        await agent
    producer.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [key for _, key, _ in producer.sent] == ([] if wiped else [b"a", b"b"]) and len(outbox) == 0


async def test_a_failed_record_is_retrieved_and_persists_no_offset() -> None:
    producer, taken = Producer(), []
    outbox = outbox_for(producer, taken)
    outbox.add(0, b"a", b"1")
    await outbox.hand_over()
    producer.futures[0].set_exception(RuntimeError("dropped by a fenced worker"))
    await asyncio.sleep(0)
    assert taken == []
