"""Pure state transitions of one restaurant's pending orders.

``apply_event(state, event)`` returns the new value and the change tablets must
see (or None). No Faust, no I/O: the agent assigns the result to the table (only
assignment reaches the changelog) and hands the change to the hub.

Idempotence rules (events arrive at least once and the upstream topics are not
ordered with each other):
- a duplicate OrderCreated changes nothing;
- an OrderAccepted/Rejected for an order we have not seen is remembered, so the
  OrderCreated that arrives later never shows as pending;
- a late duplicate OrderCreated cannot resurrect a resolved order, as long as
  the order is among the last ``resolved_memory`` resolutions of the restaurant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from partner_stream.events import (
    AnyOrderEvent,
    OrderAccepted,
    OrderAcknowledged,
    OrderCreated,
    OrderRejected,
)

from .model import OrderLine, PendingOrder, Resolution, RestaurantOrders


@dataclass(frozen=True, slots=True)
class OrderAdded:
    order: PendingOrder
    seq: int


@dataclass(frozen=True, slots=True)
class OrderResolved:
    order: PendingOrder
    resolution: Resolution
    seq: int
    at: datetime | None = None
    estimated_ready_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OrderSeen:
    order: PendingOrder
    seq: int


Change = OrderAdded | OrderResolved | OrderSeen


def apply_event(
    state: RestaurantOrders, event: AnyOrderEvent, *, resolved_memory: int
) -> tuple[RestaurantOrders, Change | None]:
    """Apply one event to a restaurant's value; unchanged input means nothing to store or push."""
    match event:
        case OrderCreated():
            return _create(state, event)
        case OrderAccepted():
            return _resolve(state, event, Resolution.ACCEPTED, resolved_memory)
        case OrderRejected():
            return _resolve(state, event, Resolution.REJECTED, resolved_memory)
        case OrderAcknowledged():
            return _acknowledge(state, event)
    raise TypeError(f"not an order event: {event!r}")


def _create(state: RestaurantOrders, event: OrderCreated) -> tuple[RestaurantOrders, Change | None]:
    if state.find_pending(event.order_id) or state.resolution_of(event.order_id):
        return state, None
    seq = state.seq + 1
    assert event.created_at is not None, "decoder fills created_at from the Kafka timestamp"
    order = PendingOrder(
        order_id=event.order_id,
        restaurant_id=event.restaurant_id,
        customer_name=event.customer_name,
        items=tuple(
            OrderLine(name=i.name, quantity=i.quantity, unit_price=i.unit_price, notes=i.notes) for i in event.items
        ),
        total_price=event.total_price,
        created_at=event.created_at,
        seq=seq,
    )
    pending = tuple(sorted((*state.pending, order), key=_display_order))
    new_state = state.model_copy(update={"seq": seq, "pending": pending})
    return new_state, OrderAdded(order=order, seq=seq)


def _display_order(order: PendingOrder) -> tuple[datetime, str]:
    """Oldest first, as a kitchen works; upstream partitions interleave, so arrival order means nothing."""
    return (order.created_at, order.order_id)


def _resolve(
    state: RestaurantOrders,
    event: OrderAccepted | OrderRejected,
    resolution: Resolution,
    resolved_memory: int,
) -> tuple[RestaurantOrders, Change | None]:
    if state.resolution_of(event.order_id):
        return state, None
    remembered = state.with_resolution(event.order_id, resolution, resolved_memory)
    order = state.find_pending(event.order_id)
    if order is None:
        # Resolved before we saw it: remember, so its OrderCreated never shows. Tablets see nothing.
        return state.model_copy(update=remembered), None
    seq = state.seq + 1
    new_state = state.model_copy(
        update={
            "seq": seq,
            "pending": tuple(o for o in state.pending if o.order_id != event.order_id),
            **remembered,
        }
    )
    if isinstance(event, OrderAccepted):
        change = OrderResolved(
            order, resolution, seq, at=event.accepted_at, estimated_ready_at=event.estimated_ready_at
        )
    else:
        change = OrderResolved(order, resolution, seq, reason=event.reason)
    return new_state, change


def _acknowledge(state: RestaurantOrders, event: OrderAcknowledged) -> tuple[RestaurantOrders, Change | None]:
    order = state.find_pending(event.order_id)
    if order is None or order.acknowledged_at is not None:
        return state, None
    seq = state.seq + 1
    seen = order.model_copy(update={"acknowledged_at": event.acknowledged_at})
    pending = tuple(seen if o.order_id == order.order_id else o for o in state.pending)
    return state.model_copy(update={"seq": seq, "pending": pending}), OrderSeen(order=seen, seq=seq)
