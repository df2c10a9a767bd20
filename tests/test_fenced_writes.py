"""A fenced worker holds its writes: it drops the changelog records it buffered, applies and commits nothing,
and asks for a rebalance if the group never dropped it (partner_stream/fencing.py, runtime.py, faust_patches)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import REGISTRY

from partner_stream import agents, runtime
from partner_stream.client_logs import limit_library_logs
from partner_stream.faust_patches.producer import DroppedWhileFenced, drop_changelog_while_held, dropped_while_fenced
from partner_stream.faust_patches.transport import TunedFetchConsumer
from partner_stream.fencing import Fence
from partner_stream_tables.memory import MemoryTable
from partner_stream_tables.storage import WritesHeld
from tests.test_agents import DeadLetters, internal_created

CHANGELOG = TopicPartition("ps-pending-orders-changelog", 3)
UPSTREAM = TopicPartition("order-created", 1)


class OneBroker:
    def leader_for_partition(self, tp: TopicPartition) -> int:
        return 0


@dataclass
class FaustProducer:
    """What drop_changelog_while_held reaches: Faust's producer wraps aiokafka's, which owns the accumulator."""

    _producer: Any


@dataclass
class AiokafkaProducer:
    _message_accumulator: MessageAccumulator


async def test_a_fenced_worker_drops_its_queued_changelog_batches_and_nothing_else() -> None:
    # Batch size 1, as on the embedded broker: a second record waits for the first batch to be drained.
    accumulator = MessageAccumulator(OneBroker(), 1, 0, batch_ttl=30.0)
    held = True
    dropped: list[int] = []
    producer = FaustProducer(AiokafkaProducer(accumulator))
    for _ in range(2):  # installed once, however often the heartbeat watch calls it
        drop_changelog_while_held(producer, lambda: {CHANGELOG.topic}, lambda: held, dropped.append)

    first = await accumulator.add_message(CHANGELOG, b"42", b"a record buffered before the fence", timeout=5.0)
    behind = asyncio.create_task(accumulator.add_message(CHANGELOG, b"42", b"one more", timeout=5.0))
    upstream = await accumulator.add_message(UPSTREAM, b"42", b"a dead letter, say", timeout=5.0)
    await asyncio.sleep(0)  # the second record now waits for room

    nodes, _ = accumulator.drain_by_nodes(ignore_nodes=set())
    assert list(nodes[0]) == [UPSTREAM]  # only the changelog is held back
    assert isinstance(first.exception(), DroppedWhileFenced) and dropped == [1]
    second = await behind  # released, not failed: Faust's producer buffer would crash on an exception here
    assert not second.done()
    accumulator.drain_by_nodes(ignore_nodes=set())
    assert isinstance(second.exception(), DroppedWhileFenced) and dropped == [1, 1]

    held = False
    third = await accumulator.add_message(CHANGELOG, b"42", b"after the rebuild", timeout=5.0)
    nodes, _ = accumulator.drain_by_nodes(ignore_nodes=set())
    assert list(nodes[0]) == [CHANGELOG] and not third.done()
    assert not upstream.done()


@dataclass
class App:
    fence: Fence


async def test_nothing_is_committed_while_writes_are_held(monkeypatch: pytest.MonkeyPatch) -> None:
    committed: list[Any] = []

    async def commit(self: Any, offsets: Any) -> bool:
        committed.append(offsets)
        return True

    monkeypatch.setattr(faust_aiokafka.Consumer, "_commit", commit)
    consumer = object.__new__(TunedFetchConsumer)
    fence = Fence(silence_limit=4.5)
    consumer.app = App(fence)  # type: ignore[assignment]
    fence.heartbeat_succeeded(now=0.0)
    fence.check(now=5.0)
    assert await consumer._commit({UPSTREAM: 18}) is False and committed == []
    fence.release_writes()
    assert await consumer._commit({UPSTREAM: 18}) is True and committed == [{UPSTREAM: 18}]


def left_while_fenced() -> float:
    return REGISTRY.get_sample_value("partner_stream_events_left_while_fenced_total") or 0.0


async def test_a_fenced_worker_applies_forwards_and_dead_letters_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    table = MemoryTable()
    table.writes_held = lambda: True
    dead_letters = DeadLetters()
    pushed: list[Any] = []
    monkeypatch.setattr(agents, "pending_orders", table)
    monkeypatch.setattr(agents, "dead_letter_topic", dead_letters)
    monkeypatch.setattr(agents, "change_listeners", [lambda r, c: pushed.append(c)])
    before = left_while_fenced()

    await agents.handle_internal(internal_created("o1"))
    bad = internal_created("o2")
    bad.message.value = b"not json"
    await agents.handle_internal(bad)

    assert table.data == {} and pushed == [] and dead_letters.sent == []
    assert left_while_fenced() == before + 2
    table.writes_held = lambda: False
    await agents.handle_internal(internal_created("o1"))  # read again after the rebuild: applied then
    assert [o.order_id for o in table.state_of("42").pending] == ["o1"]


async def test_a_fence_between_the_check_and_the_write_leaves_the_event_for_the_rejoin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table refuses the write (WritesHeld): the event is left like any other, never dead-lettered as poison."""

    class FencedAtTheWrite(MemoryTable):
        def write(self, outcome: Any, generation: int = 0, partition: int = 0, source: object = None) -> None:
            raise WritesHeld("fenced")

    dead_letters = DeadLetters()
    monkeypatch.setattr(agents, "pending_orders", FencedAtTheWrite())
    monkeypatch.setattr(agents, "dead_letter_topic", dead_letters)
    before = left_while_fenced()
    await agents.handle_internal(internal_created("o1"))
    assert dead_letters.sent == [] and left_while_fenced() == before + 1


def test_heartbeats_back_without_a_rebalance_ask_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[object] = []
    monkeypatch.setattr(runtime, "request_rejoin", asked.append)
    monkeypatch.setattr(runtime.app.fence, "local_state_suspect", False)
    runtime.rejoin_unless_a_rebalance_followed()
    assert asked == []  # a rebalance already rebuilt the table
    monkeypatch.setattr(runtime.app.fence, "local_state_suspect", True)
    runtime.rejoin_unless_a_rebalance_followed()
    assert asked == [runtime.app.consumer]


def test_faust_warns_not_once_per_dropped_record(caplog: pytest.LogCaptureFixture) -> None:
    limit_library_logs()
    logger = logging.getLogger("faust.topics")
    with caplog.at_level(logging.WARNING, logger="faust.topics"):
        logger.warning(f"_on_published error for message topic x error {dropped_while_fenced()} message <...>")
        logger.warning("_on_published error for message topic x error MessageSizeTooLargeError message <...>")
    assert [r.getMessage() for r in caplog.records] == [
        "_on_published error for message topic x error MessageSizeTooLargeError message <...>"
    ]


async def test_writes_are_released_when_the_rebalance_after_the_fence_has_rebuilt_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fence = Fence(silence_limit=4.5)
    monkeypatch.setattr(runtime.app, "fence", fence)
    fence.heartbeat_succeeded(now=0.0)
    fence.check(now=5.0)
    fence.heartbeat_succeeded(now=6.0)
    fence.check(now=6.0)
    await runtime.write_again_once_rebuilt(None)
    assert fence.writes_held  # heard from the group, but no rebalance has rebuilt the table yet
    fence.local_state_suspect = False  # the revoke of the next rebalance emptied the store
    await runtime.write_again_once_rebuilt(None)
    assert not fence.writes_held  # before Faust resumes the partitions: no event of the new assignment is skipped
