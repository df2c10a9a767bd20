"""This worker's identity, and how to send a tablet to another worker safely.

Kafka's assignor knows every worker by its internal URL (Faust ``canonical_url``).
Tablets need the *public* one, which differs behind proxies and in containers. Before
steering a tablet elsewhere, a worker asks the presumed owner (``GET /api/worker?
restaurantId=…``) for its public URL *and* whether it really serves that restaurant
now: during a rebalance the local assignment map can be stale, and a tablet must never
be sent to a worker that is not (or not yet) the owner, or to one that died.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from partner_stream.app import app, settings

from .placement import OwnerUnreachable


def internal_url() -> URL:
    return URL(str(app.conf.canonical_url))


def public_url() -> URL:
    return URL(settings.public_url) if settings.public_url else internal_url()


def same_worker(a: URL, b: URL) -> bool:
    return (a.host, a.port) == (b.host, b.port)


class OwnerDirectory:
    """Confirms ownership with the owner itself and learns its public URL."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        return self._session

    async def confirm(self, internal: URL, restaurant_id: str) -> URL:
        """The owner's public URL, once it confirms it is ready to serve ``restaurant_id``."""
        if same_worker(internal, internal_url()):
            return public_url()
        url = internal.with_path("/api/worker").with_query({"restaurantId": restaurant_id})
        try:
            async with self.session.get(url) as response:
                response.raise_for_status()
                body = await response.json()
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise OwnerUnreachable(f"the restaurant's worker did not answer ({exc or type(exc).__name__})") from None
        if not body.get("servesRestaurant"):
            raise OwnerUnreachable("the restaurant is changing workers")
        return URL(body["publicUrl"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


owners = OwnerDirectory()
