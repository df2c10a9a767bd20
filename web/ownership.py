"""Which worker owns a restaurant, and whether it is ready to serve it.

A restaurant lives on the worker that holds the *active* replica of its table
partition. The partition comes from the producer's partitioner over the raw
restaurant-ID bytes, exactly as the re-key step and Faust's ``table_route`` compute it.
"""

from __future__ import annotations

from yarl import URL

from partner_stream.app import app, pending_orders
from partner_stream.routing import changelog_partition

from .placement import Owner, Placement


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
    if (url.host, url.port) == (app.conf.canonical_url.host, app.conf.canonical_url.port):
        # The assignment map says us, but we are not active for it: mid-handover.
        return Owner(Placement.UNAVAILABLE, reason="the restaurant's partition is being handed over")
    return Owner(Placement.REMOTE, url=url)
