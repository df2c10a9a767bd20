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
raised: the listed end is kept when the Fetch returns nothing or fails.

Apache Kafka answers ListOffsets right: this runs for the embedded broker only (``app.true_end_offsets``).
"""

from __future__ import annotations

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


async def stored_end_offsets(client: Any, listed: Mapping[Any, int | None]) -> dict[Any, int | None]:
    """``listed`` (ListOffsets' answer per partition) with each end moved to the end of the newest stored batch."""
    ends = dict(listed)
    by_node: dict[int, list[Any]] = collections.defaultdict(list)
    for tp, end in listed.items():
        if end:  # an empty partition has no batch to read
            by_node[client.cluster.leader_for_partition(tp)].append(tp)
    by_name = {(tp.topic, tp.partition): tp for tp in listed}
    for node_id, tps in by_node.items():
        if node_id is None or node_id < 0:
            log.warning("no leader known for %d partitions: keeping ListOffsets' end offsets", len(tps))
            continue
        try:
            response = await client.send(node_id, newest_batch_request(tps, listed))
            stored = ends_in(response)
        except (KafkaError, ValueError, struct.error) as exc:
            log.warning("could not read the newest batches of %d partitions, keeping ListOffsets: %r", len(tps), exc)
            continue
        if len(stored) < len(tps):
            log.warning(
                "no newest batch read for %d of %d partitions: keeping ListOffsets", len(tps) - len(stored), len(tps)
            )
        for name, stored_end in stored.items():
            tp = by_name.get(name)
            if tp is not None and stored_end > (ends[tp] or 0):
                ends[tp] = stored_end
    return ends


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
