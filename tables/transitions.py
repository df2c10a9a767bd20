"""Pure state transitions of one restaurant's pending orders.

``apply_event(records, event)`` reads the few records the event touches through ``records`` (a read-only
lookup) and returns an :class:`Outcome`: the records to write, the keys to delete and the change tablets
must see (or None). No Faust, no I/O: the agent writes the outcome to the table (which reaches the
changelog) and hands the change to the hub. What an event reads and writes does not depend on how many
orders the restaurant holds.

Idempotence rules (events arrive at least once and the upstream topics are not ordered with each other):
- a duplicate OrderCreated changes nothing;
- an OrderAccepted/Rejected for an order we have not seen is remembered, so the OrderCreated that arrives
  later never shows as pending;
- a late duplicate OrderCreated cannot resurrect a resolved order, as long as the order is among the last
  ``resolved_memory`` resolutions of the restaurant (a ring of that many slots: the oldest is forgotten).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from partner_stream.events import (
    AnyOrderEvent,
    OrderAccepted,
    OrderAcknowledged,
    OrderAnnounced,
    OrderCreated,
    OrderRejected,
)

from .keys import head_key, order_key, ring_key
from .model import (
    Head,
    LegacyRestaurantOrders,
    OrderLine,
    OrderRecord,
    PendingOrder,
    Record,
    Resolution,
    ResolvedOrder,
    RestaurantHead,
)


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


class Records(Protocol):
    """Read access to one restaurant's records, as they are before the event."""

    def head(self, restaurant_id: str) -> Head: ...

    def order(self, restaurant_id: str, order_id: str) -> OrderRecord | None: ...

    def ring(self, restaurant_id: str, slot: int) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying one event does: writes (in order, the head last), deletes, and the visible change."""

    writes: tuple[tuple[str, Record], ...] = ()
    deletes: tuple[str, ...] = ()
    change: Change | None = None

    @property
    def is_noop(self) -> bool:
        return not self.writes and not self.deletes

    @property
    def seq_after(self) -> int:
        """The restaurant's ``seq`` once the outcome is written (its head is the last record written)."""
        heads = [record for _, record in self.writes if isinstance(record, RestaurantHead)]
        return heads[-1].seq if heads else 0

    @property
    def head_key(self) -> str | None:
        return next((key for key, record in reversed(self.writes) if isinstance(record, RestaurantHead)), None)


def apply_event(records: Records, event: AnyOrderEvent, *, resolved_memory: int) -> Outcome:
    """Apply one event to a restaurant's records; an empty outcome means nothing to store or push."""
    head = records.head(event.restaurant_id)
    if isinstance(head, LegacyRestaurantOrders):
        migration, head = migrate_legacy(head, resolved_memory)
        outcome = apply_event(_Overlay(records, dict(migration)), event, resolved_memory=resolved_memory)
        kept = tuple((key, record) for key, record in migration if key not in outcome.deletes)
        return Outcome(writes=(*kept, *outcome.writes), deletes=outcome.deletes, change=outcome.change)
    match event:
        case OrderCreated():
            return _create(records, head, event)
        case OrderAccepted():
            return _resolve(records, head, event, Resolution.ACCEPTED, resolved_memory)
        case OrderRejected():
            return _resolve(records, head, event, Resolution.REJECTED, resolved_memory)
        case OrderAcknowledged():
            return _acknowledge(records, head, event)
        case OrderAnnounced():
            return _record_announcement(records, head, event)
    raise TypeError(f"not an order event: {event!r}")


def _create(records: Records, head: RestaurantHead, event: OrderCreated) -> Outcome:
    if records.order(event.restaurant_id, event.order_id) is not None:
        return Outcome()  # pending already, or resolved before (a late duplicate)
    seq = head.seq + 1
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
    return Outcome(
        writes=(
            (order_key(event.restaurant_id, event.order_id), order),
            (head_key(event.restaurant_id), head.model_copy(update={"seq": seq})),
        ),
        change=OrderAdded(order=order, seq=seq),
    )


