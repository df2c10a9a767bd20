"""Patch: a fenced worker drops the changelog records it buffered instead of sending them when the network heals.

aiokafka's producer keeps the records Faust hands it in its accumulator until its sender drains them to the
broker. A worker cut off from Kafka keeps them there, and they went out the moment the network healed: after the
records the partitions' new owner wrote meanwhile. Readers keep a key's newest stamp (tables/stamps.py), but a
compacted changelog keeps a key's *last* record, so a late stale one could outlive the true one there.

:func:`drop_changelog_while_held` wraps the sender's ``drain_by_nodes`` on one accumulator: before each drain,
while ``held()`` says so, every queued batch of the changelog topics is failed with :class:`DroppedWhileFenced`
instead of drained. Nothing is lost by it: a fenced worker commits no offset (transport.py), so the events those
records came from are read again, by the new owner or by this worker after it rebuilt its table.

A batch already in flight when the cut began (at most one request per broker connection) cannot be recalled;
the stamps keep it from winning.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

#: In Faust's per-record "_on_published error" warning for a dropped record (client_logs.py mutes it).
DROPPED_TEXT = "dropped by a fenced worker"


class DroppedWhileFenced(Exception):
    """A changelog record's failure (aiokafka copies it for each record, so it takes its text as an argument)."""


def dropped_while_fenced() -> DroppedWhileFenced:
    return DroppedWhileFenced(f"{DROPPED_TEXT}: its partition may have a new owner; the event is read again")


def drop_changelog_while_held(
    faust_producer: Any,
    topics: Callable[[], Collection[str]],
    held: Callable[[], bool],
    dropped: Callable[[int], None],
) -> None:
    """Wrap the accumulator's ``drain_by_nodes`` once (see the module docstring). ``dropped(n)`` is told each drop.

    Call it again at will (the producer may be replaced): it wraps each accumulator once.
    """
    aiokafka_producer = getattr(faust_producer, "_producer", None)
    accumulator = getattr(aiokafka_producer, "_message_accumulator", None)
    if accumulator is None or getattr(accumulator, "_partner_drop_while_held", False):
        return
    drain_by_nodes = accumulator.drain_by_nodes

    def drain_unless_held(ignore_nodes: Any, muted_partitions: Any = frozenset()) -> Any:
        if held():
            count = drop_queued_batches(accumulator, topics())
            if count:
                dropped(count)
        return drain_by_nodes(ignore_nodes, muted_partitions)

    accumulator.drain_by_nodes = drain_unless_held
    accumulator._partner_drop_while_held = True


def drop_queued_batches(accumulator: Any, topics: Collection[str]) -> int:
    """Fail and forget every queued (not in-flight) batch of ``topics``; the number of records dropped."""
    records = 0
    for tp in [tp for tp in accumulator._batches if tp.topic in topics]:
        for batch in accumulator._batches.pop(tp):
            records += batch.record_count
            # Released as if drained first: a send waiting for room behind a full batch then appends to a new
            # one (also dropped while held) instead of raising into Faust's producer buffer, which would crash.
            batch.drain_ready()
            batch.failure(dropped_while_fenced())
    return records
