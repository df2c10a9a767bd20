"""A fetch on the embedded broker stops at an offset that is not stored yet, and reads it once it is
(partner_stream/faust_patches/offset_holes.py)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator

import pytest
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

from partner_stream.faust_patches import offset_holes
from partner_stream.faust_patches.offset_holes import HoleWatch, partition_records_for

TP = TopicPartition("ps-orders-by-restaurant", 3)


def batch(base_offset: int, count: int = 1) -> bytes:
    """One record batch as the broker sends it: the base offset is the first 8 bytes."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta in range(count):
        builder.append(delta, timestamp=None, key=None, value=f"v{base_offset + delta}".encode(), headers=[])
    built = builder.build()
    struct.pack_into(">q", built, 0, base_offset)
    return bytes(built)


def fetched(*batches: bytes) -> MemoryRecords:
    return MemoryRecords(b"".join(batches))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def read(holes: HoleWatch, records: MemoryRecords, fetch_offset: int) -> tuple[list[int], int]:
    """Offsets the consumer gets from one fetch, and where its next fetch starts."""
    partition_records = partition_records_for(holes)(TP, records, [], fetch_offset, None, None, True, 0)
    offsets = [record.offset for record in partition_records]
    return offsets, partition_records.next_fetch_offset


def count(outcome: str) -> float:
    return REGISTRY.get_sample_value("partner_stream_broker_offset_holes_total", {"outcome": outcome}) or 0.0


def test_contiguous_batches_are_read_whole() -> None:
    holes = HoleWatch(grace=5.0)
    assert read(holes, fetched(batch(10), batch(11), batch(12, count=3)), 10) == ([10, 11, 12, 13, 14], 15)


def test_a_fetch_stops_at_a_missing_offset_and_the_next_fetch_asks_for_it() -> None:
    holes = HoleWatch(grace=5.0, clock=Clock())
    waited = count("waited")
    assert read(holes, fetched(batch(10), batch(11), batch(13), batch(14)), 10) == ([10, 11], 12)
    assert count("waited") == waited + 1


def test_a_hole_right_at_the_fetch_offset_returns_nothing_and_keeps_the_position() -> None:
    # A fetch at 12 that finds 13 stored but not 12: nothing to hand over, and the next fetch asks for 12 again.
    holes = HoleWatch(grace=5.0, clock=Clock())
    assert read(holes, fetched(batch(11), batch(13)), 12) == ([], 12)


def test_the_missing_offset_is_read_once_it_is_stored() -> None:
    holes = HoleWatch(grace=5.0, clock=Clock())
    filled = count("filled")
    assert read(holes, fetched(batch(10), batch(12)), 10) == ([10], 11)
    assert read(holes, fetched(batch(11), batch(12)), 11) == ([11, 12], 13)
    assert read(holes, fetched(batch(13)), 13) == ([13], 14)
    assert count("filled") == filled + 1


def test_a_fetch_inside_a_batch_is_no_hole() -> None:
    holes = HoleWatch(grace=5.0)
    assert read(holes, fetched(batch(10, count=4), batch(14)), 12) == ([12, 13, 14], 15)


def test_a_hole_never_filled_is_stepped_over_after_the_grace(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    holes = HoleWatch(grace=5.0, clock=clock)
    skipped = count("skipped")
    assert read(holes, fetched(batch(10), batch(13)), 10) == ([10], 11)
    clock.now += 4.9
    assert read(holes, fetched(batch(13)), 11) == ([], 11)
    clock.now += 0.2
    with caplog.at_level(logging.WARNING, logger=offset_holes.__name__):
        assert read(holes, fetched(batch(13), batch(14)), 11) == ([13, 14], 15)
    assert count("skipped") == skipped + 1
    assert "never stored offsets 11-12 of ps-orders-by-restaurant[3]" in caplog.text


def test_a_fetch_read_late_is_timed_by_when_it_was_received() -> None:
    """Faust can leave a fetched result unread for seconds; the hole may have been filled since it came."""
    clock = Clock()
    holes = HoleWatch(grace=5.0, clock=clock)
    assert read(holes, fetched(batch(10), batch(12)), 10) == ([10], 11)
    clock.now += 0.1
    received = partition_records_for(holes)(TP, fetched(batch(12)), [], 11, None, None, True, 0)
    clock.now += 6.0  # read now, 6.1 s after the hole was first seen
    assert [record.offset for record in received] == [] and received.next_fetch_offset == 11


def test_a_second_hole_waits_its_own_grace() -> None:
    clock = Clock()
    holes = HoleWatch(grace=5.0, clock=clock)
    assert read(holes, fetched(batch(10), batch(12)), 10) == ([10], 11)
    clock.now += 1.0
    assert read(holes, fetched(batch(11), batch(12), batch(14)), 11) == ([11, 12], 13)
    clock.now += 4.5  # 5.5 s after the first hole, 4.5 s after this one
    assert read(holes, fetched(batch(14)), 13) == ([], 13)


@pytest.fixture
def stock_fetcher() -> Iterator[None]:
    offset_holes.uninstall()
    yield
    offset_holes.uninstall()


@pytest.mark.usefixtures("stock_fetcher")
def test_install_replaces_the_fetchers_records_and_uninstall_restores_them() -> None:
    stock = fetcher.PartitionRecords
    assert not offset_holes.installed()
    offset_holes.install(grace=1.0)
    assert offset_holes.installed()
    assert issubclass(fetcher.PartitionRecords, stock)
    offset_holes.uninstall()
    assert fetcher.PartitionRecords is stock
