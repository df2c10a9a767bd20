"""The RocksDB store of the pending-orders table, where a changelog replay keeps each key's newest record.

Faust's store applies changelog records in offset order, so the last record of a key wins. A worker cut off
from Kafka can flush records it buffered during the cut *after* the new owner wrote newer ones (seen on
ff17dc6: restaurant r13's head went from seq 20 back to seq 8). Records carry a stamp (:mod:`tables.stamps`);
recovery and standby replicas here keep a key's record unless an incoming one is at least as new. Deletions
always apply (a tombstone carries no stamp). Selected with ``store="partner-rocksdb://"``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import rocksdict
from faust.stores import STORES
from faust.stores.rocksdb import Store
from faust.types import TP, EventT
from prometheus_client import Counter

from .stamps import Stamp, stamp_of

SCHEME = "partner-rocksdb"

STALE_RECORDS = Counter(
    "partner_stream_stale_changelog_records_total",
    "Changelog records skipped on replay because the key already held a newer one (a cut-off worker's late write).",
)


class NewestWinsStore(Store):
    def apply_changelog_batch(
        self,
        batch: Iterable[EventT],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        if not self.use_rocksdict:  # the python-rocksdb binding: Faust's own replay
            return super().apply_changelog_batch(batch, to_key, to_value)
        writes: dict[int, Any] = defaultdict(lambda: rocksdict.WriteBatch(raw_mode=True))
        #: The stamp each key will hold once this batch is written (the database does not show it yet).
        pending: dict[tuple[int, bytes], Stamp | None] = {}
        offsets: dict[TP, int] = {}
        for event in batch:
            message = event.message
            tp, partition, key = message.tp, message.partition, message.key
            offsets[tp] = max(message.offset, offsets.get(tp, message.offset))
            if message.value is None:
                writes[partition].delete(key)
                pending[(partition, key)] = None
                continue
            if (partition, key) in pending:
                current = pending[(partition, key)]
            else:
                existing = self._db_for_partition(partition).get(key)
                current = stamp_of(existing) if existing is not None else None
            incoming = stamp_of(message.value)
            if current is not None and incoming < current:
                STALE_RECORDS.inc()
                continue
            writes[partition].put(key, message.value)
            pending[(partition, key)] = incoming
        for partition, write in writes.items():
            self._db_for_partition(partition).write(write)
        for tp, offset in offsets.items():
            self.set_persisted_offset(tp, offset)
        return None


def register() -> None:
    """Make ``partner-rocksdb://`` name this store (idempotent)."""
    STORES.aliases[SCHEME] = f"{__name__}:NewestWinsStore"
