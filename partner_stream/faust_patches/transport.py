"""The Faust Kafka transport of the worker's consumer: a fetch that cannot swallow a partition's backlog.

Six changes to faust-streaming 0.15.3's aiokafka consumer, and nothing else (producers
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
* **No commit while the worker holds its writes** (partner_stream/fencing.py). A fenced worker
  leaves events unapplied and drops changelog records it had buffered (producer.py); their
  offsets must stay uncommitted, so that whoever owns the partition next reads them again.
  Faust flushes the producer before it commits, and a flush ends when the dropped records fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Set
from typing import Any

import aiokafka
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from yarl import URL

from . import end_offsets, fetch_pace, offset_holes

SCHEME = "partner-kafka"
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

    async def _commit(self, offsets: Any) -> bool:
        if commits_held(self.app):
            return False  # Faust then commits these partitions' offsets at the next chance after the hold
        return bool(await super()._commit(offsets))


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
