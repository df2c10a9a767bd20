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
from partner_stream.routing import changelog_partition

from .placement import Owner, OwnerUnreachable, Placement


def owns_partition(restaurant_id: str) -> bool:
    """This worker holds the active replica of the restaurant's partition (recovered or not)."""
    try:
        return app.assignor.is_active(changelog_partition(restaurant_id))
    except (KeyError, AssertionError, TypeError):
        return False


def recovery_state() -> dict[str, bool | str | None]:
    """Whether this worker's actives are recovered, it is not mid-rebalance, and its store takes writes."""
    return {
        "rebalancing": bool(app.rebalancing),
        "recovering": bool(app.in_recovery),
        "activesReady": bool(app.tables.actives_ready),
        "firstRecoveryCompleted": app.tables.recovery.completed.is_set(),
        "storageFailure": pending_orders.storage_failure,
        "fenced": app.fence.reason() if app.fence.fenced else None,
    }


def not_ready_reason() -> str | None:
    """Why this worker may not serve its restaurants right now (for 503 bodies and /readyz), or None."""
    if app.fence.fenced:
        return f"this worker is {app.fence.reason()}"
    failure = pending_orders.storage_failure
    if failure is not None:
        return f"this worker's local storage refuses writes (disk full?): {failure}"
    recovered = app.tables.recovery.completed.is_set() and app.tables.actives_ready
    if not recovered or app.rebalancing:
        return "this worker is rebalancing or recovering its partitions"
    return None


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
