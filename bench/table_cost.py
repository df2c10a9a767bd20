"""CPU per event for the table step alone: decode the restaurant's value, apply the event, encode it again.

Faust writes the whole value of a restaurant on every event, so its size sets a floor under the per-event
cost. The size grows with the resolutions a restaurant remembers (``PARTNER_STREAM_RESOLVED_MEMORY``,
default 500): a young restaurant in the end-to-end scenarios has a handful, a kitchen after a week has
them all. Pure Python in this process, no broker: it isolates what the value's shape costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from partner_stream.events import OrderAccepted, OrderCreated
from tables.model import RestaurantOrders
from tables.transitions import apply_event

PENDING = 8


def _created(order_id: str, minute: int) -> OrderCreated:
    return OrderCreated.model_validate(
        {
            "OrderId": order_id,
            "RestaurantId": "r1",
            "CustomerName": "Ana",
            "Items": [{"Name": "Pad Thai", "Quantity": 2, "UnitPrice": 9.5, "Notes": "no peanuts"}],
            "TotalPrice": 19.0,
            "CreatedAt": datetime(2026, 11, 26, tzinfo=UTC) + timedelta(minutes=minute),
        }
    )


def mature_restaurant(resolved: int) -> RestaurantOrders:
    """``PENDING`` open orders and ``resolved`` remembered resolutions (GUID-sized ids)."""
    state = RestaurantOrders.empty("r1")
    memory = max(resolved, 1)
    for i in range(resolved):
        order_id = f"{i:08d}-0b7e-4f2a-9c3d-5e6f7a8b9c0d"
        state, _ = apply_event(
            state, OrderAccepted.model_validate({"OrderId": order_id, "RestaurantId": "r1"}), resolved_memory=memory
        )
    for i in range(PENDING):
        state, _ = apply_event(state, _created(f"open-{i}", i), resolved_memory=memory)
    return state


def _per_call_us(call: Callable[[], Any], budget_s: float) -> float:
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < budget_s or calls < 5:
        call()
        calls += 1
    return elapsed / calls * 1e6


def table_cost_run(history: list[int], rep: int, budget_s: float = 0.5) -> dict[str, Any]:
    rows = []
    for resolved in history:
        state = mature_restaurant(resolved)
        raw = state.to_bytes()
        memory = max(resolved, 1)
        event = _created("new-order", PENDING + 1)
        new_state, _ = apply_event(state, event, resolved_memory=memory)
        rows.append(
            {
                "resolved": resolved,
                "stored_bytes": len(raw),
                "decode_us": _per_call_us(lambda raw=raw: RestaurantOrders.from_bytes(raw), budget_s),
                "apply_us": _per_call_us(
                    lambda s=state, m=memory, e=event: apply_event(s, e, resolved_memory=m), budget_s
                ),
                "encode_us": _per_call_us(new_state.to_bytes, budget_s),
            }
        )
    return {"rep": rep, "pending": PENDING, "rows": rows}
