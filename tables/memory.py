"""The pending-orders table in a dict: the same keys, bytes and reads as :mod:`tables.storage`, no Faust.

For tests and benchmarks of the transitions, the hub and the decoders: every record goes through the real
encoding, so a round-trip bug shows up here too. ``data`` may be any mutable mapping of bytes, such as a
``rocksdict.Rdict`` (the bench's table scenario uses one, to pay what RocksDB costs).
"""

from __future__ import annotations

import contextlib
from collections.abc import MutableMapping

from .keys import head_key, order_key, orders_prefix, ring_key
from .model import (
    Head,
    LegacyRestaurantOrders,
    OrderRecord,
    PendingOrder,
    RestaurantHead,
    RestaurantOrders,
    decode_head,
    decode_order,
    decode_ring_slot,
    display_order,
    encode_record,
)
from .stamps import next_stamp, stamped
from .transitions import Outcome


class MemoryTable:
    def __init__(self, data: MutableMapping[bytes, bytes] | None = None) -> None:
        self.data: MutableMapping[bytes, bytes] = data if data is not None else {}

    def head(self, restaurant_id: str) -> Head:
        raw = self.data.get(head_key(restaurant_id).encode())
        return decode_head(raw) if raw is not None else RestaurantHead.empty(restaurant_id)

    def order(self, restaurant_id: str, order_id: str) -> OrderRecord | None:
        raw = self.data.get(order_key(restaurant_id, order_id).encode())
        return decode_order(raw) if raw is not None else None

    def ring(self, restaurant_id: str, slot: int) -> str | None:
        raw = self.data.get(ring_key(restaurant_id, slot).encode())
        return decode_ring_slot(raw) if raw is not None else None

    def write(self, outcome: Outcome, generation: int = 0) -> None:
        for key in outcome.deletes:
            with contextlib.suppress(KeyError):
                del self.data[key.encode()]
        head_before = self.data.get(outcome.head_key.encode()) if outcome.head_key is not None else None
        stamp = next_stamp(generation, head_before, outcome.seq_after)
        for key, record in outcome.writes:
            self.data[key.encode()] = stamped(encode_record(record), stamp)

    def reopen_and_write(self, outcome: Outcome, generation: int = 0) -> None:
        self.write(outcome, generation)

    def state_of(self, restaurant_id: str) -> RestaurantOrders:
        head = self.head(restaurant_id)
        if isinstance(head, LegacyRestaurantOrders):
            return head.view()
        prefix = orders_prefix(restaurant_id)
        records = (decode_order(raw) for key, raw in list(self.data.items()) if key.startswith(prefix))
        pending = sorted((r for r in records if isinstance(r, PendingOrder)), key=display_order)
        return RestaurantOrders(restaurant_id=restaurant_id, seq=head.seq, pending=tuple(pending))
