"""The table codec: exact round trips, and decoded values shared instead of re-parsed."""

from __future__ import annotations

import pytest

from tables import storage
from tables.model import RestaurantOrders
from tables.transitions import apply_event

from .test_transitions import MEMORY, created


def with_order(order: str) -> RestaurantOrders:
    state, _ = apply_event(RestaurantOrders.empty("42"), created(order), resolved_memory=MEMORY)
    return state


def test_round_trip_gives_back_an_equal_value() -> None:
    codec = storage.RestaurantOrdersCodec()
    state = with_order("a")
    assert codec.loads(codec.dumps(state)) == state


def test_reading_back_what_was_written_reuses_the_value() -> None:
    codec = storage.RestaurantOrdersCodec()
    state = with_order("a")
    raw = codec.dumps(state)
    assert codec.loads(raw) is state
    assert codec.loads(bytearray(raw)) is state  # RocksDB may hand back other bytes-likes


def test_only_the_latest_version_of_a_restaurant_is_kept() -> None:
    codec = storage.RestaurantOrdersCodec()
    first = with_order("a")
    raw_first = codec.dumps(first)
    second, _ = apply_event(first, created("b"), resolved_memory=MEMORY)
    codec.dumps(second)
    assert len(codec._latest) == 1
    decoded = codec.loads(raw_first)  # an older version: decoded again, still equal
    assert decoded == first and decoded is not first


def test_the_cache_is_bounded_by_restaurants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "DECODED_CACHE_SIZE", 2)
    codec = storage.RestaurantOrdersCodec()
    values = [
        apply_event(RestaurantOrders.empty(r), created("a", restaurant=r), resolved_memory=MEMORY)[0] for r in "xyz"
    ]
    raws = [codec.dumps(v) for v in values]
    assert len(codec._latest) == 2
    assert codec.loads(raws[0]) is not values[0]  # the oldest restaurant was evicted
    assert codec.loads(raws[2]) is values[2]


def test_ids_that_need_escaping_round_trip() -> None:
    codec = storage.RestaurantOrdersCodec()
    state = RestaurantOrders.empty('r"1","seq":9')
    assert codec.loads(codec.dumps(state)) == state


def test_writing_a_value_encodes_it_once() -> None:
    codec = storage.RestaurantOrdersCodec()
    state = with_order("a")
    assert codec.dumps(state) is codec.dumps(state)


def test_other_values_are_refused() -> None:
    with pytest.raises(TypeError):
        storage.RestaurantOrdersCodec().dumps({"restaurantId": "42"})
