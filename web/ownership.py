"""Placement, all of it: which worker owns a restaurant, whether this one is ready, and where tablets go.

A restaurant lives on the worker that holds the *active* replica of its table
partition. The partition comes from the producer's partitioner over the raw
restaurant-ID bytes, exactly as the re-key step and Faust's ``table_route`` compute it
(:func:`partner_stream.routing.changelog_partition`).

Kafka's assignor knows every worker by its internal URL (Faust ``canonical_url``).
Tablets need the *public* one, which differs behind proxies and in containers. Before
steering a tablet elsewhere, a worker asks the presumed owner (``GET /api/worker?
restaurantId=…``) for its public URL *and* whether it really serves that restaurant
now: during a rebalance the local assignment map can be stale, and a tablet must never
be sent to a worker that is not (or not yet) the owner, or to one that died.

The types the tablet endpoints see are in :mod:`web.placement`, so they import without the app.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from partner_stream.app import app, pending_orders, settings
from partner_stream.readiness import not_ready_reason as not_ready_reason  # asked by views and /readyz too
from partner_stream.readiness import owns_partition as owns_partition
from partner_stream.readiness import recovery_state as recovery_state

from .placement import Owner, OwnerUnreachable, Placement


def worker_ready() -> bool:
    return not_ready_reason() is None


def owner_url(restaurant_id: str) -> URL | None:
    """The URL the current assignment names as the restaurant's owner (whatever its readiness), if known."""
    try:
        return app.router.key_store(pending_orders.name, restaurant_id)
    except (KeyError, TypeError):  # TypeError: aiokafka's producer has no metadata for the changelog (yet)
        return None


def locate(restaurant_id: str) -> Owner:
    """Where the restaurant's tablets must connect right now; never a stale or recovering owner."""
    reason = not_ready_reason()
    if reason is not None:
        return Owner(Placement.UNAVAILABLE, reason=reason)
    if owns_partition(restaurant_id):
        return Owner(Placement.LOCAL)
    url = owner_url(restaurant_id)
    if url is None:
        return Owner(Placement.UNAVAILABLE, reason="the restaurant's partition is not assigned yet")
    if same_worker(url, internal_url()):
        # The assignment map says us, but we are not active for it: mid-handover.
        return Owner(Placement.UNAVAILABLE, reason="the restaurant's partition is being handed over")
    return Owner(Placement.REMOTE, url=url)


# -- this worker's addresses, and confirming an owner -------------------------------------------


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
