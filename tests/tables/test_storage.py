"""How a restaurant's records are stored: exact byte round trips, keys that cannot collide, safe writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import rocksdict
from faust.tables.base import Collection

from partner_stream_tables import keys
from partner_stream_tables.changelog import ChangelogOutbox
from partner_stream_tables.memory import MemoryTable
from partner_stream_tables.model import (
    LegacyRestaurantOrders,
    Resolution,
    ResolvedOrder,
    RestaurantHead,
    StorageUnavailable,
    decode_head,
    decode_order,
    encode_record,
)
from partner_stream_tables.stamps import Stamp, stamp_of
from partner_stream_tables.storage import (
    MAX_RECORD_BYTES,
    PendingOrdersTable,
    RecordTooLarge,
    StorageWriteFailed,
    WritesHeld,
)
from partner_stream_tables.transitions import Outcome, apply_event

from .test_transitions import MEMORY, accepted, created, run


def test_records_round_trip_through_their_bytes() -> None:
    table = run([created("a")])
    order = table.state_of("42").pending[0]
    assert decode_order(encode_record(order)) == order
    resolved = ResolvedOrder(order_id="b", resolution=Resolution.REJECTED)
    assert decode_order(encode_record(resolved)) == resolved
    head = RestaurantHead(restaurant_id='r"1","seq":9', seq=4, resolved_count=2)
    assert decode_head(encode_record(head)) == head


def test_a_one_value_layout_head_decodes_as_legacy() -> None:
    raw = b'{"restaurantId":"42","seq":1,"pending":[],"resolved":["a"],"rejected":[]}'
    assert isinstance(decode_head(raw), LegacyRestaurantOrders)


def test_one_restaurants_order_prefix_never_covers_another_restaurants_keys() -> None:
    table = run([created("a", restaurant="4"), created("b", restaurant="42"), created("c", restaurant="4o")])
    prefix = keys.orders_prefix("4")
    assert [k for k in table.data if k.startswith(prefix)] == [keys.order_key("4", "a").encode()]
    assert keys.is_head_key(b"42") and not keys.is_head_key(keys.ring_key("42", 3).encode())
    assert keys.is_order_key(keys.order_key("42", "x").encode())
    # An ID that would forge another restaurant's key never gets past the event contract.
    with pytest.raises(ValueError, match="control characters"):
        created("c", restaurant=f"4{keys.SEPARATOR}o")


class RefusingDatabase:
    """A partition database that refuses writes as RocksDB does on a full disk."""

    def write(self, batch: Any) -> None:
        raise Exception("IO error: No space left on device: While appending to file: 000012.log")


class PartitionStore:
    """The parts of Faust's RocksDB store the table writes through: one database per partition."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self._key_index: dict[bytes, int] = {}

    def _db_for_partition(self, partition: int) -> Any:
        return self.db

    def get(self, key: str) -> bytes | None:
        return None if isinstance(self.db, RefusingDatabase) else self.db.get(key.encode())


def bare_table(db: Any) -> tuple[PendingOrdersTable, list[str]]:
    """The table class without a Faust app: its store and changelog sends replaced by plain recorders."""
    table = object.__new__(PendingOrdersTable)
    sent: list[str] = []
    table._data = PartitionStore(db)  # type: ignore[attr-defined]
    table.storage_failure = None
    table.writes_held = lambda: False
    table._applying, table._read = None, {}
    table._changelog_through_faust = False
    table._applied = {}
    table.changelog_outbox = RecordingOutbox(sent)
    return table, sent


