"""Which upstream records may skip the re-key hop: only those this worker can apply correctly."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from partner_stream import routing
from partner_stream.app import app

PARTITIONS = 4


@pytest.fixture
def metadata(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Partition counts as this worker's consumer would report them; the table has PARTITIONS."""
    counts = {routing.changelog_topic_name(): PARTITIONS, "order-created": PARTITIONS}
    monkeypatch.setattr(routing, "partition_count", counts.get)
    return counts


@pytest.fixture
def actives(monkeypatch: pytest.MonkeyPatch) -> set[TP]:
    active: set[TP] = set()
    monkeypatch.setattr(app.assignor, "is_active", lambda tp: tp in active)
    return active


def home(restaurant: str) -> int:
    return routing._partition_of(restaurant, PARTITIONS)


def test_a_record_on_its_restaurants_active_partition_is_applied_here(
    metadata: dict[str, int], actives: set[TP]
) -> None:
    actives.add(TP(routing.changelog_topic_name(), home("r-1")))
    assert routing.is_on_restaurant_partition("order-created", home("r-1"), "r-1")


def test_a_record_on_another_partition_takes_the_hop(metadata: dict[str, int], actives: set[TP]) -> None:
    other = (home("r-1") + 1) % PARTITIONS
    actives.update(TP(routing.changelog_topic_name(), p) for p in range(PARTITIONS))
    assert not routing.is_on_restaurant_partition("order-created", other, "r-1")


def test_a_partition_this_worker_is_not_active_for_takes_the_hop(metadata: dict[str, int], actives: set[TP]) -> None:
    """A topic resized to the table's count is co-assigned only from the next rebalance on."""
    assert not routing.is_on_restaurant_partition("order-created", home("r-1"), "r-1")


def test_a_topic_with_another_partition_count_takes_the_hop(metadata: dict[str, int], actives: set[TP]) -> None:
    metadata["order-created"] = PARTITIONS * 2
    actives.update(TP(routing.changelog_topic_name(), p) for p in range(PARTITIONS))
    assert not routing.is_on_restaurant_partition("order-created", home("r-1"), "r-1")


def test_the_partition_is_the_producers(metadata: dict[str, int]) -> None:
    """The same murmur2 partition aiokafka's default partitioner gives the raw restaurant-ID key."""
    everything = list(range(PARTITIONS))
    assert routing.changelog_partition("r-1").partition == DefaultPartitioner()(b"r-1", everything, everything)
