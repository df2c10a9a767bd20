"""The worker's fetch never lets aiokafka drain a paused partition's backlog (issue #17).

Faust hands aiokafka its live set of active partitions and empties it mid-fetch during a takeover;
aiokafka reads an empty set as "every partition", drains the stream partitions' backlog and moves
their positions past it, and Faust drops those records. These tests play aiokafka's fetcher with
exactly that rule.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from partner_stream.faust_patches.transport import TunedFetchConsumerThread

STREAM = TP("order-created", 0)
CHANGELOG = TP("ps-pending-orders-changelog", 0)


@dataclass
class Record:
    offset: int


@dataclass
class FakeFetcher:
    """aiokafka's ``fetched_records`` rule: a falsy ``partitions`` means every buffered partition."""

    buffered: dict[TP, list[Record]]
    asked: list[frozenset[TP]] = field(default_factory=list)
    during_wait: Any = None
    _closed: bool = False

    @property
    def _subscriptions(self) -> Any:
        return self

    @contextlib.contextmanager
    def fetch_context(self) -> Iterator[None]:
        yield

    async def fetched_records(self, partitions: Any, timeout: float | None = None, max_records: int | None = None):
        self.asked.append(frozenset(partitions))
        if self.during_wait is not None:
            self.during_wait()  # Faust mutates its live set while the fetch waits
        await asyncio.sleep(0)
        return {tp: records for tp, records in self.buffered.items() if not partitions or tp in partitions}


@dataclass
class FakeAIOKafkaConsumer:
    _fetcher: FakeFetcher
    sought: list[tuple[TP, int]] = field(default_factory=list)
    _closed: bool = False

    def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))


@dataclass
class FakeFaustConsumer:
    _active_partitions: set[TP]
    _buffered_partitions: set[TP] = field(default_factory=set)
    flow_active: bool = True


def thread_for(faust_consumer: FakeFaustConsumer) -> TunedFetchConsumerThread:
    thread = TunedFetchConsumerThread.__new__(TunedFetchConsumerThread)  # only _fetch_records is exercised
    thread.consumer = faust_consumer  # type: ignore[assignment]
    return thread


async def test_a_partition_paused_while_the_fetch_waits_gets_its_records_back() -> None:
    live = {STREAM, CHANGELOG}
    fetcher = FakeFetcher({STREAM: [Record(103), Record(104)], CHANGELOG: [Record(7)]})
    fetcher.during_wait = lambda: live.difference_update({STREAM, CHANGELOG})  # a takeover pauses everything
    consumer = FakeAIOKafkaConsumer(fetcher)
    records = await thread_for(FakeFaustConsumer(live))._fetch_records(consumer, live)  # type: ignore[arg-type]
    assert records == {}
    assert fetcher.asked == [frozenset({STREAM, CHANGELOG})]  # never the emptied live set
    assert set(consumer.sought) == {(CHANGELOG, 7), (STREAM, 103)}  # fetched again from the first record


async def test_an_empty_set_of_active_partitions_fetches_nothing() -> None:
    fetcher = FakeFetcher({STREAM: [Record(103)]})
    consumer = FakeAIOKafkaConsumer(fetcher)
    records = await thread_for(FakeFaustConsumer(set()))._fetch_records(consumer, set())  # type: ignore[arg-type]
    assert records == {} and fetcher.asked == [] and consumer.sought == []


async def test_records_of_partitions_still_read_pass_through() -> None:
    live = {STREAM}
    fetcher = FakeFetcher({STREAM: [Record(103)], CHANGELOG: [Record(7)]})
    consumer = FakeAIOKafkaConsumer(fetcher)
    records = await thread_for(FakeFaustConsumer(live))._fetch_records(consumer, live)  # type: ignore[arg-type]
    assert records == {STREAM: [Record(103)]} and consumer.sought == []
