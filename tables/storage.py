"""How the pending-orders table is stored: raw restaurant-ID keys, compact camelCase JSON values."""

from __future__ import annotations

from typing import Any

import faust
from faust.serializers import codecs

from .model import RestaurantOrders

CODEC_NAME = "restaurant-orders"


#: Decoded values kept per codec: the agent reads back what it just wrote, and a reconnect storm
#: reads the same restaurant for every tablet. Values are frozen, so sharing them is safe.
DECODED_CACHE_SIZE = 4096


class RestaurantOrdersCodec(codecs.Codec):
    """Faust codec between :class:`RestaurantOrders` and the bytes in RocksDB and the changelog."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._decoded: dict[bytes, RestaurantOrders] = {}

    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, RestaurantOrders):
            raise TypeError(f"pending-orders values must be RestaurantOrders, not {type(obj).__name__}")
        raw = obj.to_bytes()
        self._remember(raw, obj)
        return raw

    def _loads(self, s: bytes) -> RestaurantOrders:
        raw = bytes(s)
        cached = self._decoded.get(raw)
        if cached is None:
            cached = RestaurantOrders.from_bytes(raw)
            self._remember(raw, cached)
        return cached

    def _remember(self, raw: bytes, value: RestaurantOrders) -> None:
        decoded = self._decoded
        if len(decoded) >= DECODED_CACHE_SIZE:
            del decoded[next(iter(decoded))]  # oldest first: dicts keep insertion order
        decoded[raw] = value


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
