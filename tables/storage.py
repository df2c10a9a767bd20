"""How the pending-orders table is stored: raw restaurant-ID keys, compact camelCase JSON values."""

from __future__ import annotations

from typing import Any

import faust
from faust.serializers import codecs

from .model import RestaurantOrders

CODEC_NAME = "restaurant-orders"


#: Restaurants whose latest value is kept decoded: the agent reads back what it just wrote, and every
#: tablet of a restaurant reads the same value on reconnect. One entry per restaurant (its latest
#: version), so the bound is on restaurants, not on versions. Values are frozen: sharing is safe.
DECODED_CACHE_SIZE = 2048

#: Every stored value starts with the restaurant ID (the model's first field); the bytes up to the
#: ``seq`` field name the cache slot without decoding. A wrong guess only costs a cache miss: a hit
#: needs the whole stored value to be byte-for-byte the cached one.
_PREFIX = b'{"restaurantId":"'
_ID_END = b'","seq":'


def _slot(raw: bytes) -> bytes | None:
    if not raw.startswith(_PREFIX):
        return None
    end = raw.find(_ID_END, len(_PREFIX))
    return raw[len(_PREFIX) : end] if end > 0 else None


class RestaurantOrdersCodec(codecs.Codec):
    """Faust codec between :class:`RestaurantOrders` and the bytes in RocksDB and the changelog."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._latest: dict[bytes, tuple[bytes, RestaurantOrders]] = {}
        # Faust encodes each written value twice (store, then changelog): the second is free.
        self._last_encoded: tuple[RestaurantOrders, bytes] | None = None

    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, RestaurantOrders):
            raise TypeError(f"pending-orders values must be RestaurantOrders, not {type(obj).__name__}")
        last = self._last_encoded
        if last is not None and last[0] is obj:
            return last[1]
        raw = obj.to_bytes()
        self._last_encoded = (obj, raw)
        self._remember(raw, obj)
        return raw

    def _loads(self, s: bytes) -> RestaurantOrders:
        raw = bytes(s)
        slot = _slot(raw)
        cached = self._latest.get(slot) if slot is not None else None
        if cached is not None and cached[0] == raw:
            return cached[1]
        value = RestaurantOrders.from_bytes(raw)
        self._remember(raw, value)
        return value

    def _remember(self, raw: bytes, value: RestaurantOrders) -> None:
        slot = _slot(raw)
        if slot is None:
            return
        latest = self._latest
        latest.pop(slot, None)  # re-inserted last: eviction below is least recently written/read
        if len(latest) >= DECODED_CACHE_SIZE:
            del latest[next(iter(latest))]
        latest[slot] = (raw, value)


def register_codec() -> None:
    """Make the codec available to Faust by name (idempotent)."""
    codecs.register(CODEC_NAME, RestaurantOrdersCodec())


class PendingOrdersTable(faust.Table):
    """A Faust table keyed by the raw restaurant-ID bytes, valued by :class:`RestaurantOrders`.

    Faust derives a table's serializers from its key/value types and falls back to JSON.
    Keys must be the raw bytes the re-key topic uses, so the changelog partition, the
    stream partition and ``table_route``'s owner lookup agree. Set here, in ``__init__``,
    because the changelog topic is built from these right after construction.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_serializer = "raw"
        self.value_serializer = CODEC_NAME

    def state_of(self, restaurant_id: str) -> RestaurantOrders:
        """The restaurant's value, or its empty state if it never had an order.

        Read from the store itself: ``Table.get`` asks the store whether the key exists before reading
        it (tables support defaults), two RocksDB lookups where one does. Every applied event and
        every reconnecting tablet reads this.
        """
        return self.data.get(restaurant_id) or RestaurantOrders.empty(restaurant_id)


def create_table(app: faust.App, *, partitions: int) -> PendingOrdersTable:
    register_codec()
    table = PendingOrdersTable(
        app,
        name="pending-orders",
        key_type=str,
        partitions=partitions,
        beacon=app.tables.beacon,
        help="Pending orders of each restaurant, keyed by restaurant ID.",
    )
    return app.tables.add(table)  # type: ignore[return-value]
