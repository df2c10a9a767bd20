"""What partner-stream tells the rest of the platform: whether a kitchen has seen an order.

Only this service knows whether a tablet actually displayed an order. It says so on Kafka, for the
OrderService, CentralHub and whatever phones a restaurant or cancels an order:

- ``OrderSeen`` (topic ``order-seen``): once per order, when the first tablet acknowledged it.
- ``OrderUnseen`` (topic ``order-unseen``): once per order and *step*. Step 0 comes at once when an order
  arrives for a restaurant with no tablet connected anywhere in the cluster (reason ``no-tablet-connected``);
  step *k* >= 1 when the order is still unacknowledged ``PARTNER_STREAM_UNSEEN_AFTER``'s *k*-th duration after
  its ``CreatedAt`` (reason ``no-tablet-connected`` if no tablet is connected then, else ``not-acknowledged``).
  An order already past several steps when it is evaluated (after an outage) is announced once, at the latest.

Values are PascalCase JSON like the upstream events, so a .NET consumer reads them with System.Text.Json's
defaults; the record key is the restaurant ID (one restaurant's announcements stay in order on one partition).
``AnnouncementId`` is the same for every copy of one announcement: a consumer that must act exactly once
dedupes on it (a worker that dies between publishing and recording can publish one copy twice, never none).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal


class UnseenReason(StrEnum):
    #: No tablet of the restaurant is connected to the cluster (an order arriving now reaches nobody).
    NO_TABLET_CONNECTED = "no-tablet-connected"
    #: Tablets are connected, but none acknowledged the order within the step's threshold.
    NOT_ACKNOWLEDGED = "not-acknowledged"


class Announcement(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_pascal,
        field_title_generator=lambda name, _: to_pascal(name),
        populate_by_name=True,
        frozen=True,
    )

    announcement_id: str = Field(description="The same for every copy of this announcement: dedupe on it.")
    order_id: str
    restaurant_id: str

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", by_alias=True))


class OrderSeen(Announcement):
    """The first tablet of the restaurant acknowledged (displayed) the order."""

    seen_at: datetime = Field(description="When the first tablet acknowledged the order (UTC).")
    connected_tablets: int = Field(ge=0, description="Tablets of the restaurant connected when it was recorded.")

    @staticmethod
    def id_for(order_id: str) -> str:
        return f"{order_id}:seen"


class OrderUnseen(Announcement):
    """The order reached no tablet: none was connected when it came, or none acknowledged it in time."""

    created_at: datetime = Field(description="The order's CreatedAt, as the OrderService sent it (UTC).")
    pending_for_seconds: float = Field(ge=0, description="Seconds from CreatedAt to this announcement.")
    connected_tablets: int = Field(ge=0, description="Tablets of the restaurant connected when it was announced.")
    reason: UnseenReason
    step: int = Field(ge=0, description="0: on arrival, no tablet connected; k >= 1: the k-th threshold passed.")
    threshold_seconds: float = Field(ge=0, description="The step's threshold after CreatedAt (0 for step 0).")

    @staticmethod
    def id_for(order_id: str, step: int) -> str:
        return f"{order_id}:unseen:{step}"


def announcement_schemas() -> dict[str, Any]:
    """JSON Schema of each announcement, as consumers read it (PascalCase)."""
    return {
        model.__name__: model.model_json_schema(by_alias=True, mode="serialization")
        for model in (OrderSeen, OrderUnseen)
    }
