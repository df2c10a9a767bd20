"""The value stored per restaurant in the ``pending-orders`` table.

One value per restaurant key, re-serialised on every change, so it must stay
small: it holds only orders still waiting for the kitchen, plus a bounded memory
of recently resolved order IDs (``resolved``), trimmed to the configured size
(``PARTNER_STREAM_RESOLVED_MEMORY``, default 500). Accepted and rejected orders
leave ``pending`` at once. Field names serialise in camelCase, the shape tablets
receive (as ASP.NET Core's System.Text.Json would write it).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


class StoredModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore")


class OrderLine(StoredModel):
    name: str
    quantity: int
    unit_price: float
    notes: str | None = None


class PendingOrder(StoredModel):
    order_id: str
    restaurant_id: str
    customer_name: str
    items: tuple[OrderLine, ...]
    total_price: float
    created_at: datetime
    #: The restaurant's ``seq`` at which this order appeared.
    seq: int
    #: First time any tablet of the restaurant reported showing it (None: nobody has seen it yet).
    acknowledged_at: datetime | None = None


class Resolution(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class RestaurantOrders(StoredModel):
    restaurant_id: str
    #: Bumped by every change a tablet can see (order added, resolved or acknowledged).
    seq: int = 0
    #: Orders waiting for the kitchen, oldest ``created_at`` first (ties by order ID).
    pending: tuple[PendingOrder, ...] = ()
    #: Recently resolved order IDs, oldest first, so late or duplicate events stay idempotent. Plain
    #: strings, not models: with the default 500 remembered, per-order objects were ~90 % of the cost of
    #: encoding and decoding a restaurant's value, which happens on every event.
    resolved: tuple[str, ...] = ()
    #: The subset of ``resolved`` that was rejected; the others were accepted.
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

    def find_pending(self, order_id: str) -> PendingOrder | None:
        return next((order for order in self.pending if order.order_id == order_id), None)

    def resolution_of(self, order_id: str) -> Resolution | None:
        if order_id in self.rejected:
            return Resolution.REJECTED
        if order_id in self.resolved:
            return Resolution.ACCEPTED
        return None

    def with_resolution(self, order_id: str, resolution: Resolution, memory: int) -> dict[str, tuple[str, ...]]:
        """The ``resolved``/``rejected`` fields after remembering one more resolution, oldest forgotten first."""
        resolved = (*self.resolved, order_id)
        forgotten = set(resolved[:-memory]) if len(resolved) > memory else set()
        rejected = (*self.rejected, order_id) if resolution is Resolution.REJECTED else self.rejected
        if forgotten:
            rejected = tuple(r for r in rejected if r not in forgotten)
        return {"resolved": resolved[-memory:], "rejected": rejected}

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", by_alias=True))

    @classmethod
    def from_bytes(cls, raw: bytes) -> RestaurantOrders:
        return cls.model_validate(orjson.loads(raw))

    @classmethod
    def empty(cls, restaurant_id: str) -> RestaurantOrders:
        return cls(restaurant_id=restaurant_id)
