"""How the pending-orders table is stored: raw UTF-8 keys (:mod:`tables.keys`), compact camelCase JSON values.

The table's values are the bytes of :mod:`tables.model`'s records; this module encodes and decodes them, so
Faust moves plain bytes (one encode per write, shared by RocksDB and the changelog).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import faust
import rocksdict

from .changelog import ChangelogOutbox, retrieve_failure
from .keys import applied_key, head_key, is_head_key, is_order_key, order_key, orders_prefix
from .model import (
    LegacyRestaurantOrders,
    PendingOrder,
    RestaurantOrders,
    StorageUnavailable,
    decode_head,
    decode_order,
    encode_record,
)
from .reader import RecordReader
from .stamps import Stamp, next_stamp, stamped
from .transitions import Outcome

#: Where an event was read: (topic, partition, offset).
Source = tuple[str, int, int]

#: Largest record written: a changelog record must fit in one Kafka request (1,000,000 bytes by default). The
#: event contract's limits keep real records far below it; this guards the rest before anything is written.
MAX_RECORD_BYTES = 512 * 1024


#: Only a ResolvedOrder has this field: inside a JSON string a quote is escaped, so no text can forge it.
_RESOLUTION_FIELD = b'"resolution":'
#: Every key is UTF-8 text (restaurant and order IDs, Faust's offset key), and UTF-8 never holds 0xFF.
_PAST_EVERY_KEY = b"\xff"


class StorageWriteFailed(Exception):
    """The local store refused a write (disk full, I/O error); nothing was written: retry, never skip the event."""


class WritesHeld(Exception):
    """This worker fenced itself: nothing may be written until its table was rebuilt after the rejoin."""


class RecordTooLarge(ValueError):
    """An outcome holds a record no changelog could take; nothing of it was written."""


class _ClosedPartition:
    """Stands in for a partition's RocksDB handle that could not be reopened (the disk is still full).

    RocksDB stays in its error state after a failed write, even once space returns, until the database is
    closed and opened again; and opening fails while the disk is full. Between a failed reopen and the next
    attempt this placeholder refuses everything, so nothing else (Faust's persisted-offset update after a
    changelog send, a read) can reopen the database behind the retry and record an offset for data that
    was never written.
    """

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def __getattr__(self, name: str) -> Any:
        raise StorageWriteFailed(f"partition store closed after a failed write: {self._reason}")


class PendingOrdersTable(RecordReader, faust.Table):
    """A Faust table of each restaurant's records, keyed by raw bytes, valued by raw bytes.

    Keys must be the raw bytes the re-key topic uses, so the changelog partition, the stream partition and
    ``table_route``'s owner lookup agree on the head key (the bare restaurant ID). Set here, in
    ``__init__``, because the changelog topic is built from these right after construction.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_serializer = "raw"
        self.value_serializer = "raw"
        #: Why the store refuses writes (set by a failed write, cleared once a retry succeeds), else None.
        self.storage_failure: str | None = None
        #: True from the moment this worker fences itself until its table was rebuilt after the rejoin: it writes
        #: nothing and persists no changelog offset (:meth:`write`, :meth:`_on_changelog_sent`). Bound by the app.
        self.writes_held: Callable[[], bool] = lambda: False
        #: The partition of the event being applied (:meth:`applying`): its reads go straight to its database.
        self._applying: int | None = None
        #: What was read while applying it, so the write takes the head's stamp without reading it again.
        self._read: dict[str, bytes | None] = {}
        #: The changelog records of writes, until the agent hands them to the producer (tables/changelog.py).
        self.changelog_outbox = ChangelogOutbox(
            producer=lambda: self.app.producer._ensure_producer(),
            topic=lambda: self.changelog_topic.get_topic_name(),
            on_sent=self._on_changelog_sent,
            crash=lambda exc: self.app.crash(exc),
        )
        #: Exactly-once processing sends changelog records through Faust (its transactions own the producers).
        self._changelog_through_faust: bool | None = None
        #: The newest offset written per source (topic, partition), as stored in its database (resend_if_read_again).
        self._applied: dict[tuple[str, int], int] = {}

    # -- reads (tables.reader.RecordReader) ---------------------------------------------------------------

    @contextlib.contextmanager
    def applying(self, partition: int) -> Iterator[None]:
        """Read the records of an event on ``partition`` straight from that partition's database.

        Faust's store finds the partition of a read through the current event and a key index, then raises and
        catches a KeyError for every key that is not there: several times the cost of the lookup itself. Use it
        around one event-loop step only (no await inside), so no other event's reads can fall in it.
        """
        self._applying, self._read = partition, {}
        try:
            yield
        finally:
            self._applying, self._read = None, {}

    def raw(self, key: str) -> bytes | None:
        """Read from the store itself (``Table.get`` asks whether the key exists first: two lookups where one does)."""
        if self._applying is None:
            return self.data.get(key)
        if key not in self._read:
            store: Any = self.data
            self._read[key] = store._db_for_partition(self._applying).get(key.encode())
        return self._read[key]

    def raw_with_prefix(self, prefix: bytes) -> Iterator[bytes]:
        """A prefix seek in each partition's database (a restaurant's keys all live in one of them)."""
        for db in self._databases():
            for key, raw in db.items(from_key=prefix):
                if not key.startswith(prefix):
                    break
                yield raw

    # -- writes -------------------------------------------------------------------------------------------

    def write(self, outcome: Outcome, generation: int, partition: int, source: Source | None = None) -> None:
        """Write an outcome to the partition of the event being processed, stamped (``generation``, seq after).

        All of it or nothing: the records go to the partition's RocksDB database in one write batch, and only
        once that succeeded to the changelog outbox (what ``table[key] = value`` does, in the other order); the
        agent then hands them to the producer (:meth:`send_written`) before the event is done. A store
        that refuses the batch (a full disk) raises :class:`StorageWriteFailed` with nothing written anywhere,
        so a restart or a retry meets the event whole. Records are encoded and measured first.

        ``source`` (topic, partition, offset) is the event's place: the batch also stores it, in this database
        only, as the newest event of that topic partition written here (:meth:`resend_if_read_again`).
        """
        if self.writes_held():
            raise WritesHeld("this worker is fenced: the event is read again after it rejoined its group")
        head_before = self.raw(outcome.head_key) if outcome.head_key is not None else None  # read once per event
        stamp = next_stamp(generation, head_before, outcome.seq_after)
        encoded = [(key, stamped(encode_record(record), stamp)) for key, record in outcome.writes]
        for key, raw in encoded:
            if len(raw) + len(key) > MAX_RECORD_BYTES:
                raise RecordTooLarge(f"record {key[:80]!r} would be {len(raw)} bytes (limit {MAX_RECORD_BYTES})")
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key in outcome.deletes:
            batch.delete(key.encode())
        for key, raw in encoded:
            batch.put(key.encode(), raw)
        applied = None
        if source is not None:  # kept at the newest: an event read again may write, at a lower offset
            topic, source_partition, offset = source
            applied = (topic, source_partition), max(offset, self._applied_offset(partition, topic, source_partition))
            batch.put(applied_key(topic, source_partition).encode(), str(applied[1]).encode())
        store: Any = self.data
        try:
            store._db_for_partition(partition).write(batch)
        except Exception as exc:  # rocksdict raises plain Exception("IO error: No space left on device ...")
            self.storage_failure = str(exc)
            raise StorageWriteFailed(str(exc)) from exc
        self.storage_failure = None  # the store took a batch: a partition still broken fails its next write
        self._read = {}  # what was read is stale now
        if applied is not None:
            self._applied[applied[0]] = applied[1]
        for key in outcome.deletes:
            self._to_changelog(partition, key, None)
        for key, raw in encoded:
            self._to_changelog(partition, key, raw)

    def resend_if_read_again(self, restaurant_id: str, order_id: str, partition: int, source: Source) -> int:
        """For an event that changed nothing: if this store already holds what it wrote, send that again.

        A worker killed after an event's RocksDB batch and before its changelog records reached the broker
        keeps the change in its store; the event was not committed (Faust flushes the producer before every
        commit), so it is read again after the restart, and then changes nothing. Without this, the changelog
        would never get the change, and the next worker to build the partition from it (a failover, a standby, a
        new machine) would miss the order. An event at or below the newest offset of its topic partition written
        here is such a re-read. What goes to the changelog again, as the store holds it (stamps included, so no
        reader takes a record for newer than it is): the event's order, every pending order of the restaurant
        (the batch that moved a one-value layout to records wrote all of them) and its head. Not the ring of
        remembered resolutions nor the deletion of one it forgot: a rebuilt store then remembers a resolved
        order longer, and loses none. A duplicate the upstream sent again has a new offset and sends nothing.
        Returns how many records were queued; call it inside :meth:`applying`.
        """
        topic, source_partition, offset = source
        if self.writes_held() or offset > self._applied_offset(partition, topic, source_partition):
            return 0
        store: Any = self.data
        db = store._db_for_partition(partition)
        own = order_key(restaurant_id, order_id).encode()
        records = [(own, self.raw(own.decode()))]
        prefix = orders_prefix(restaurant_id)
        for key, raw in db.items(from_key=prefix):
            if not key.startswith(prefix):
                break
            if key != own and _RESOLUTION_FIELD not in raw:
                records.append((key, raw))
        records.append((head_key(restaurant_id).encode(), self.raw(head_key(restaurant_id))))
        resent = 0
        for key, raw in records:
            if raw is not None:
                self._to_changelog(partition, key.decode(), raw)
                resent += 1
        return resent

    def _applied_offset(self, partition: int, topic: str, source_partition: int) -> int:
        """The newest offset of ``topic[source_partition]`` written to ``partition``'s database (-1: none)."""
        cached = self._applied.get((topic, source_partition))
        if cached is not None:
            return cached
        store: Any = self.data
        raw = store._db_for_partition(partition).get(applied_key(topic, source_partition).encode())
        applied = self._applied[(topic, source_partition)] = int(raw) if raw is not None else -1
        return applied

    def _to_changelog(self, partition: int, key: str, raw: bytes | None) -> None:
        """Queue one changelog record (``None``: a deletion) for the partition's hand-over."""
        if self._changelog_through_faust is None:
            self._changelog_through_faust = bool(self.app.in_transaction)
        if self._changelog_through_faust:
            self.send_changelog(partition, key, raw, value_serializer="raw")
        else:
            self.changelog_outbox.add(partition, key.encode(), raw)

    async def send_written(self) -> None:
        """Hand the changelog records of the writes so far to the producer; call it before the event is done."""
        await self.changelog_outbox.hand_over()

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        sent = super().send_changelog(*args, **kwargs)
        sent.add_done_callback(retrieve_failure)
        return sent

    def _on_changelog_sent(self, fut: Any) -> None:
        """Faust persists the offset of each changelog record the broker took, so a restart resumes after it.

        Not while writes are held (from the fence until the table was rebuilt): a cut-off worker's record in
        flight at the cut can be acknowledged when the network heals, *after* the new owner's records, and would
        persist an offset past those once :meth:`wipe_local_store` had cleared it (seen: a whole-changelog replay
        started at offset 207 of 211, and 37 orders of one restaurant were gone).
        """
        if not self.writes_held():
            super()._on_changelog_sent(fut)

    def reopen(self, partition: int) -> None:
        """Before retrying a refused write: reopen the partition's database (RocksDB stays in error otherwise).

        The caller then computes the outcome again and writes it, in the same event-loop step.
        """
        self._reopen(partition)

    def _reopen(self, partition: int) -> None:
        store: Any = self.data
        broken = store._dbs.pop(partition, None)  # Faust's RocksDB store keeps one handle per partition
        if broken is not None and not isinstance(broken, _ClosedPartition):
            with contextlib.suppress(Exception):  # "Writer has previous error", and the database is released
                broken.close()
        try:
            store._db_for_partition(partition)
        except Exception as exc:
            store._dbs[partition] = _ClosedPartition(str(exc))
            self.storage_failure = str(exc)
            raise StorageWriteFailed(str(exc)) from exc

    # -- the views clients read ---------------------------------------------------------------------------

    def state_of(self, restaurant_id: str) -> RestaurantOrders:
        """The restaurant's pending orders and ``seq``, oldest first (empty if it never had an order).

        Runs in one event-loop step, like every write, so it never sees half of an event's records. Raises
        :class:`StorageUnavailable` while the store refuses writes: a partition database may be closed then,
        and a snapshot without it would show a restaurant with no orders.
        """
        if self.storage_failure is not None:
            raise StorageUnavailable(self.storage_failure)
        return self.read_state(restaurant_id)

    def version_of(self, restaurant_id: str) -> Stamp | None:
        """The stamp of the restaurant's head (one key read), refused like :meth:`state_of` while the store
        refuses writes."""
        if self.storage_failure is not None:
            raise StorageUnavailable(self.storage_failure)
        return self.read_version(restaurant_id)

    def pending_orders(self, owned: Any) -> Iterator[PendingOrder]:
        """Every pending order of the restaurants ``owned(restaurant_id)`` accepts, in this worker's store.

        Reads the active partitions' databases only (standby copies are reported by their owners), and skips a
        resolution marker by its bytes: a restaurant remembers up to 500 of them, not worth decoding.
        """
        store: Any = self.data
        for db in store._dbs_for_actives():
            for key, raw in db.items():
                if is_order_key(key):
                    if _RESOLUTION_FIELD in raw:
                        continue
                    record = decode_order(raw)
                    if isinstance(record, PendingOrder) and owned(record.restaurant_id):
                        yield record
                elif is_head_key(key) and key != self.data.offset_key:
                    head = decode_head(raw)
                    if isinstance(head, LegacyRestaurantOrders) and owned(head.restaurant_id):
                        yield from head.pending

    def wipe_local_store(self) -> int:
        """Empty every partition database this worker holds, persisted offsets included: the next recovery
        rebuilds them from the changelog alone (newest stamp wins, tables/store.py).

        For a worker that was cut off from Kafka: its local store holds writes whose changelog records it
        dropped (a merge would keep them, and the events re-read after the rejoin would then change nothing),
        and Faust's persisted offset may point past records the partition's new owner wrote meanwhile.
        """
        wiped = 0
        for db in self._databases():
            if not isinstance(db, _ClosedPartition):
                db.delete_range(b"", _PAST_EVERY_KEY)
                wiped += 1
        getattr(self.data, "_key_index", {}).clear()  # Faust's key -> partition cache
        self._applied.clear()  # the stored offsets are gone with the rest
        self.changelog_outbox.discard()  # records of writes to the store just wiped: the events are read again
        return wiped

    def _databases(self) -> list[Any]:
        """The open RocksDB database of each partition this worker holds (Faust's store keeps one per partition)."""
        return list(getattr(self.data, "_dbs", {}).values())


def create_table(app: faust.App, *, partitions: int) -> PendingOrdersTable:
    table = PendingOrdersTable(
        app,
        name="pending-orders",
        key_type=str,
        partitions=partitions,
        beacon=app.tables.beacon,
        help="Pending orders of each restaurant: a head per restaurant and a record per order.",
    )
    return app.tables.add(table)  # type: ignore[return-value]