def _resolve(
    records: Records,
    head: RestaurantHead,
    event: OrderAccepted | OrderRejected,
    resolution: Resolution,
    resolved_memory: int,
) -> Outcome:
    restaurant_id, order_id = event.restaurant_id, event.order_id
    current = records.order(restaurant_id, order_id)
    if isinstance(current, ResolvedOrder):
        return Outcome()
    slot = head.resolved_count % resolved_memory
    forgotten = records.ring(restaurant_id, slot)
    deletes: tuple[str, ...] = ()
    if forgotten is not None and isinstance(records.order(restaurant_id, forgotten), ResolvedOrder):
        deletes = (order_key(restaurant_id, forgotten),)
    seq = head.seq + 1 if current is not None else head.seq  # resolved before we saw it: tablets see nothing
    writes = (
        (order_key(restaurant_id, order_id), ResolvedOrder(order_id=order_id, resolution=resolution)),
        (ring_key(restaurant_id, slot), order_id),
        (head_key(restaurant_id), head.model_copy(update={"seq": seq, "resolved_count": head.resolved_count + 1})),
    )
    if current is None:
        return Outcome(writes=writes, deletes=deletes)
    if isinstance(event, OrderAccepted):
        change = OrderResolved(
            current, resolution, seq, at=event.accepted_at, estimated_ready_at=event.estimated_ready_at
        )
    else:
        change = OrderResolved(current, resolution, seq, reason=event.reason)
    return Outcome(writes=writes, deletes=deletes, change=change)


def _acknowledge(records: Records, head: RestaurantHead, event: OrderAcknowledged) -> Outcome:
    order = records.order(event.restaurant_id, event.order_id)
    if not isinstance(order, PendingOrder) or order.acknowledged_at is not None:
        return Outcome()
    seq = head.seq + 1
    seen = order.model_copy(update={"acknowledged_at": event.acknowledged_at})
    return Outcome(
        writes=(
            (order_key(event.restaurant_id, event.order_id), seen),
            (head_key(event.restaurant_id), head.model_copy(update={"seq": seq})),
        ),
        change=OrderSeen(order=seen, seq=seq),
    )


def _record_announcement(records: Records, head: RestaurantHead, event: OrderAnnounced) -> Outcome:
    """Record that the owner told the platform about the order (OrderSeen, or OrderUnseen at a step).

    Nothing to record once the order is resolved, or if as much was recorded already. Tablets see nothing of
    it (no ``seq`` bump); the head is written again unchanged so the order's record carries the restaurant's
    current stamp (tables/stamps.py), or a replay would take it for a stale write.
    """
    order = records.order(event.restaurant_id, event.order_id)
    if not isinstance(order, PendingOrder):
        return Outcome()
    if event.announcement == "OrderSeen":
        if order.seen_announced:
            return Outcome()
        recorded = order.model_copy(update={"seen_announced": True})
    else:
        step = event.step or 0
        if order.unseen_step is not None and order.unseen_step >= step:
            return Outcome()
        recorded = order.model_copy(update={"unseen_step": step})
    return Outcome(
        writes=((order_key(event.restaurant_id, event.order_id), recorded), (head_key(event.restaurant_id), head))
    )


def migrate_legacy(
    legacy: LegacyRestaurantOrders, resolved_memory: int
) -> tuple[tuple[tuple[str, Record], ...], RestaurantHead]:
    """The records that replace a one-value-per-restaurant value, and the new head (written last).

    Keeps ``seq`` (tablets hold it), every pending order and the newest ``resolved_memory`` resolutions.
    """
    restaurant_id = legacy.restaurant_id
    writes: list[tuple[str, Record]] = [(order_key(restaurant_id, o.order_id), o) for o in legacy.pending]
    remembered = legacy.resolved[-resolved_memory:]
    rejected = set(legacy.rejected)
    for slot, order_id in enumerate(remembered):
        resolution = Resolution.REJECTED if order_id in rejected else Resolution.ACCEPTED
        writes.append((order_key(restaurant_id, order_id), ResolvedOrder(order_id=order_id, resolution=resolution)))
        writes.append((ring_key(restaurant_id, slot), order_id))
    head = RestaurantHead(restaurant_id=restaurant_id, seq=legacy.seq, resolved_count=len(remembered))
    writes.append((head_key(restaurant_id), head))
    return tuple(writes), head


class _Overlay:
    """``records`` with pending writes on top: what the store will hold once they are applied."""

    def __init__(self, records: Records, writes: dict[str, Record]) -> None:
        self._records = records
        self._writes = writes

    def head(self, restaurant_id: str) -> Head:
        written = self._writes.get(head_key(restaurant_id))
        return written if isinstance(written, RestaurantHead) else self._records.head(restaurant_id)

    def order(self, restaurant_id: str, order_id: str) -> OrderRecord | None:
        written = self._writes.get(order_key(restaurant_id, order_id))
        if isinstance(written, PendingOrder | ResolvedOrder):
            return written
        return self._records.order(restaurant_id, order_id)

    def ring(self, restaurant_id: str, slot: int) -> str | None:
        written = self._writes.get(ring_key(restaurant_id, slot))
        return written if isinstance(written, str) else self._records.ring(restaurant_id, slot)
