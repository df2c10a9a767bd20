"""End-of-rebalance recovery that never throws away a record.

faust-streaming 0.15.3 ends every rebalance with ``Recovery.on_recovery_completed``:

1. resume the stream partitions (flow is already active: recovery resumed it to read changelogs);
2. ``perform_seek``: seek them to their committed offsets, one OffsetFetch round trip per
   partition, and then set each read offset back to the committed offset;
3. ``flow_control.resume()``, which clears every agent's queue (``clear_on_resume``).

The fetcher keeps delivering during step 2, so by step 3 the queues hold records read from
wherever aiokafka's position was; step 3 drops the unprocessed ones, and because step 2 rewound the
read offset *after* they were read, the next record looks like a gap, which Faust counts as
acknowledged. The next commit moves past records no agent ever saw (measured: about one SIGKILL
failover in four lost 7-19 orders per moved partition).

:class:`KeepReadRecordsRecovery` does the steps in the safe order, and keeps the queues:

1. forget the read offsets of the stream partitions: any left is from the previous generation (the
   drain loop can set one *after* the revoke cleared it, for a record in flight when flow stopped);
2. seek them to their committed offsets while they are still paused, and set each read offset to
   its committed offset, so nothing of this generation has been read yet and nothing can look
   like a gap;
3. resume them.

An earlier version resumed first and kept any read offset past the commit, assuming what was read
during the seek started at the committed offset. It did not always: when aiokafka had been asked
for an empty set of partitions during the takeover it drained the paused backlog and moved the
position past it (fixed in :mod:`partner_stream.faust_patches.transport`), and keeping that read offset made the
drain loop drop the re-fetched backlog as duplicates (issue #17).

A recovery that completes after the next rebalance has already started (its revoke bumps
``rebalancing_count`` before the generation changes) stops there, as for a new generation.
Nothing is broker-specific here; the window is only wider on a slow broker or a busy machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP


def forget_read_offsets(consumer: Any, stream_partitions: set[TP]) -> None:
    """Drop read offsets of the previous generation (see the module docstring, step 1)."""
    for tp in stream_partitions:
        consumer._read_offset.pop(tp, None)


async def begin_reading(consumer: Any, stream_partitions: set[TP], seek: Callable[[], Awaitable[None]] | None) -> None:
    """Steps 1-3 of the module docstring: forget stale read offsets, seek while paused, then resume."""
    forget_read_offsets(consumer, stream_partitions)
    if seek is not None:
        await seek()
    consumer.resume_partitions(stream_partitions)


async def seek_to_committed(consumer: Any) -> None:
    """``Consumer.perform_seek``: seek to the committed offsets, and read from exactly there."""
    committed = await consumer.seek_to_committed()
    consumer._read_offset.update(
        {tp: offset if offset is not None and offset >= 0 else None for tp, offset in committed.items()}
    )
    consumer._committed_offset.update({tp: offset or None for tp, offset in committed.items() if offset is not None})


class KeepReadRecordsRecovery(Recovery):
    #: ``app.rebalancing_count`` when this recovery's rebalance ended (set by :meth:`on_rebalance`).
    _rebalance_seen: int | None = None

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        self._rebalance_seen = self.app.rebalancing_count
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    def _superseded(self, generation_id: int) -> bool:
        """A newer rebalance started since this one: its own recovery will resume and seek."""
        if self.app.consumer_generation_id != generation_id:
            return True
        return self._rebalance_seen is not None and self.app.rebalancing_count != self._rebalance_seen

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        consumer: Any = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        table_callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if table_callbacks:
            await asyncio.wait(table_callbacks)
        assignment = consumer.assignment()
        if self._superseded(generation_id):
            self.log.warning(
                "Recovery rebalancing again (generation %r, expected %r)",
                self.app.consumer_generation_id,
                generation_id,
            )
            return
        stream_partitions = {tp for tp in assignment if not self._is_changelog_tp(tp)}

        async def seek() -> None:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(seek_to_committed(consumer), timeout=self.app.conf.broker_request_timeout)

        await begin_reading(consumer, stream_partitions, seek if assignment else None)
        self.completed.set()
        # Upstream calls flow_control.resume() here, which clears the queues. Recovery already resumed
        # flow control, so skipping that call changes nothing else.
        consumer.resume_flow()
        await self.app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")


class KeepReadRecordsTableManager(TableManager):
    """Faust's table manager with :class:`KeepReadRecordsRecovery` (the ``TableManager`` setting)."""

    @property
    def recovery(self) -> Any:
        if self._recovery is None:
            self._recovery = KeepReadRecordsRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
