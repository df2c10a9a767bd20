"""The pending-orders table's changelog records, handed straight to the Kafka producer in the order written.

Faust sends each changelog record through its own producer buffer: a ``FutureMessage``, a queue, a task that
publishes it through the topic, and a callback per record that stores the partition's offset in RocksDB. At
2-3 records per event that path was a third of a draining worker's time (docs/benchmarks.md, issue #14).
Here a write adds its records to an outbox, in the same event-loop step as the RocksDB batch, and the agent
hands them to the aiokafka producer before it moves on; the partition's offset is stored once per hand-over,
for its newest record.

What stays as Faust does it:
- an event is acknowledged only after its records are in the producer, and Faust flushes the producer before
  it commits an offset: a committed event's records were delivered (or their failure logged, below);
- records reach the producer in the order they were written, whichever agent wrote them: one hand-over at a
  time, each taking everything added before it;
- the offset persisted for a partition is that of a record the broker took.

A hand-over the producer refuses keeps its records, first in line, and the agent waits: nothing after the
event is acknowledged meanwhile. A buffer that stayed full for the request timeout is retried with back-off;
any other error stops the worker, as an error in Faust's own producer path did. An agent cancelled in the
middle (the worker stops) leaves the rest to a task of its own, which the stop does not cancel: Faust stops
its producer last. A record the broker finally fails is logged: Faust's flush before a commit does not look
at delivery results, with its own path or this one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from partner_stream.faust_patches.producer import DroppedWhileFenced

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
        crash: Callable[[BaseException], Awaitable[None]] | None = None,
    ) -> None:
        self._producer = producer  # the aiokafka producer (Faust creates it once the app starts)
        self._topic = topic
        self._on_sent = on_sent  # told each partition's newest record of a hand-over, once the broker took it
        self._crash = crash  # stops the worker on an error no retry can mend (Faust's own path crashed it too)
        self._records: list[Record] = []
        self._handing_over = asyncio.Lock()
        self._discards = 0  # how many times the outbox was emptied for a wipe: records taken before it are void
        self._rescue: asyncio.Task[None] | None = None

    def add(self, partition: int, key: bytes, value: bytes | None) -> None:
        self._records.append((partition, key, value))

    def discard(self) -> None:
        """Forget every record not handed over yet, and any a hand-over in progress would put back: the store they
        were written to is being wiped, and the events they came from are read again."""
        self._records = []
        self._discards += 1

    def __len__(self) -> int:
        return len(self._records)

    async def hand_over(self) -> None:
        """Return once every record added before the call is in the producer's buffer.

        A producer that stays full past its request timeout is waited for with back-off; any other error stops
        the worker, and this never returns, so the event is not acknowledged and is read again after a restart.
        """
        if not self._records and not self._handing_over.locked():
            return
        try:
            await self._handing_over.acquire()
        except asyncio.CancelledError:
            self._rescue_the_rest()
            raise
        try:
            delay = RETRY_FIRST
            while self._records:
                try:
                    await self._hand_over_taken()
                except asyncio.CancelledError:
                    self._rescue_the_rest()
                    raise
                except Exception as exc:  # kept, never dead-lettered: the producer's failure is not the event's fault
                    log.error("could not hand %d changelog records to the producer: %r", len(self), exc)
                    if not isinstance(exc, KafkaTimeoutError) and self._crash is not None:
                        await self._crash(exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_LAST)
        finally:
            self._handing_over.release()

    def _rescue_the_rest(self) -> None:
        """The agent is being cancelled (the worker stops): hand over what is left in a task of its own."""
        if self._records and (self._rescue is None or self._rescue.done()):
            self._rescue = asyncio.get_running_loop().create_task(self._hand_over_what_is_left())

    async def _hand_over_what_is_left(self) -> None:
        async with self._handing_over:
            while self._records:
                try:
                    await self._hand_over_taken()
                except Exception as exc:  # the worker is stopping: say what stays unsent
                    log.error("stopping with %d changelog records not handed to the producer: %r", len(self), exc)
                    return

    async def _hand_over_taken(self) -> None:
        """Send what is in the outbox now; what was not sent when this raises goes back in front of the outbox."""
        producer, topic = self._producer(), self._topic()  # before taking anything: either may raise
        records, self._records = self._records, []
        discards = self._discards
        newest: dict[int, asyncio.Future[Any]] = {}
        sent = 0
        try:
            for partition, key, value in records:
                future = await producer.send(topic, value, key=key, partition=partition)
                future.add_done_callback(retrieve_failure)
                newest[partition] = future
                sent += 1
        finally:
            if sent < len(records) and discards == self._discards:
                self._records[:0] = records[sent:]
            for future in newest.values():
                future.add_done_callback(self._when_delivered)

    def _when_delivered(self, future: asyncio.Future[Any]) -> None:
        """A partition's newest record of a hand-over was delivered or failed (its batch fails with it)."""
        if future.cancelled():
            return
        failure = future.exception()
        if failure is None:
            self._on_sent(future)
        elif not isinstance(failure, DroppedWhileFenced):
            # Faust's flush before a commit does not look at delivery results: say it, as Faust's path did.
            log.error("changelog records were not delivered; the table may lack them after a failover: %r", failure)


def retrieve_failure(sent: asyncio.Future[Any]) -> None:
    """Nobody awaits a changelog record's delivery, and asyncio would log each failed one as "exception never
    retrieved" (a fenced worker drops a whole buffer of them: partner_stream/faust_patches/producer.py)."""
    if not sent.cancelled():
        sent.exception()
