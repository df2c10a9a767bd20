"""Which table partition a restaurant lives on, and whether an upstream record is already there.

A restaurant's partition is the producer's partitioner over its raw ID bytes on the
table's changelog topic: the same hash Faust uses for ``table_route`` and the re-key
step uses when it forwards. An upstream record that the OrderService keyed by
restaurant ID with the Kafka default partitioner (murmur2), on a topic with as many
partitions as the table, already sits on that partition: Faust assigns such
co-partitioned topics to the same worker as the table partition, so the record can
be applied where it is, skipping the re-key hop (a produce, a fetch and a second
pass through Faust per event).

Two more conditions make it safe: this worker must hold the *active* replica of that
table partition (Faust's assignment, checked per record: an upstream topic resized
to match the table is co-assigned only from the next rebalance on), and partition
counts are read once per assignment, so the route of an upstream partition cannot
flip mid-generation on a metadata refresh. Within a generation the choice depends
only on (topic, partition, restaurant): every record of a restaurant on one upstream
partition takes the same path, in order.

Faust's own lookups (``table_route``, the owner's URL) hash with the producer, which
knows only the topics it tracks: :func:`learn_table_partitions` makes it track the
table's from startup.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import DefaultPartitioner
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from .app import app, by_restaurant_topic, pending_orders
from .faust_patches import aiokafka_consumer, aiokafka_producer_client


def changelog_topic_name() -> str:
    return pending_orders.changelog_topic.get_topic_name()


def changelog_partition(restaurant_id: str) -> TP:
    """The restaurant's table partition (KeyError until this worker has the changelog's metadata)."""
    topic = changelog_topic_name()
    partitions = partition_count(topic)
    if not partitions:
        raise KeyError(f"no partition metadata for {topic} yet")
    return TP(topic, _partition_of(restaurant_id, partitions))


def is_on_restaurant_partition(topic: str, partition: int, restaurant_id: str) -> bool:
    """True when a record at ``topic[partition]`` can be applied here: on its restaurant's active partition."""
    changelog = changelog_topic_name()
    partitions = partition_count(changelog)
    if not partitions or partition_count(topic) != partitions:
        return False
    if _partition_of(restaurant_id, partitions) != partition:
        return False
    return app.assignor.is_active(TP(changelog, partition))


#: Partition counts by topic, read once per assignment (cleared when partitions are assigned).
_partition_counts: dict[str, int] = {}


def partition_count(topic: str) -> int | None:
    """Partitions of a topic this worker consumes, from its consumer's cluster metadata.

    Not Faust's ``consumer.topic_partitions()``: that reads aiokafka's group-subscription
    snapshot, which only the group leader fills, so every other worker would get None.
    """
    known = _partition_counts.get(topic)
    if known is not None:
        return known
    try:
        consumer = aiokafka_consumer(app)
        # The consumer thread may swap the metadata while we read it: treat that as "not known yet".
        partitions = consumer.partitions_for_topic(topic)
    except (ConsumerNotStarted, KeyError):
        return None
    if not partitions:
        return None
    _partition_counts[topic] = len(partitions)
    return len(partitions)


def forget_partition_counts() -> None:
    """A new assignment may follow a resized topic: read the counts again (runtime calls this on assignment)."""
    _partition_counts.clear()


async def learn_table_partitions() -> None:
    """Make the producer keep the metadata of the topics Faust hashes restaurant IDs against.

    Faust's ``table_route`` (the operator API, the owner lookup) asks the producer which partition
    a key is on, and aiokafka's producer refreshes metadata only for the topics it tracks (those
    it has produced to): on a worker that has not written the changelog yet, routed requests
    would fail. ``add_topic`` tracks the topic for good (``partitions_for`` would only fetch it once).
    """
    client = aiokafka_producer_client(app)
    for topic in (changelog_topic_name(), by_restaurant_topic.get_topic_name()):
        await client.add_topic(topic)


#: Restaurant IDs are at most 128 characters (checked at every edge before routing): ~5 MB at most.
@lru_cache(maxsize=16384)
def _partition_of(restaurant_id: str, partitions: int) -> int:
    """What Faust's producer computes for the key on a topic of ``partitions`` partitions.

    Computed here rather than asked of the producer, whose metadata only covers topics it has
    produced to (so the answer never depends on what was sent first). ``partitions`` is part of
    the cache key: a topic that grows gets fresh answers.
    """
    partitioner = app.conf.producer_partitioner or DefaultPartitioner()
    key_bytes = pending_orders.changelog_topic.prepare_key(restaurant_id, None)[0]
    everything = list(range(partitions))
    return partitioner(key_bytes, everything, everything)
