"""The embedded broker's end offsets: read from the newest stored batch, not from ListOffsets.

Tansu (0.6.0) answers ListOffsets(LATEST) with the newest batch's *base* offset + 1
(``tansu-storage/src/dynostore.rs``, ``list_offsets``), so a partition whose newest batch holds several
records looks shorter than it is. Faust's table recovery reads a changelog up to that end: a restart then
fails its consistency check ("persisted offset ... is higher than ... highwater"), or without the check
stops short and loses rows. That is why the embedded profile once sent every record in a batch of its own
(``producer_max_batch_size=1``), one produce request per changelog record.

Here the listed end is corrected instead: one Fetch per broker, at the listed end - 1 of each partition,
returns the partition's newest batch, and the end is where that batch ends. Fetch stops at the stored
batches, so a batch the broker has only announced (offset_holes.py) is not counted. An end is only ever
raised: the listed end is kept when the Fetch keeps returning nothing or failing.

Apache Kafka answers ListOffsets right: this runs for the embedded broker only (``app.true_end_offsets``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from collections.abc import Mapping
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

log = logging.getLogger(__name__)

#: A partition's newest batch is what the Fetch must return; a changelog record is < 512 KiB (tables/storage.py).
NEWEST_BATCH_BYTES = 4 * 1024 * 1024
#: The most the Fetch waits: only for a partition emptier than ListOffsets said.
FETCH_WAIT_MS = 100
#: Fetches of a partition's newest batch before ListOffsets' end is kept, and the pause between them.
ATTEMPTS = 5
RETRY_DELAY_SECONDS = 0.2


async def stored_end_offsets(client: Any, listed: Mapping[Any, int | None]) -> dict[Any, int | None]:
    """``listed`` (ListOffsets' answer per partition) with each end moved to the end of the newest stored batch.

    A partition whose batch the Fetch did not return is asked again, up to :data:`ATTEMPTS` times: keeping
    ListOffsets' end is the last resort, since a restart then fails Faust's consistency check (seen once in
    a measurement: one of four partitions came back without its batch, and the worker crashed at recovery
    with "persisted offset 49253 > highwater 49252").
    """
    ends = dict(listed)
    by_name = {(tp.topic, tp.partition): tp for tp in listed}
    unread = [tp for tp, end in listed.items() if end]  # an empty partition has no batch to read
    for attempt in range(1, ATTEMPTS + 1):
        stored = await _newest_batch_ends(client, unread, listed)
        for name, stored_end in stored.items():
            tp = by_name.get(name)
            if tp is not None and stored_end > (ends[tp] or 0):
                ends[tp] = stored_end
        unread = [tp for tp in unread if (tp.topic, tp.partition) not in stored]
        if not unread:
            break
        if attempt < ATTEMPTS:
            await asyncio.sleep(RETRY_DELAY_SECONDS)
    if unread:
        log.warning("no newest batch read for %d partitions in %d attempts: keeping ListOffsets", len(unread), ATTEMPTS)
    return ends


async def _newest_batch_ends(
    client: Any, tps: list[Any], listed: Mapping[Any, int | None]
) -> dict[tuple[str, int], int]:
    """One Fetch per leader of the newest batch of each of ``tps``; where each batch read ends."""
    by_node: dict[int, list[Any]] = collections.defaultdict(list)
    for tp in tps:
        by_node[client.cluster.leader_for_partition(tp)].append(tp)
    stored: dict[tuple[str, int], int] = {}
    for node_id, on_node in by_node.items():
        if node_id is None or node_id < 0:
            log.debug("no leader known for %d partitions yet", len(on_node))
            continue
        try:
            stored.update(ends_in(await client.send(node_id, newest_batch_request(on_node, listed))))
        except (KafkaError, ValueError, struct.error) as exc:
            log.debug("could not read the newest batches of %d partitions: %r", len(on_node), exc)
    return stored


def newest_batch_request(tps: list[Any], listed: Mapping[Any, int | None]) -> FetchRequest:
    by_topic: dict[str, list[tuple[int, int, int]]] = collections.defaultdict(list)
    for tp in tps:
        by_topic[tp.topic].append((tp.partition, (listed[tp] or 1) - 1, NEWEST_BATCH_BYTES))
    # The batch is there (ListOffsets saw it), so the answer comes at once; but Tansu answers a Fetch that may not
    # wait at all before it reads anything. Faust's consumer reads uncommitted records (isolation level 0).
    return FetchRequest(FETCH_WAIT_MS, 1, NEWEST_BATCH_BYTES * len(tps), 0, list(by_topic.items()))


def ends_in(response: Any) -> dict[tuple[str, int], int]:
    """Where the last batch of each fetched (topic, partition) ends (those with an error or no batch left out)."""
    ends: dict[tuple[str, int], int] = {}
    for topic, partitions in response.topics:
        for partition, error_code, _highwater, *part_data in partitions:
            records = part_data[-1]  # every Fetch version ends a partition's answer with its record set
            if error_code or not records:
                continue
            batches = MemoryRecords(bytes(records))
            end = None
            while (batch := batches.next_batch()) is not None:
                end = batch.next_offset
            if end is not None:
                ends[(topic, partition)] = end
    return ends
