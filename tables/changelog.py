"""The pending-orders table's changelog records, handed straight to the Kafka producer in the order written.

Faust sends each changelog record through its own producer buffer: a ``FutureMessage``, a queue, a task that
publishes it through the topic, and a callback per record that stores the partition's offset in RocksDB. At
2-3 records per event that path was a third of a draining worker's time (docs/benchmarks.md, issue #14).
Here a write adds its records to an outbox, in the same event-loop step as the RocksDB batch, and the agent
hands them to the aiokafka producer before it moves on; the partition's offset is stored once per hand-over,
for its newest record.

What stays as Faust does it:
- an event is acknowledged only after its records are in the producer, and Faust flushes the producer before
  it commits an offset: a committed event's records are in the changelog;
- records reach the producer in the order they were written, whichever agent wrote them: one hand-over at a
  time, each taking everything added before it;
- the offset persisted for a partition is that of a record the broker took.

A hand-over the producer refuses (its buffer stayed full for the request timeout) keeps its records, first
in line, and retries with back-off: the agent waits, and nothing after the event is acknowledged meanwhile.
An agent cancelled in the middle (the worker stops) leaves the rest to a task of its own, which the stop
does not cancel: Faust stops its producer last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Back-off between attempts to hand over records the producer refused: from the first to the last, doubling.
RETRY_FIRST = 0.5
RETRY_LAST = 10.0

Record = tuple[int, bytes, bytes | None]  # (partition, key, value or None for a deletion)


class ChangelogOutbox:
    """Records a write added and no hand-over has taken yet (see the module docstring)."""

    def __init__(
        self,
        producer: Callable[[], Any],
        topic: Callable[[], str],
        on_sent: Callable[[asyncio.Future[Any]], None],
    ) -> None:
        self._producer = producer  # the aiokafka producer (Faust creates it once the app starts)
        self._topic = topic
        self._on_sent = on_sent  # told each partition's newest record of a hand-over, once the broker took it
        self._records: list[Record] = []
        self._handing_over = asyncio.Lock()
        self._rescue: asyncio.Task[None] | None = None

    def add(self, partition: int, key: bytes, value: bytes | None) -> None:
        self._records.append((partition, key, value))

    def discard(self) -> int:
        """Forget every record not handed over yet (the store they were written to is being wiped)."""
        dropped = len(self._records)
        self._records = []
        return dropped

    def __len__(self) -> int:
        return len(self._records)

    async def hand_over(self) -> None:
        """Return once every record added before the call is in the producer's buffer."""
        if not self._records:
            return
        async with self._handing_over:
            delay = RETRY_FIRST
            while self._records:
                try:
                    await self._hand_over_taken()
                except asyncio.CancelledError:
                    self._rescue = asyncio.get_running_loop().create_task(self._hand_over_once())
                    raise
                except Exception as exc:  # kept and retried: the producer's refusal is not the event's fault
                    log.error("could not hand %d changelog records to the producer, retrying: %r", len(self), exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_LAST)

    async def _hand_over_once(self) -> None:
        async with self._handing_over:
            try:
                await self._hand_over_taken()
            except Exception as exc:  # the worker is stopping: say what stays unsent
                log.error("stopping with %d changelog records not handed to the producer: %r", len(self), exc)

    async def _hand_over_taken(self) -> None:
        """Send what is in the outbox now; what was not sent when this raises goes back in front of the outbox."""
        records, self._records = self._records, []
        producer, topic = self._producer(), self._topic()
        newest: dict[int, asyncio.Future[Any]] = {}
        sent = 0
        try:
            for partition, key, value in records:
                future = await producer.send(topic, value, key=key, partition=partition)
                future.add_done_callback(retrieve_failure)
                newest[partition] = future
                sent += 1
        finally:
            if sent < len(records):
                self._records[:0] = records[sent:]
            for future in newest.values():
                future.add_done_callback(self._when_taken)

    def _when_taken(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._on_sent(future)


def retrieve_failure(sent: asyncio.Future[Any]) -> None:
    """A record a fenced worker dropped fails its future (partner_stream/faust_patches/producer.py); nobody awaits
    it, and asyncio would log each one as "exception never retrieved"."""
    if not sent.cancelled():
        sent.exception()
