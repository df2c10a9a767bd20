"""The embedded broker's offset holes: a fetch must not step over a record that is not stored yet.

Tansu (0.6.0, memory storage) gives a produced batch its offset by raising the partition's high
watermark *before* it stores the batch (``tansu-storage/src/dynostore.rs``, ``produce``:
``watermark.with_mut`` first, ``put_opts`` after). A Fetch that lands in between lists the batches stored
below the new watermark, so with two producers on one partition it can answer offsets N-1 and N+1
without N. aiokafka then moves the position past N, and N is never read. Measured here: four producers
on one partition, a consumer reading meanwhile, 1-3 of 8,001 records never read. In the product, the
workers that re-key upstream events all write to each restaurant partition, and an order re-keyed during
a rebalance was never applied (issue #17, the SIGKILL loop).

On that broker a partition's offsets have no legitimate gap: nothing is compacted, and there are no
transactions or control batches. So here a fetched partition's records stop at the first missing offset
and the position stays on it: the next fetch asks for it again, and gets it once the broker has stored
it (within milliseconds). A hole still open after the grace is a batch the broker never stored; it is
stepped over with a warning. (A hole with nothing stored after it yet looks like the end of the partition:
the fetch waits there, as aiokafka always did.) While a hole is open the consumer fetches again at once and
the broker answers at once: a tight loop, for the milliseconds a hole normally lasts.

Apache Kafka only shows an offset below its high watermark once the batch is written, and its gaps
(compaction, transaction markers) are legitimate: this is installed for the embedded broker only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka.consumer import fetcher

from .. import metrics

log = logging.getLogger(__name__)

#: How long a hole may stay open before it counts as a batch the broker never stored.
DEFAULT_HOLE_GRACE = 5.0

_STOCK_PARTITION_RECORDS = fetcher.PartitionRecords


class HoleWatch:
    """The first open hole of each partition, and since when it has been seen (runs on the consumer thread)."""

    def __init__(self, grace: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self._clock = clock
        self._open: dict[Any, tuple[int, float]] = {}

    def reading_from(self, tp: Any, offset: int) -> None:
        """A fetch of ``tp`` starts at ``offset``: a hole below it has been filled."""
        hole = self._open.get(tp)
        if hole is not None and offset > hole[0]:
            del self._open[tp]
            metrics.OFFSET_HOLES_FILLED.inc()

    def fetched(self) -> float:
        """The time a fetch response is received at (its records may be read much later)."""
        return self._clock()

    def may_step_over(self, tp: Any, missing: int, next_stored: int, fetched_at: float) -> bool:
        """Offsets ``missing`` .. ``next_stored - 1`` of ``tp`` were not in a fetch received at ``fetched_at``:
        wait, or give up on them?

        Timed by when the fetches were received, not read: Faust can leave a fetched result unread for seconds
        (a full stream buffer, a paused partition), and the offset may have been stored meanwhile.
        """
        hole = self._open.get(tp)
        if hole is None or hole[0] != missing:
            self._open[tp] = (missing, fetched_at)
            metrics.OFFSET_HOLES_WAITED.inc()
            return False
        if fetched_at - hole[1] < self.grace:
            return False
        del self._open[tp]
        metrics.OFFSET_HOLES_SKIPPED.inc()
        log.warning(
            "the broker never stored offsets %d-%d of %s[%s] (a hole for %.1f s): reading on after them",
            missing,
            next_stored - 1,
            tp.topic,
            tp.partition,
            fetched_at - hole[1],
        )
        return True


class RecordsUpToAHole:
    """A partition's fetched batches (aiokafka's ``MemoryRecords`` interface), ending at the first hole."""

    def __init__(self, records: Any, tp: Any, fetch_offset: int, holes: HoleWatch) -> None:
        self._records = records
        self._tp = tp
        self._expected = fetch_offset
        self._holes = holes
        self._fetched_at = holes.fetched()  # built as the response is handled: when it was received
        self._peeked: Any = None
        self._ended = False

    def has_next(self) -> bool:
        if self._peeked is None and not self._ended:
            self._peeked = self._read_batch()
        return self._peeked is not None

    def next_batch(self) -> Any:
        self.has_next()
        batch, self._peeked = self._peeked, None
        return batch

    def _read_batch(self) -> Any:
        if not self._records.has_next():
            self._ended = True
            return None
        batch = self._records.next_batch()
        if batch.base_offset > self._expected and not self._holes.may_step_over(
            self._tp, self._expected, batch.base_offset, self._fetched_at
        ):
            self._ended = True  # the position stays on the hole: the next fetch asks for it again
            return None
        self._expected = max(self._expected, batch.next_offset)
        return batch


def partition_records_for(holes: HoleWatch) -> type:
    """aiokafka's ``PartitionRecords``, reading each fetch through :class:`RecordsUpToAHole`."""

    class PartitionRecordsUpToAHole(_STOCK_PARTITION_RECORDS):  # type: ignore[misc, valid-type]
        def __init__(self, tp: Any, records: Any, aborted: Any, fetch_offset: int, *args: Any) -> None:
            holes.reading_from(tp, fetch_offset)
            super().__init__(tp, RecordsUpToAHole(records, tp, fetch_offset, holes), aborted, fetch_offset, *args)

    return PartitionRecordsUpToAHole


def install(grace: float = DEFAULT_HOLE_GRACE) -> HoleWatch:
    """Every aiokafka fetch in this process stops at an offset hole (the Fetcher builds its records by name)."""
    holes = HoleWatch(grace)
    fetcher.PartitionRecords = partition_records_for(holes)
    return holes


def uninstall() -> None:
    fetcher.PartitionRecords = _STOCK_PARTITION_RECORDS


def installed() -> bool:
    return fetcher.PartitionRecords is not _STOCK_PARTITION_RECORDS
