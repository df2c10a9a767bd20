"""Read-only views of a restaurant's value, in the camelCase shape clients receive."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .model import INTERNAL_FIELDS, PendingOrder, RestaurantOrders, json_time
from .transitions import Change, OrderAdded, OrderResolved, OrderSeen


def order_payload(order: PendingOrder, seq: int) -> dict[str, Any]:
    """An order as tablets see it; ``seq`` is the restaurant's seq after the change."""
    payload = order.model_dump(mode="json", by_alias=True, exclude={"seq", *INTERNAL_FIELDS})
    payload["seq"] = seq
    return payload


def snapshot_payload(state: RestaurantOrders) -> dict[str, Any]:
    return {
        "restaurantId": state.restaurant_id,
        "seq": state.seq,
        "orders": [order.model_dump(mode="json", by_alias=True, exclude=INTERNAL_FIELDS) for order in state.pending],
    }


#: The hub method / plain message name for each kind of change.
def change_name(change: Change) -> str:
    match change:
        case OrderAdded():
            return "NewOrder"
        case OrderResolved(resolution=resolution):
            return "OrderAccepted" if resolution.value == "accepted" else "OrderRejected"
        case OrderSeen():
            return "OrderAcknowledged"
    raise TypeError(f"not a change: {change!r}")


def change_payload(change: Change) -> dict[str, Any]:
    match change:
        case OrderAdded(order=order, seq=seq):
            return order_payload(order, seq)
        case OrderResolved():
            payload: dict[str, Any] = {
                "orderId": change.order.order_id,
                "restaurantId": change.order.restaurant_id,
                "seq": change.seq,
            }
            if change.resolution.value == "accepted":
                payload["acceptedAt"] = json_time(change.at)
                payload["estimatedReadyAt"] = json_time(change.estimated_ready_at)
            else:
                payload["reason"] = change.reason
            return payload
        case OrderSeen(order=order, seq=seq):
            return {
                "orderId": order.order_id,
                "restaurantId": order.restaurant_id,
                "acknowledgedAt": json_time(order.acknowledged_at),
                "seq": seq,
            }
    raise TypeError(f"not a change: {change!r}")


def unseen_orders(orders: Iterable[PendingOrder]) -> list[PendingOrder]:
    return [order for order in orders if order.acknowledged_at is None]
