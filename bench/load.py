"""The producer side: OrderService-shaped events at a paced rate, stamped with their send time.

Each event goes to a random restaurant. A restaurant with ``max_pending`` open orders gets an ``OrderAccepted``
for its oldest one instead of a new ``OrderCreated``, so the table value stays the size of a busy kitchen's
and, once warm, the mix is about half creates, half accepts. Send time (``time.time()`` just before ``send()``)
rides in ``CustomerName = "bench <t>"`` (shown to tablets as ``customerName``) and in ``AcceptedAt``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from .procs import TOPIC_ACCEPTED, TOPIC_CREATED

ITEMS = (
    {"Name": "Pad Thai", "Quantity": 2, "UnitPrice": 9.5},
    {"Name": "Spring Rolls", "Quantity": 1, "UnitPrice": 4.5},
)


def restaurant_ids(count: int) -> list[str]:
    return [f"r{i:05d}" for i in range(count)]


@dataclass
class LoadResult:
    rate: float
    seconds: float
    sent: int
    created: int
    accepted: int
    #: Largest delay of the pacing loop behind schedule (a saturated producer shows here).
    max_behind_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "offered_rate": self.rate,
            "achieved_rate": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
            "seconds": round(self.seconds, 2),
            "sent": self.sent,
            "created": self.created,
            "accepted": self.accepted,
            "max_behind_ms": round(self.max_behind_ms, 1),
        }


@dataclass
class OrderLoad:
    producer: AIOKafkaProducer
    restaurants: list[str]
    max_pending: int = 8
    #: Record key: the restaurant ID (``restaurant``) or the order ID (``order``).
    key_by: str = "restaurant"
    seed: int = 7
    #: What each restaurant's tablets must show once everything is delivered (producer's truth).
    open_orders: dict[str, deque[str]] = field(default_factory=dict)
    #: Events sent per restaurant (pushes expected = this x the restaurant's tablets).
    sent_to: dict[str, int] = field(default_factory=dict)
    counter: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        for restaurant in self.restaurants:
            self.open_orders.setdefault(restaurant, deque())

    async def send_one(self, restaurant: str | None = None, *, create: bool | None = None) -> str:
        """Send one event now; return its kind ("created"/"accepted")."""
        if restaurant is None:
            restaurant = self._rng.choice(self.restaurants)
        queue = self.open_orders[restaurant]
        self.sent_to[restaurant] = self.sent_to.get(restaurant, 0) + 1
        if create is None:
            create = len(queue) < self.max_pending
        if create or not queue:
            self.counter += 1
            order_id = f"o{self.counter}-{restaurant}"
            body: dict[str, Any] = {
                "OrderId": order_id,
                "RestaurantId": restaurant,
                "Items": ITEMS,
                "TotalPrice": 23.5,
            }
            queue.append(order_id)
            now = time.time()
            body["CustomerName"] = f"bench {now:.6f}"
            body["CreatedAt"] = datetime.fromtimestamp(now, UTC).isoformat()
            await self.producer.send(TOPIC_CREATED, orjson.dumps(body), key=self._key(restaurant, order_id))
            return "created"
        order_id = queue.popleft()
        now = time.time()
        accepted_at = datetime.fromtimestamp(now, UTC).isoformat()
        body = {"OrderId": order_id, "RestaurantId": restaurant, "AcceptedAt": accepted_at}
        await self.producer.send(TOPIC_ACCEPTED, orjson.dumps(body), key=self._key(restaurant, order_id))
        return "accepted"

    def _key(self, restaurant: str, order_id: str) -> bytes:
        return (restaurant if self.key_by == "restaurant" else order_id).encode()

    def mark(self) -> dict[str, int]:
        return dict(self.sent_to)

    def expected_frames(self, since: dict[str, int], tablets_per_restaurant: dict[str, int]) -> int:
        return sum((n - since.get(r, 0)) * tablets_per_restaurant.get(r, 0) for r, n in self.sent_to.items())

    async def run(self, rate: float, seconds: float, stop: asyncio.Event | None = None) -> LoadResult:
        """Send ``rate`` events/s for ``seconds`` (or until ``stop`` is set), paced in 2 ms ticks; then flush."""
        counts = {"created": 0, "accepted": 0}
        sent = 0
        max_behind = 0.0
        t0 = time.monotonic()
        while stop is None or not stop.is_set():
            elapsed = time.monotonic() - t0
            if elapsed >= seconds:
                break
            due = int(rate * elapsed) + 1
            if due - sent > 1:
                max_behind = max(max_behind, (due - sent - 1) / rate * 1000.0)
            while sent < due:
                counts[await self.send_one()] += 1
                sent += 1
            await asyncio.sleep(0.002)
        await self.producer.flush()
        took = time.monotonic() - t0
        return LoadResult(rate, took, sent, counts["created"], counts["accepted"], max_behind)

    def expected_pending(self) -> dict[str, set[str]]:
        return {restaurant: set(queue) for restaurant, queue in self.open_orders.items()}
