"""The end-of-rebalance seek must never make Faust skip a record it already handed to an agent."""

from faust.types import TP

from partner_stream.app import app
from partner_stream.recovery import KeepReadRecordsRecovery, merge_read_offsets

P0, P1, P2, P3 = (TP("order-created", n) for n in range(4))


def test_a_partition_read_past_its_commit_keeps_its_read_offset() -> None:
    # The case that lost orders: 36..54 were read while the seek to 36 was in flight. Rewinding the
    # read offset to 36 made record 55 look like a gap 37..55 that Faust then committed.
    merged = merge_read_offsets({P0: 54}, {P0: 36})
    assert merged[P0] == 54


def test_a_partition_not_read_yet_starts_at_its_commit() -> None:
    assert merge_read_offsets({}, {P0: 36}) == {P0: 36}


def test_a_stale_read_offset_below_the_commit_gives_way_to_the_commit() -> None:
    assert merge_read_offsets({P0: 10}, {P0: 36}) == {P0: 36}


def test_never_committed_partitions_keep_what_was_read() -> None:
    assert merge_read_offsets({P0: 7}, {P0: None, P1: None, P2: -1}) == {P0: 7, P1: None, P2: None}


def test_only_the_seeked_partitions_are_returned() -> None:
    assert set(merge_read_offsets({P3: 5}, {P0: 1})) == {P0}


def test_the_app_recovers_with_the_fixed_recovery() -> None:
    assert isinstance(app.tables.recovery, KeepReadRecordsRecovery)
