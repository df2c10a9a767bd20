"""The end-of-rebalance seek must never make Faust skip a record it already handed to an agent."""

from faust.types import TP

from partner_stream.app import app
from partner_stream.recovery import (
    KeepReadRecordsRecovery,
    merge_read_offsets,
    resume_stream_partitions,
    seek_to_committed,
)

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


class FakeConsumer:
    """The parts of Faust's consumer the recovery touches; the drain loop is played by ``deliver``."""

    def __init__(self, committed: dict[TP, int | None], read: dict[TP, int]) -> None:
        self.committed = committed
        self._read_offset: dict[TP, int | None] = dict(read)
        self._committed_offset: dict[TP, int | None] = {}
        self.resumed: set[TP] = set()

    def resume_partitions(self, tps: set[TP]) -> None:
        self.resumed |= tps

    def deliver(self, tp: TP, offset: int) -> None:
        self._read_offset[tp] = offset

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return dict(self.committed)


async def test_a_read_offset_left_by_the_previous_generation_does_not_skip_records() -> None:
    # Found by the failover benchmark: the survivor had read P0 up to 164 before the rebalance, the
    # commit was 162; keeping 164 dropped 162 and 163 as duplicates although no agent had them.
    consumer = FakeConsumer(committed={P0: 162, P1: 40}, read={P0: 164})
    resume_stream_partitions(consumer, {P0, P1})
    consumer.deliver(P1, 40)  # this generation, during the seek
    consumer.deliver(P1, 41)
    await seek_to_committed(consumer)
    assert consumer._read_offset[P0] == 162
    assert consumer._read_offset[P1] == 41
    assert consumer._committed_offset == {P0: 162, P1: 40}
    assert consumer.resumed == {P0, P1}
