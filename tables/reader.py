"""Reading a restaurant's records out of any store of raw bytes: the lookups transitions need, and snapshots.

Shared by the Faust table (:mod:`tables.storage`) and its in-memory twin (:mod:`tables.memory`); each says how
to read one key (:meth:`RecordReader.raw`) and how to list the restaurant's order records by key prefix.
"""

from __future__ import annotations

from collections.abc import Iterator

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
)
from .stamps import UNSTAMPED, Stamp, stamp_of


class RecordReader:
    def raw(self, key: str) -> bytes | None:
        raise NotImplementedError

    def raw_with_prefix(self, prefix: bytes) -> Iterator[bytes]:
        """The values of every key that starts with ``prefix``."""
        raise NotImplementedError

    # -- the lookups transitions read (tables.transitions.Records) --------------------------------------

    def head(self, restaurant_id: str) -> Head:
        raw = self.raw(head_key(restaurant_id))
        return decode_head(raw) if raw is not None else RestaurantHead.empty(restaurant_id)

    def order(self, restaurant_id: str, order_id: str) -> OrderRecord | None:
        raw = self.raw(order_key(restaurant_id, order_id))
        return decode_order(raw) if raw is not None else None

    def ring(self, restaurant_id: str, slot: int) -> str | None:
        raw = self.raw(ring_key(restaurant_id, slot))
        return decode_ring_slot(raw) if raw is not None else None

    # -- the view clients read ----------------------------------------------------------------------------

    def read_version(self, restaurant_id: str) -> Stamp | None:
        """The stamp of the restaurant's head, one key read: it changes with every change a tablet can see.

        Not only the ``seq``: after a fence the table is rebuilt from the changelog and events are applied
        again, possibly in another order, so the same ``seq`` can come back with other orders; those writes
        carry a newer generation. None for a head written before stamps (unversioned: read the orders).
        """
        raw = self.raw(head_key(restaurant_id))
        if raw is None:
            return UNSTAMPED
        stamp = stamp_of(raw)
        return None if stamp == UNSTAMPED else stamp

    def read_state(self, restaurant_id: str) -> RestaurantOrders:
        """The restaurant's pending orders and ``seq``, oldest first (empty if it never had an order)."""
        head = self.head(restaurant_id)
        if isinstance(head, LegacyRestaurantOrders):
            return head.view()
        records = (decode_order(raw) for raw in self.raw_with_prefix(orders_prefix(restaurant_id)))
        pending = sorted((r for r in records if isinstance(r, PendingOrder)), key=display_order)
        return RestaurantOrders(restaurant_id=restaurant_id, seq=head.seq, pending=tuple(pending))
