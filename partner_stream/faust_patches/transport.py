"""The Faust Kafka transport of the worker's consumer: a fetch that cannot swallow a partition's backlog.

Seven changes to faust-streaming 0.15.3's aiokafka consumer, and nothing else (producers
and every other setting stay stock Faust). It is registered under its own URL scheme and used
for the consumer (``broker_consumer``) on every profile.

* **The fetch asks for a frozen set of partitions.** Faust hands aiokafka its *live* set of
  active partitions and keeps changing it while the fetch waits: during a takeover it pauses
  the changelog partitions it has finished reading and the set is briefly empty. aiokafka reads
  an empty set as "every partition" (``if partitions and tp not in partitions``), drains the
  buffered backlog of the stream partitions, moves their positions past it, and Faust then
  drops those records because their partitions are not active. Those orders were never
  applied (issue #17: orders produced during back-to-back rebalances). Here the fetch works
  on a copy, an empty copy fetches nothing, and records of partitions paused while the fetch
  waited are given back (their partition is sought back to the first of them).
* **A configurable fetch max wait.** Faust hard-codes ``fetch_max_wait_ms=1500``. That is
  harmless on Apache Kafka, whose long poll returns as soon as data arrives, but the embedded
  Tansu broker only re-polls after sleeping half the remaining wait, so every hop costs up to
  0.75 s.
* **On the embedded broker, the fetch wait follows the traffic**: 5 ms while records flow, 50 ms once
  idle (fetch_pace.py).
* **On the embedded broker, a fetch stops at an offset the broker has not stored yet** instead of
  stepping over it for good (offset_holes.py).
* **On the embedded broker, a partition's end is where its newest stored batch ends**: Tansu's
  ListOffsets counts that batch as one record, and table recovery would stop short (end_offsets.py).
* **A record is handed to the agents inline when nothing can make that wait.** Faust's fetch loop
  delivers each record under ``wait_first(on_message(record), suspend_flow.wait())``: four tasks
  and an ``asyncio.wait`` per record (the delivery, and waits for a suspended flow, a stop and a
  crash), so that a rebalance can interrupt a delivery that blocks. ``on_message`` blocks only on
  a suspended flow, the conductor's resubscription lock, a full producer buffer or a full agent
  queue; when none of these holds (checked right before, nothing runs in between) the delivery
  is awaited inline, and otherwise Faust's way runs. It was ~10 % of a draining worker's time.
* **No commit while the worker holds its writes** (partner_stream/fencing.py). A fenced worker
  leaves events unapplied and drops changelog records it had buffered (producer.py); their
  offsets must stay uncommitted, so that whoever owns the partition next reads them again.
  Faust flushes the producer before it commits, and a flush ends when the dropped records fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Set
from typing import Any

import aiokafka
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults
from yarl import URL

from . import end_offsets, fetch_pace, offset_holes

SCHEME = "partner-kafka"
_EVENT_WAIT = asyncio.Event.wait.__code__
_KAFKA_SCHEMES = {"kafka", "aiokafka"}


class TunedFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # aiokafka reads this attribute when the consumer starts and builds its Fetcher.
            consumer._fetch_max_wait_ms = int(wait_ms)
        hole_grace = getattr(self.app, "offset_hole_grace", None)
        if hole_grace is not None and not offset_holes.installed():
            offset_holes.install(hole_grace)
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        if getattr(self.app, "paced_fetch", False):
            pace = fetch_pace.FetchPace(busy_ms=int(self.app.fetch_max_wait_ms))
            fetch_pace.pace_fetcher(self._consumer._fetcher, pace)

    async def _highwaters(self, partitions: list[Any]) -> Any:
        """Faust's end offsets (ListOffsets); on the embedded broker, where its newest stored batch ends."""
        listed = await super()._highwaters(partitions)
        if not getattr(self.app, "true_end_offsets", False):
            return listed
        return await end_offsets.stored_end_offsets(self._ensure_consumer()._client, listed)

    async def _fetch_records(
        self,
        consumer: aiokafka.AIOKafkaConsumer,
        active_partitions: Set[Any],
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> dict[Any, list[Any]]:
        """Faust's fetch, on a frozen copy of the active partitions (see the module docstring)."""
        wanted = frozenset(active_partitions)
        if not wanted:
            return {}  # never "every partition"
        records = await super()._fetch_records(consumer, wanted, timeout=timeout, max_records=max_records)
        return give_back_paused(consumer, records, self.consumer)


def give_back_paused(consumer: Any, records: dict[Any, list[Any]], faust_consumer: Any) -> dict[Any, list[Any]]:
    """Keep the records of partitions Faust still reads; seek the others back so they are fetched again.

    Faust drops records of a partition that is neither active nor buffer-paused; aiokafka has already
    moved that partition's position past them. Runs in the consumer thread, where aiokafka lives.
    """
    active = faust_consumer._active_partitions or ()
    buffered = getattr(faust_consumer, "_buffered_partitions", ())
    for tp in [tp for tp in records if tp not in active and tp not in buffered]:
        first = records.pop(tp)[0]
        with contextlib.suppress(IllegalStateError, AssertionError):  # revoked meanwhile: nothing to give back
            consumer.seek(tp, first.offset)
    return records


class TunedFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> TunedFetchConsumerThread:
        return TunedFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        """Deliver a fetched record inline when nothing can make the delivery wait (see the module docstring)."""
        if timeout is None and len(coros) == 2 and is_flow_wait(coros[1]) and delivery_cannot_wait(self):
            delivery, flow_wait = coros
            flow_wait.close()  # never started: closing it says so to asyncio
            return WaitResults([delivery], [await delivery], False)
        return await super().wait_first(*coros, timeout=timeout)

    async def _commit(self, offsets: Any) -> bool:
        if commits_held(self.app):
            return False  # Faust then commits these partitions' offsets at the next chance after the hold
        return bool(await super()._commit(offsets))


def is_flow_wait(awaitable: Any) -> bool:
    """The second thing Faust's fetch loop waits on: ``self.suspend_flow.wait()``, an un-started coroutine."""
    return (
        inspect.iscoroutine(awaitable)
        and awaitable.cr_code is _EVENT_WAIT
        and inspect.getcoroutinestate(awaitable) == inspect.CORO_CREATED
    )


def delivery_cannot_wait(consumer: Any) -> bool:
    """Whether Faust's ``on_message`` for any record would run to its end without waiting: flow is not
    suspended (a rebalance), the consumer is neither stopping nor crashed, no resubscription holds the conductor's
    lock, the producer buffer is below its limit, and no agent's queue is full (each is a wait in ``on_message``).

    Runs once per record: the app's parts are looked up once (``app.topics`` is a cached property, the producer
    a property, the buffer's ``size`` reads a setting) and kept on the consumer.
    """
    parts = consumer.__dict__.get("_inline_delivery_parts")
    if parts is None:
        app = consumer.app
        buffer = app.producer.buffer
        # Faust's buffer size: its queue, or the threaded producer's (a setting read on every call of ``size``).
        pending = (lambda: buffer.size) if app.conf.producer_threaded else buffer.pending.qsize
        parts = consumer._inline_delivery_parts = (app.flow_control, app.topics, buffer, pending)
    flow_control, conductor, buffer, pending = parts
    if consumer.suspend_flow.is_set() or consumer._stopped.is_set() or consumer._crashed.is_set():
        return False
    if not flow_control.is_active() or conductor._tp_to_callback_lock.locked():
        return False
    if pending() > buffer.max_messages:
        return False
    return not any(channel.queue.full() for channel in conductor._topics)


def commits_held(app: Any) -> bool:
    fence = getattr(app, "fence", None)
    return fence is not None and fence.writes_held


class TunedFetchTransport(faust_aiokafka.Transport):
    Consumer = TunedFetchConsumer


def register() -> None:
    """Register the scheme with Faust's transport registry (a "module:Class" string)."""
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:TunedFetchTransport"


def consumer_urls(broker_urls: list[str]) -> list[str]:
    """The broker URLs with Kafka schemes switched to the tuned transport."""
    tuned = []
    for raw in broker_urls:
        url = URL(raw)
        tuned.append(str(url.with_scheme(SCHEME)) if url.scheme in _KAFKA_SCHEMES else raw)
    return tuned
