"""Changelog replay keeps each key's newest record: a cut-off worker's late, older write never wins."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rocksdict

from partner_stream_tables.stamps import Stamp, next_stamp, payload_of, stamp_of, stamped
from partner_stream_tables.store import NewestWinsStore


@dataclass
class Message:
    key: bytes
    value: bytes | None
    offset: int
    partition: int = 0
    topic: str = "app-pending-orders-changelog"

    @property
    def tp(self) -> Any:
        return (self.topic, self.partition)


@dataclass
class Event:
    message: Message


def bare_store(path: Path) -> tuple[NewestWinsStore, rocksdict.Rdict, dict]:
    store = object.__new__(NewestWinsStore)
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    offsets: dict = {}
    store._dbs = {0: db}  # type: ignore[attr-defined]
    store.use_rocksdict = True  # type: ignore[attr-defined]
    store.set_persisted_offset = lambda tp, offset: offsets.__setitem__(tp, offset)  # type: ignore[method-assign]
    return store, db, offsets


def replay(store: NewestWinsStore, records: list[tuple[bytes, bytes | None]], first_offset: int = 0) -> None:
    batch = [Event(Message(key, value, first_offset + n)) for n, (key, value) in enumerate(records)]
    store.apply_changelog_batch(batch, lambda k: k, lambda v: v)


def head(seq: int, generation: int) -> bytes:
    return stamped(b'{"restaurantId":"r13","seq":%d}' % seq, Stamp(generation, seq))


def test_a_late_record_of_an_older_generation_is_skipped_within_and_across_batches(tmp_path: Path) -> None:
    store, db, offsets = bare_store(tmp_path / "db")
    replay(store, [(b"r13", head(8, 5)), (b"r13", head(20, 6)), (b"r13", head(9, 5))])
    assert stamp_of(db[b"r13"]) == Stamp(6, 20)
    replay(store, [(b"r13", head(10, 5))], first_offset=3)  # the zombie's flush, in the next batch
    assert payload_of(db[b"r13"]).endswith(b'"seq":20}')
    assert offsets[("app-pending-orders-changelog", 0)] == 3  # skipped records still count as read


def test_newer_and_equal_stamps_apply_in_offset_order_and_deletions_always_apply(tmp_path: Path) -> None:
    store, db, _ = bare_store(tmp_path / "db")
    replay(store, [(b"k", stamped(b"a", Stamp(1, 1))), (b"k", stamped(b"b", Stamp(1, 1)))])
    assert payload_of(db[b"k"]) == b"b"
    replay(store, [(b"k", None), (b"k", stamped(b"c", Stamp(0, 0)))], first_offset=2)
    assert payload_of(db[b"k"]) == b"c"


def test_unstamped_values_of_the_older_layouts_lose_to_stamped_ones(tmp_path: Path) -> None:
    store, db, _ = bare_store(tmp_path / "db")
    replay(store, [(b"r1", head(3, 1)), (b"r1", b'{"restaurantId":"r1","seq":2,"pending":[]}')])
    assert stamp_of(db[b"r1"]) == Stamp(1, 3)


def test_the_epoch_never_goes_back_when_the_group_generation_starts_again() -> None:
    """On a real cluster a group whose metadata expired restarts at generation 0; its stamps must still win."""
    assert next_stamp(1, head(5, 50), 6) == Stamp(50, 6)
    assert next_stamp(51, head(5, 50), 6) == Stamp(51, 6)
    assert next_stamp(3, None, 1) == Stamp(3, 1)
