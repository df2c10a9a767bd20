"""Operator HTTP views on Faust's web server: pending orders (routed to the key's owner) and probes."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from partner_stream.app import app, pending_orders
from tables.model import RestaurantOrders
from tables.queries import snapshot_payload


def recovery_state() -> dict[str, Any]:
    """Whether this worker's actives are recovered and it is not mid-rebalance."""
    recovery = app.tables.recovery
    return {
        "rebalancing": bool(app.rebalancing),
        "recovering": bool(app.in_recovery),
        "activesReady": bool(app.tables.actives_ready),
        "firstRecoveryCompleted": recovery.completed.is_set(),
    }


def is_ready() -> bool:
    state = recovery_state()
    return state["firstRecoveryCompleted"] and state["activesReady"] and not state["rebalancing"]


@app.page("/api/restaurants/{restaurant_id}/pending-orders")
class RestaurantPendingOrders(View):
    """A restaurant's pending orders and ``seq``, answered by the worker that owns the key."""

    @app.table_route(table=pending_orders, match_info="restaurant_id")
    async def get(self, request: Request, restaurant_id: str) -> Response:
        if not is_ready():
            return self.json(
                {"error": "this worker is recovering its partitions; retry shortly"},
                status=503,
                headers={"Retry-After": "1"},
            )
        state = pending_orders.get(restaurant_id) or RestaurantOrders.empty(restaurant_id)
        return self.json(snapshot_payload(state))


@app.page("/healthz")
class Health(View):
    """Liveness: the process and its event loop answer."""

    async def get(self, request: Request) -> Response:
        return self.json({"status": "alive"})


@app.page("/readyz")
class Readiness(View):
    """Readiness: 200 only when this worker's partitions are assigned and recovered."""

    async def get(self, request: Request) -> Response:
        state = recovery_state()
        return self.json({"ready": is_ready(), **state}, status=200 if is_ready() else 503)
