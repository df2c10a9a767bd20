"""The records a restaurant's state is stored as, and the view clients are given.

Each record is small and does not grow with the restaurant's history (see :mod:`tables.keys` for where
each lives): a head with the restaurant's ``seq``, one record per order, and a fixed-size ring of the last
``PARTNER_STREAM_RESOLVED_MEMORY`` (default 500) resolved order IDs. An event therefore costs the same in a
restaurant with 2,000 open orders as in an empty one, and no record can outgrow a Kafka request.
Field names serialise in camelCase, the shape tablets receive (as ASP.NET Core's System.Text.Json writes it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

from .stamps import payload_of


class StoredModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore")

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", by_alias=True))


class StorageUnavailable(Exception):
    """The local store cannot be read consistently right now (it refused a write and is being reopened)."""


def _utc(value: datetime) -> datetime:
    """Layouts before 2026-12-04 stored a date-time without offset as the producer sent it: it means UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: A stored date-time, always with an offset, so that orders of any age sort together.
StoredTime = Annotated[datetime, AfterValidator(_utc)]


def json_time(value: datetime | None) -> str | None:
    """A date-time as clients see it everywhere: ISO 8601 with ``Z`` for UTC, as pydantic writes the orders."""
    if value is None:
        return None
    return _utc(value).isoformat().replace("+00:00", "Z")


class OrderLine(StoredModel):
    name: str
    quantity: int
    unit_price: float
    notes: str | None = None


class PendingOrder(StoredModel):
    """An order waiting for the kitchen (key ``<restaurant>␟o␟<order>``)."""

    order_id: str
    restaurant_id: str
    customer_name: str
    items: tuple[OrderLine, ...]
    total_price: float
    created_at: StoredTime
    #: The restaurant's ``seq`` at which this order appeared.
    seq: int
    #: First time any tablet of the restaurant reported showing it (None: nobody has seen it yet).
    acknowledged_at: StoredTime | None = None
    #: What the platform was told (partner_stream/announcer.py), so that no owner tells it twice: the last
    #: OrderUnseen step published (None: none), and whether OrderSeen was. Not shown to tablets.
    unseen_step: int | None = None
    seen_announced: bool = False


#: Fields of a stored order that tablets are not sent.
INTERNAL_FIELDS = frozenset({"unseen_step", "seen_announced"})


class Resolution(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class ResolvedOrder(StoredModel):
    """What replaces an order's record once it is accepted or rejected (or resolved before it arrived).

    Kept while the order is among the restaurant's last ``resolved_memory`` resolutions, so a late or
    duplicate OrderCreated cannot bring it back.
    """

    order_id: str
    resolution: Resolution


class RestaurantHead(StoredModel):
    """The per-restaurant record (key: the restaurant ID)."""

    restaurant_id: str
    #: Bumped by every change a tablet can see (order added, resolved or acknowledged).
    seq: int = 0
    #: Resolutions remembered so far; the next one goes to ring slot ``resolved_count % resolved_memory``.
    resolved_count: int = 0

    @classmethod
    def empty(cls, restaurant_id: str) -> RestaurantHead:
        return cls(restaurant_id=restaurant_id)


class RestaurantOrders(StoredModel):
    """A restaurant's pending orders as clients see them: the snapshot view, read from the records."""

    restaurant_id: str
    seq: int = 0
    #: Orders waiting for the kitchen, oldest ``created_at`` first (ties by order ID).
    pending: tuple[PendingOrder, ...] = ()

    def find_pending(self, order_id: str) -> PendingOrder | None:
        return next((order for order in self.pending if order.order_id == order_id), None)

    @classmethod
    def empty(cls, restaurant_id: str) -> RestaurantOrders:
        return cls(restaurant_id=restaurant_id)


def display_order(order: PendingOrder) -> tuple[datetime, str]:
    """Oldest first, as a kitchen works; upstream partitions interleave, so arrival order means nothing."""
    return (order.created_at, order.order_id)


class LegacyRestaurantOrders(StoredModel):
    """A value of the layout before 2026-12-04: one record per restaurant holding all of its state.

    Read wherever a head is read; the restaurant's next event rewrites it as per-order records
    (:func:`tables.transitions.migrate_legacy`).
    """

    restaurant_id: str
    seq: int = 0
    pending: tuple[PendingOrder, ...] = ()
    #: Recently resolved order IDs, oldest first.
    resolved: tuple[str, ...] = ()
    #: The subset of ``resolved`` that was rejected.
    rejected: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _read_older_values(cls, data: Any) -> Any:
        """Values stored before 2026-11-26 listed resolutions as ``{"orderId", "resolution"}`` objects."""
        if isinstance(data, dict):
            resolved = data.get("resolved")
            if resolved and isinstance(resolved[0], dict):
                data = {
                    **data,
                    "resolved": [r["orderId"] for r in resolved],
                    "rejected": [r["orderId"] for r in resolved if r.get("resolution") == Resolution.REJECTED],
                }
        return data

    def view(self) -> RestaurantOrders:
        return RestaurantOrders(
            restaurant_id=self.restaurant_id, seq=self.seq, pending=tuple(sorted(self.pending, key=display_order))
        )


Head = RestaurantHead | LegacyRestaurantOrders
OrderRecord = PendingOrder | ResolvedOrder
Record = RestaurantHead | PendingOrder | ResolvedOrder | str


def decode_head(raw: bytes) -> Head:
    data = orjson.loads(payload_of(raw))
    if "pending" in data or "resolved" in data:
        return LegacyRestaurantOrders.model_validate(data)
    return RestaurantHead.model_validate(data)


def decode_order(raw: bytes) -> OrderRecord:
    data = orjson.loads(payload_of(raw))
    if "resolution" in data:
        return ResolvedOrder.model_validate(data)
    return PendingOrder.model_validate(data)


def decode_ring_slot(raw: bytes) -> str:
    return payload_of(raw).decode()


def encode_record(record: Record) -> bytes:
    """Bytes of any record, unstamped; a ring slot is the bare order ID."""
    if isinstance(record, str):
        return record.encode()
    return record.to_bytes()
