"""The end-of-rebalance seek must never make Faust skip a record: seek while paused, then resume."""

from faust.types import TP

from partner_stream.app import app
from partner_stream.faust_patches.recovery import KeepReadRecordsRecovery, begin_reading, seek_to_committed

P0, P1 = (TP("order-created", n) for n in range(2))


class FakeConsumer:
    """The parts of Faust's consumer the recovery touches; the drain loop is played by ``deliver``."""

    def __init__(self, committed: dict[TP, int | None], read: dict[TP, int]) -> None:
        self.committed = committed
        self._read_offset: dict[TP, int | None] = dict(read)
        self._committed_offset: dict[TP, int | None] = {}
        self.resumed: set[TP] = set()
        self.calls: list[str] = []
        self.delivered: list[tuple[TP, int]] = []

    def resume_partitions(self, tps: set[TP]) -> None:
        self.calls.append("resume")
        self.resumed |= tps

    async def seek_to_committed(self) -> dict[TP, int | None]:
        self.calls.append("seek")
        return dict(self.committed)

    def deliver(self, tp: TP, offset: int) -> None:
        """Faust's drain rule: a record below the read offset is a duplicate and is dropped."""
        read = self._read_offset.get(tp)
        if read is None or offset >= read:
            self.delivered.append((tp, offset))
            self._read_offset[tp] = offset


def test_the_app_recovers_with_the_fixed_recovery() -> None:
    assert isinstance(app.tables.recovery, KeepReadRecordsRecovery)


async def test_partitions_are_sought_while_paused_and_resumed_after() -> None:
    consumer = FakeConsumer(committed={P0: 162, P1: 40}, read={})
    await begin_reading(consumer, {P0, P1}, lambda: seek_to_committed(consumer))
    assert consumer.calls == ["seek", "resume"]
    assert consumer._read_offset == {P0: 162, P1: 40}
    assert consumer._committed_offset == {P0: 162, P1: 40}
    assert consumer.resumed == {P0, P1}


async def test_a_read_offset_left_by_the_previous_generation_does_not_skip_records() -> None:
    # Found by the failover benchmark: the survivor had read P0 up to 164 before the rebalance, the
    # commit was 162; keeping 164 dropped 162 and 163 as duplicates although no agent had them.
    consumer = FakeConsumer(committed={P0: 162}, read={P0: 164})
    await begin_reading(consumer, {P0}, lambda: seek_to_committed(consumer))
    for offset in range(162, 166):
        consumer.deliver(P0, offset)
    assert [offset for _, offset in consumer.delivered] == [162, 163, 164, 165]


async def test_a_backlog_read_past_the_commit_during_the_takeover_is_read_again_from_the_commit() -> None:
    """Issue #17: aiokafka had drained P0 up to 137 and moved past it; the commit was 103.

    The earlier recovery resumed first, read 138-140 during the seek, kept read offset 140 and then
    dropped the re-fetched 103..139 as duplicates: orders never applied.
    """
    consumer = FakeConsumer(committed={P0: 103}, read={})
    await begin_reading(consumer, {P0}, lambda: seek_to_committed(consumer))
    for offset in range(103, 142):  # what aiokafka returns after the seek, from the commit on
        consumer.deliver(P0, offset)
    assert [offset for _, offset in consumer.delivered] == list(range(103, 142))


async def test_never_committed_partitions_read_from_the_start() -> None:
    consumer = FakeConsumer(committed={P0: None, P1: -1}, read={P0: 7})
    await begin_reading(consumer, {P0, P1}, lambda: seek_to_committed(consumer))
    assert consumer._read_offset == {P0: None, P1: None}


async def test_without_an_assignment_nothing_is_sought() -> None:
    consumer = FakeConsumer(committed={}, read={})
    await begin_reading(consumer, set(), None)
    assert consumer.calls == ["resume"]


def test_a_recovery_overtaken_by_the_next_rebalance_does_not_resume_the_partitions() -> None:
    """The generation changes only at assignment; the next rebalance's revoke bumps rebalancing_count first."""

    class App:
        consumer_generation_id = 7
        rebalancing_count = 3

    recovery = KeepReadRecordsRecovery.__new__(KeepReadRecordsRecovery)  # only _superseded is exercised
    recovery.app = App()  # type: ignore[assignment]
    recovery._rebalance_seen = 3
    assert not recovery._superseded(7)
    assert recovery._superseded(6)  # a newer generation
    App.rebalancing_count = 4  # the next rebalance started, same generation so far
    assert recovery._superseded(7)