class RecordingOutbox(ChangelogOutbox):
    """The changelog outbox, recording the keys added (a deletion as "del key") instead of sending them."""

    def __init__(self, sent: list[str]) -> None:
        super().__init__(producer=lambda: None, topic=lambda: "changelog", on_sent=lambda sent: None)
        self.sent = sent

    def add(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.sent.append(key.decode() if value is not None else f"del {key.decode()}")


def test_a_store_that_refuses_a_write_sends_nothing_to_the_changelog(tmp_path: Path) -> None:
    table, sent = bare_table(RefusingDatabase())
    outcome = apply_event(MemoryTable(), created("a"), resolved_memory=MEMORY)
    with pytest.raises(StorageWriteFailed, match="No space left"):
        table.write(outcome, 1, 0)
    assert sent == [] and table.storage_failure is not None  # nothing half-written: a retry meets it whole


def test_no_snapshot_and_no_version_is_read_while_the_store_refuses_writes(tmp_path: Path) -> None:
    """A snapshot, or the version a cached one is checked against, could miss a closed partition's orders."""
    table, _ = bare_table(RefusingDatabase())
    table.storage_failure = "IO error: No space left on device"
    with pytest.raises(StorageUnavailable):
        table.state_of("42")
    with pytest.raises(StorageUnavailable):
        table.version_of("42")


def test_an_outcome_with_an_oversized_record_writes_nothing(tmp_path: Path) -> None:
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    table, sent = bare_table(db)
    huge = RestaurantHead(restaurant_id="x" * MAX_RECORD_BYTES)
    resolved = ResolvedOrder(order_id="a", resolution=Resolution.ACCEPTED)
    outcome = Outcome(writes=((keys.order_key("42", "a"), resolved), ("42", huge)))
    with pytest.raises(RecordTooLarge):
        table.write(outcome, 1, 0)
    assert sent == [] and list(db.keys()) == []


def test_a_written_outcome_is_in_the_store_and_then_in_the_changelog(tmp_path: Path) -> None:
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    table, sent = bare_table(db)
    table.write(apply_event(MemoryTable(), created("a"), resolved_memory=MEMORY), 3, 0)
    assert sent == [keys.order_key("42", "a"), "42"]
    assert decode_head(db[b"42"]).seq == 1 and stamp_of(db[b"42"]) == Stamp(3, 1)


def test_wiping_the_local_store_after_a_fence_leaves_nothing_for_recovery_to_merge_into(tmp_path: Path) -> None:
    """After a fence: no persisted offset (the whole changelog is replayed) and no record of its own that the
    changelog may lack (a merge would keep it, and the event read again would then change nothing)."""
    table = object.__new__(PendingOrdersTable)
    store = PartitionStore(None)
    store.offset_key = b"__faust\0offset__"  # type: ignore[attr-defined]
    store._key_index = {b"42": 0}  # type: ignore[attr-defined]
    dbs = [rocksdict.Rdict(str(tmp_path / f"p{n}"), options=rocksdict.Options(raw_mode=True)) for n in range(2)]
    for db in dbs:
        db[store.offset_key] = b"41"  # type: ignore[attr-defined]
        db[b"42"] = b"a head"
        db[keys.order_key("\u00e9\u00e8", "o").encode()] = b"an order of a restaurant with a non-ASCII ID"
    store._dbs = {0: dbs[0], 1: dbs[1]}  # type: ignore[attr-defined]
    table._data = store  # type: ignore[attr-defined]
    table._applied = {("order-created", 0): 17}
    table.changelog_outbox = ChangelogOutbox(producer=lambda: None, topic=lambda: "changelog", on_sent=print)
    table.changelog_outbox.add(0, b"42", b"a head the changelog would get after the wipe")
    assert table.wipe_local_store() == 2
    assert len(table.changelog_outbox) == 0
    assert all(list(db.keys()) == [] for db in dbs)
    assert store._key_index == {}  # type: ignore[attr-defined]
    assert table._applied == {}  # its stored offsets went with the rest


def test_reads_while_applying_go_to_the_events_partition_and_are_not_stale_after_the_write(tmp_path: Path) -> None:
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    table, _ = bare_table(db)
    with table.applying(0):
        assert table.raw("42") is None
        table.write(apply_event(table, created("a"), resolved_memory=MEMORY), 1, 0)
        assert table.raw("42") == db[b"42"]  # read again after the write, not the remembered "missing"
        table.write(apply_event(table, created("b"), resolved_memory=MEMORY), 1, 0)
    assert decode_head(db[b"42"]).seq == 2 and table._applying is None


def test_a_fenced_worker_persists_no_changelog_offset_until_its_table_was_rebuilt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A late acknowledgement of a cut-off worker's record in flight must not undo wipe_local_store."""
    persisted: list[object] = []
    monkeypatch.setattr(Collection, "_on_changelog_sent", lambda self, fut: persisted.append(fut))
    table = object.__new__(PendingOrdersTable)
    table.writes_held = lambda: True
    table._on_changelog_sent("late ack")
    assert persisted == []
    table.writes_held = lambda: False
    table._on_changelog_sent("ack")
    assert persisted == ["ack"]


def test_a_fenced_worker_writes_nothing(tmp_path: Path) -> None:
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    table, sent = bare_table(db)
    table.writes_held = lambda: True
    with pytest.raises(WritesHeld):
        table.write(apply_event(MemoryTable(), created("a"), resolved_memory=MEMORY), 3, 0)
    assert sent == [] and list(db.keys()) == []


class ValueRecordingOutbox(RecordingOutbox):
    """Also keeps each record's bytes, to compare what is sent again with what the store holds."""

    def __init__(self, sent: list[str]) -> None:
        super().__init__(sent)
        self.values: list[bytes | None] = []

    def add(self, partition: int, key: bytes, value: bytes | None) -> None:
        super().add(partition, key, value)
        self.values.append(value)


def test_an_event_read_again_after_a_crash_sends_its_records_again_and_a_new_duplicate_does_not(
    tmp_path: Path,
) -> None:
    """The worker died after the RocksDB batch and before the changelog took the records: the event, read again
    from the same offset, changes nothing, so the store's current records go to the changelog again."""
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    table, sent = bare_table(db)
    outbox = table.changelog_outbox = ValueRecordingOutbox(sent)
    with table.applying(0):
        table.write(apply_event(table, created("a"), resolved_memory=MEMORY), 3, 0, ("order-created", 0, 17))
    stored = {key: db[key.encode()] for key in (keys.order_key("42", "a"), "42")}
    sent.clear()
    outbox.values.clear()

    with table.applying(0):
        assert apply_event(table, created("a"), resolved_memory=MEMORY).is_noop
        assert table.resend_if_read_again("42", "a", 0, ("order-created", 0, 17)) == 2
    assert sent == [keys.order_key("42", "a"), "42"]
    assert outbox.values == [stored[keys.order_key("42", "a")], stored["42"]]  # unchanged, stamps included

    sent.clear()
    with table.applying(0):
        assert table.resend_if_read_again("42", "a", 0, ("order-created", 0, 18)) == 0  # the upstream sent it twice
        assert table.resend_if_read_again("42", "a", 0, ("order-accepted", 0, 5)) == 0  # nothing written from there
    assert sent == []


def test_a_resolution_read_again_sends_the_order_the_other_pending_orders_and_the_head(tmp_path: Path) -> None:
    """Every pending order goes again (a batch that moved a one-value layout to records wrote all of them)."""
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    table, sent = bare_table(db)
    events = [(created("a"), 10), (created("b"), 11), (created("c"), 12), (accepted("b"), 13)]
    for event, offset in events:
        with table.applying(0):
            table.write(apply_event(table, event, resolved_memory=MEMORY), 3, 0, ("t", 0, offset))
    sent.clear()
    with table.applying(0):
        assert apply_event(table, accepted("b"), resolved_memory=MEMORY).is_noop
        assert table.resend_if_read_again("42", "b", 0, ("t", 0, 13)) == 4
    assert sent == [keys.order_key("42", "b"), keys.order_key("42", "a"), keys.order_key("42", "c"), "42"]


def test_the_stored_offset_never_goes_back_when_an_event_read_again_writes(tmp_path: Path) -> None:
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    table, _ = bare_table(db)
    with table.applying(0):
        table.write(apply_event(table, created("a"), resolved_memory=MEMORY), 3, 0, ("t", 0, 20))
    with table.applying(0):
        table.write(apply_event(table, created("b"), resolved_memory=MEMORY), 3, 0, ("t", 0, 15))
    assert db[keys.applied_key("t", 0).encode()] == b"20"
    table._applied.clear()  # a new process reads it from the database
    with table.applying(0):
        assert table.resend_if_read_again("42", "a", 0, ("t", 0, 19)) > 0


def test_the_applied_offset_stays_local_and_is_no_restaurants_record(tmp_path: Path) -> None:
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    table, sent = bare_table(db)
    table.write(apply_event(MemoryTable(), created("a"), resolved_memory=MEMORY), 3, 0, ("o", 0, 17))
    applied = keys.applied_key("o", 0).encode()  # a topic named "o" must not look like an order key
    assert db[applied] == b"17" and applied.decode() not in sent
    assert not keys.is_order_key(applied) and not keys.is_head_key(applied)
    table.writes_held = lambda: True
    with table.applying(0):
        assert table.resend_if_read_again("42", "a", 0, ("o", 0, 17)) == 0  # fenced: nothing goes out
