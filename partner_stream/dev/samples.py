"""Publishing order events the way the OrderService does: plain PascalCase JSON.

Used by ``partner-stream order …`` and by the dev command's sample-order generator.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from ..settings import Settings

DISHES: Sequence[tuple[str, float]] = (
    ("Pad Thai", 9.5),
    ("Green Curry", 11.0),
    ("Spring Rolls", 4.5),
    ("Tom Yum Soup", 7.25),
    ("Mango Sticky Rice", 5.0),
    ("Jasmine Rice", 2.0),
    ("Thai Iced Tea", 3.5),
)
CUSTOMERS: Sequence[str] = ("Ana", "Ben", "Chiara", "Dmitri", "Esi", "Farid", "Grace", "Hiro", "Ines")


def order_created(restaurant_id: str, order_id: str | None = None, customer: str | None = None) -> dict[str, Any]:
    """A realistic OrderCreated body in the producer's PascalCase."""
    rng = random.Random()
    items = []
    for name, price in rng.sample(list(DISHES), k=rng.randint(1, 3)):
        items.append({"Name": name, "Quantity": rng.randint(1, 3), "UnitPrice": price})
    total = round(sum(i["Quantity"] * i["UnitPrice"] for i in items), 2)
    return {
        "OrderId": order_id or str(uuid.uuid4()),
        "RestaurantId": restaurant_id,
        "CustomerName": customer or rng.choice(CUSTOMERS),
        "Items": items,
        "TotalPrice": total,
        "CreatedAt": datetime.now(UTC).isoformat(),
    }


def order_resolved(order_id: str, restaurant_id: str, accepted: bool, reason: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"OrderId": order_id, "RestaurantId": restaurant_id}
    if accepted:
        body["AcceptedAt"] = datetime.now(UTC).isoformat()
    else:
        body["Reason"] = reason or "Kitchen is too busy"
    return body


class OrderPublisher:
    """A plain aiokafka producer that writes to the configured upstream topics."""

    def __init__(self, settings: Settings, *, linger_ms: int = 0) -> None:
        self.settings = settings
        self._producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=linger_ms)

    async def __aenter__(self) -> OrderPublisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def publish(self, topic: str, body: dict[str, Any], key: str | None = None) -> None:
        await self._producer.send_and_wait(topic, orjson.dumps(body), key=key.encode() if key else None)

    async def create(self, body: dict[str, Any]) -> None:
        # The OrderService keys by order ID; partner-stream must not depend on that.
        await self.publish(self.settings.topic_order_created, body, key=str(body["OrderId"]))

    async def accept(self, order_id: str, restaurant_id: str) -> None:
        body = order_resolved(order_id, restaurant_id, accepted=True)
        await self.publish(self.settings.topic_order_accepted, body, key=order_id)

    async def reject(self, order_id: str, restaurant_id: str, reason: str | None = None) -> None:
        body = order_resolved(order_id, restaurant_id, accepted=False, reason=reason)
        await self.publish(self.settings.topic_order_rejected, body, key=order_id)


async def generate_orders(
    settings: Settings, restaurants: Sequence[str], *, interval: float, max_pending: int = 6
) -> None:
    """Publish a new order every ``interval`` s and resolve old ones, forever (dev sample traffic)."""
    rng = random.Random()
    open_orders: dict[str, deque[str]] = {r: deque() for r in restaurants}
    async with OrderPublisher(settings) as publisher:
        while True:
            restaurant = rng.choice(list(restaurants))
            body = order_created(restaurant)
            await publisher.create(body)
            open_orders[restaurant].append(body["OrderId"])
            if len(open_orders[restaurant]) > max_pending:
                oldest = open_orders[restaurant].popleft()
                if rng.random() < 0.8:
                    await publisher.accept(oldest, restaurant)
                else:
                    await publisher.reject(oldest, restaurant)
            await asyncio.sleep(interval)
