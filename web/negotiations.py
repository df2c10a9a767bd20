"""SignalR negotiations waiting for their socket: bounded in number, in age, and per restaurant.

A negotiate answers a connection token the client presents when it opens the socket a
moment later. Each pending one costs memory until used, so an authenticated client
that negotiates in a loop and never connects must not grow the worker: entries expire
after a TTL (a timer purges them even if no negotiate follows), and there is a cap per
worker and per restaurant. A refused negotiate is a clean 429/503 the client retries.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Negotiation:
    restaurant_id: str
    expires_at: float


class NegotiationRefused(Exception):
    """No room for another pending negotiation; ``per_restaurant`` tells which cap was hit."""

    def __init__(self, reason: str, *, per_restaurant: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.per_restaurant = per_restaurant


class PendingNegotiations:
    """Connection tokens handed out by negotiate, oldest first (one TTL for all: expiry looks at the front)."""

    def __init__(self, *, ttl: float, limit: int, per_restaurant: int) -> None:
        self.ttl = ttl
        self.limit = limit
        self.per_restaurant = per_restaurant
        self._pending: OrderedDict[str, Negotiation] = OrderedDict()
        self._by_restaurant: Counter[str] = Counter()
        self._purge_timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def open(self, restaurant_id: str) -> str:
        """A new connection token for ``restaurant_id``; raises :class:`NegotiationRefused` when full."""
        self.purge()
        if self._by_restaurant[restaurant_id] >= self.per_restaurant:
            raise NegotiationRefused(
                f"too many pending negotiations for this restaurant (limit {self.per_restaurant}); "
                "open the socket of an earlier one or retry shortly",
                per_restaurant=True,
            )
        if len(self._pending) >= self.limit:
            reason = "too many pending negotiations on this worker; retry shortly"
            raise NegotiationRefused(reason, per_restaurant=False)
        token = secrets.token_urlsafe(16)
        self._pending[token] = Negotiation(restaurant_id, time.monotonic() + self.ttl)
        self._by_restaurant[restaurant_id] += 1
        self._schedule_purge()
        return token

    def redeem(self, token: str, restaurant_id: str) -> bool:
        """Use a connection token once: True if it was handed out for this restaurant and has not expired."""
        negotiation = self._pending.pop(token, None)
        if negotiation is None:
            return False
        self._forget(negotiation)
        return negotiation.expires_at >= time.monotonic() and negotiation.restaurant_id == restaurant_id

    def purge(self, now: float | None = None) -> None:
        """Drop expired negotiations (only ever the front: all share one TTL)."""
        now = time.monotonic() if now is None else now
        pending = self._pending
        while pending:
            token, negotiation = next(iter(pending.items()))
            if negotiation.expires_at >= now:
                break
            del pending[token]
            self._forget(negotiation)

    def _forget(self, negotiation: Negotiation) -> None:
        remaining = self._by_restaurant[negotiation.restaurant_id] - 1
        if remaining > 0:
            self._by_restaurant[negotiation.restaurant_id] = remaining
        else:
            del self._by_restaurant[negotiation.restaurant_id]

    def _schedule_purge(self) -> None:
        """Purge when the oldest entry expires, so a burst that is never used is gone without more traffic."""
        if self._purge_timer is not None or not self._pending:
            return
        oldest = next(iter(self._pending.values()))
        delay = max(0.0, oldest.expires_at - time.monotonic()) + 0.01
        self._purge_timer = asyncio.get_running_loop().call_later(delay, self._on_purge_timer)

    def _on_purge_timer(self) -> None:
        self._purge_timer = None
        self.purge()
        self._schedule_purge()

    def close(self) -> None:
        if self._purge_timer is not None:
            self._purge_timer.cancel()
            self._purge_timer = None
        self._pending.clear()
        self._by_restaurant.clear()
