"""Whether this worker may serve its restaurants now, and which restaurants are its own.

The stream (the unseen watch) and the tablet side (placement, /readyz, 503 bodies) ask the same questions.
"""

from __future__ import annotations

from .app import app, pending_orders
from .routing import changelog_partition


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
    if app.fence.writes_held and app.fence.local_state_suspect:
        return "this worker is rejoining its group after being cut off from Kafka"
    failure = pending_orders.storage_failure
    if failure is not None:
        return f"this worker's local storage refuses writes (disk full?): {failure}"
    recovered = app.tables.recovery.completed.is_set() and app.tables.actives_ready
    if not recovered or app.rebalancing:
        return "this worker is rebalancing or recovering its partitions"
    return None
