"""The two agents: re-key upstream events by restaurant, then apply them to the table.

An upstream record that already sits on its restaurant's table partition (the
OrderService keyed it by restaurant ID, see :mod:`routing`) is applied by the first
agent directly; only the others take the hop through the internal topic.

Nothing here may crash a worker: an event that can never be applied goes to the
dead-letter topic with its original bytes and the reason, is logged once, and
the stream moves on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from faust.types import EventT

from tables.model import RestaurantOrders
from tables.transitions import Change, apply_event

from . import metrics, routing
from .app import app as faust_app
from .app import by_restaurant_topic, dead_letter_topic, order_events_topic, pending_orders, settings
from .events import (
    AnyOrderEvent,
    EventKind,
    InvalidEvent,
    decode_internal,
    decode_upstream,
    encode_internal,
    timestamp_to_datetime,
)

log = logging.getLogger(__name__)

_KIND_BY_TOPIC: dict[str, EventKind] = {
    settings.topic_order_created: EventKind.CREATED,
    settings.topic_order_accepted: EventKind.ACCEPTED,
    settings.topic_order_rejected: EventKind.REJECTED,
}

#: Called with (restaurant_id, change, new_state) after each applied change; the hub subscribes.
change_listeners: list[Callable[[str, Change, RestaurantOrders], None]] = []


async def send_to_dead_letters(event: EventT, reason: str) -> None:
    """Publish the original record unchanged, with where it came from and why it failed in headers."""
    message = event.message
    headers = [
        ("x-dead-letter-reason", reason.encode()),
        ("x-source-topic", message.topic.encode()),
        ("x-source-partition", str(message.partition).encode()),
        ("x-source-offset", str(message.offset).encode()),
        ("x-source-timestamp-ms", str(int((message.timestamp or 0) * 1000)).encode()),
    ]
    log.warning("dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason)
    metrics.DEAD_LETTERS.labels(source_topic=message.topic).inc()
    await dead_letter_topic.send(key=message.key, value=message.value, headers=headers)


@faust_app.agent(order_events_topic, name="rekey-by-restaurant")
async def rekey_by_restaurant(stream: Any) -> None:
    """Decode and validate upstream events; apply those already on their restaurant's partition, forward the rest."""
    async for event in stream.events():
        message = event.message
        kind = _KIND_BY_TOPIC[message.topic]
        try:
            order_event = decode_upstream(kind, message.value, timestamp_to_datetime((message.timestamp or 0) * 1000))
        except InvalidEvent as exc:
            await send_to_dead_letters(event, exc.reason)
            continue
        if routing.is_on_restaurant_partition(message.topic, message.partition, order_event.restaurant_id):
            metrics.ROUTED_DIRECT.inc()
            apply_to_table(event, order_event)
            continue
        metrics.ROUTED_REKEYED.inc()
        # The record keeps the upstream timestamp, so the push-latency metric measures the whole path.
        await by_restaurant_topic.send(
            key=order_event.restaurant_id,
            value=encode_internal(order_event),
            timestamp=message.timestamp,
        )


@faust_app.agent(by_restaurant_topic, name="apply-to-pending-orders")
async def apply_to_pending_orders(stream: Any) -> None:
    """Apply the re-keyed events: one restaurant's events arrive in order on one partition."""
    async for event in stream.events():
        try:
            order_event = decode_internal(event.value)
        except InvalidEvent as exc:
            await send_to_dead_letters(event, exc.reason)
            continue
        apply_to_table(event, order_event)


def apply_to_table(event: EventT, order_event: AnyOrderEvent) -> None:
    """Apply one event to ``pending-orders`` and hand the change to the hub, in one event-loop step.

    ``event`` must be on the restaurant's table partition: Faust writes the changelog record to
    the partition of the event being processed. Never awaits, so no other writer interleaves.
    """
    restaurant_id = order_event.restaurant_id
    state = pending_orders.state_of(restaurant_id)
    new_state, change = apply_event(state, order_event, resolved_memory=settings.resolved_memory)
    metrics.events_applied(kind=order_event.kind.value, changed=str(change is not None)).inc()
    if new_state is state:
        return
    # Assignment (never in-place mutation) is what writes the changelog.
    pending_orders[restaurant_id] = new_state
    if change is not None:
        for listener in change_listeners:
            listener(restaurant_id, change, new_state)
        observe_push_latency(event)


def observe_push_latency(event: EventT) -> None:
    """Upstream produce -> applied here (the re-key step forwards the upstream record's timestamp)."""
    produced = event.message.timestamp
    if produced:
        metrics.PUSH_LATENCY.observe(max(0.0, time.time() - produced))
