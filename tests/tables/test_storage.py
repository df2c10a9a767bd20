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


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "DECODED_CACHE_SIZE", 2)
    codec = storage.RestaurantOrdersCodec()
    first = with_order("a")
    raw_first = codec.dumps(first)
    codec.dumps(with_order("b"))
    codec.dumps(with_order("c"))
    assert len(codec._decoded) == 2
    decoded = codec.loads(raw_first)  # evicted: decoded again, still equal
    assert decoded == first and decoded is not first


def test_other_values_are_refused() -> None:
    with pytest.raises(TypeError):
        storage.RestaurantOrdersCodec().dumps({"restaurantId": "42"})
