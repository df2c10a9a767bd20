"""The two agents: re-key upstream events by restaurant, then apply them to the table.

An upstream record that already sits on its restaurant's table partition (the
OrderService keyed it by restaurant ID, see :mod:`routing`) is applied by the first
agent directly; only the others take the hop through the internal topic.

No event can stop the stream. Each record ends in exactly one of three ways:
- applied (or forwarded to its restaurant's partition);
- dead-lettered with the reason, when it breaks the contract (:class:`InvalidEvent`) or when applying it
  raised anything at all (a bug of ours, bad data that passed validation, a failed forward): a *poison* event,
  counted by ``partner_stream_poison_events_total``; the stream moves on and a restart never meets it again;
- held, when the local store refuses a write (disk full): the same writes are retried with back-off until
  they succeed, so the event is neither skipped nor acknowledged meanwhile; likewise while the producer
  cannot take its changelog records (tables/changelog.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faust.types import EventT

from partner_stream_tables.storage import Source, StorageWriteFailed, WritesHeld
from partner_stream_tables.transitions import Change, Outcome, apply_event

from . import metrics, routing
from .app import app as faust_app
from .app import by_restaurant_topic, dead_letter_topic, order_events_topic, pending_orders, settings
from .dead_letters import dead_letter
from .disk import free_bytes
from .events import (
    AnyOrderEvent,
    EventKind,
    InvalidEvent,
    OrderAcknowledged,
    OrderAnnounced,
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


async def submit_acknowledgement(restaurant_id: str, order_id: str) -> None:
    """A tablet showed an order: the acknowledgement goes through the stream like every other change."""
    event = OrderAcknowledged(order_id=order_id, restaurant_id=restaurant_id, acknowledged_at=datetime.now(UTC))
    await by_restaurant_topic.send(key=restaurant_id, value=encode_internal(event))


async def record_announcement(event: OrderAnnounced) -> None:
    """The owner published an announcement: record it in the order's record, through the stream; returns once the
    broker has the event (so the announcer knows it will be applied)."""
    delivery = await by_restaurant_topic.send(key=event.restaurant_id, value=encode_internal(event))
    await delivery


#: Called with (restaurant_id, change) after each applied change; the hub subscribes.
change_listeners: list[Callable[[str, Change], None]] = []
#: Called with (event, outcome) after each applied event, a no-op included; the announcer subscribes.
outcome_listeners: list[Callable[[AnyOrderEvent, Outcome], None]] = []


#: Back-off between attempts to write an outcome the store refused: from the first to the last, doubling.
STORE_RETRY_FIRST = 0.5
STORE_RETRY_LAST = 10.0


async def send_to_dead_letters(event: EventT, reason: str, exception: BaseException | None = None) -> None:
    """Publish the original record (truncated past its limit), with where it came from and why it failed."""
    message = event.message
    letter = dead_letter(
        key=message.key,
        value=message.value,
        reason=reason,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=message.timestamp,
        exception=exception,
    )
    log.warning("dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason[:300])
    metrics.DEAD_LETTERS.labels(source_topic=message.topic).inc()
    await dead_letter_topic.send(key=letter.key, value=letter.value, headers=letter.headers)


async def send_poison_to_dead_letters(event: EventT, exc: BaseException) -> None:
    """An event whose processing raised: log the traceback once, count it, dead-letter it, move on."""
    message = event.message
    log.error("poison event %s[%s]@%s", message.topic, message.partition, message.offset, exc_info=exc)
    metrics.poison_events(exception=type(exc).__qualname__).inc()
    await send_to_dead_letters(event, f"could not apply: {type(exc).__qualname__}: {exc}", exception=exc)


@faust_app.agent(order_events_topic, name="rekey-by-restaurant")
async def rekey_by_restaurant(stream: Any) -> None:
    """Decode and validate upstream events; apply those already on their restaurant's partition, forward the rest."""
    async for event in stream.events():
        await handle_upstream(event)


@faust_app.agent(by_restaurant_topic, name="apply-to-pending-orders")
async def apply_to_pending_orders(stream: Any) -> None:
    """Apply the re-keyed events: one restaurant's events arrive in order on one partition."""
    async for event in stream.events():
        await handle_internal(event)


def left_for_the_rejoin() -> bool:
    """While this worker is fenced, an event is neither applied, forwarded nor dead-lettered.

    Its offset is not committed either (partner_stream/faust_patches/transport.py), so it is read again: by the
    partitions' new owner, or by this worker once it has rejoined and rebuilt its table (partner_stream/fencing.py).
    """
    if not pending_orders.writes_held():
        return False
    metrics.EVENTS_LEFT_WHILE_FENCED.inc()
    return True


async def handle_upstream(event: EventT) -> None:
    """One upstream record: applied here, forwarded to its restaurant's partition, or dead-lettered."""
    if left_for_the_rejoin():
        return
    message = event.message
    try:
        kafka_time = timestamp_to_datetime(message.timestamp * 1000 if message.timestamp else None)
        order_event = decode_upstream(_KIND_BY_TOPIC[message.topic], message.value, kafka_time)
    except InvalidEvent as exc:
        await send_to_dead_letters(event, exc.reason)
        return
    try:
        if routing.is_on_restaurant_partition(message.topic, message.partition, order_event.restaurant_id):
            metrics.ROUTED_DIRECT.inc()
            await apply_to_table(event, order_event)
            return
        metrics.ROUTED_REKEYED.inc()
        # The record keeps the upstream timestamp, so the push-latency metric measures the whole path.
        await by_restaurant_topic.send(
            key=order_event.restaurant_id,
            value=encode_internal(order_event),
            timestamp=message.timestamp,
        )
    except Exception as exc:
        await send_poison_to_dead_letters(event, exc)


async def handle_internal(event: EventT) -> None:
    """One re-keyed record (or a tablet's acknowledgement): applied or dead-lettered."""
    if left_for_the_rejoin():
        return
    try:
        order_event = decode_internal(event.message.value)
    except InvalidEvent as exc:
        await send_to_dead_letters(event, exc.reason)
        return
    try:
        await apply_to_table(event, order_event)
    except Exception as exc:
        await send_poison_to_dead_letters(event, exc)


async def apply_to_table(event: EventT, order_event: AnyOrderEvent) -> None:
    """Apply one event to ``pending-orders`` and hand the change to the hub.

    ``event`` must be on the restaurant's table partition: its changelog records go to the partition of
    the event being processed. Reading, writing and handing over to the hub happen in one event-loop
    step (no await), so no other writer interleaves and a tablet's snapshot holds the change or is
    followed by it; only a store that refuses writes makes this wait (and retry). The changelog records
    go to the producer after that step, before the event is done (tables/changelog.py).
    """
    if pending_orders.storage_failure is not None:
        # The other agent holds an event the store refused: compute against what it will have written.
        await wait_for_the_store()
        if left_for_the_rejoin():  # fenced while waiting
            return
    message = event.message
    # Stamped with the generation the event was read in: a newer owner's records always win (tables/stamps.py).
    generation = message.generation_id or 0
    partition = message.partition
    source = (message.topic, partition, message.offset)
    refused: StorageWriteFailed | None = None
    resent = 0
    outcome: Outcome | None = None
    with pending_orders.applying(partition):
        try:
            # A partition still closed after a full disk refuses reads too: held like a refused write.
            outcome = apply_event(pending_orders, order_event, resolved_memory=settings.resolved_memory)
            metrics.events_applied(kind=order_event.kind.value, changed=str(outcome.change is not None)).inc()
            if outcome.is_noop:
                # Read again after a crash, its records may never have reached the changelog (tables/storage.py).
                resent = pending_orders.resend_if_read_again(
                    order_event.restaurant_id, order_event.order_id, partition, source
                )
            else:
                pending_orders.write(outcome, generation, partition, source)
        except StorageWriteFailed as exc:
            refused = exc
        except WritesHeld:  # fenced since the check above: read again after the rejoin, never dead-lettered
            metrics.EVENTS_LEFT_WHILE_FENCED.inc()
            return
    if refused is not None:
        outcome = await write_when_the_store_recovers(order_event, generation, source, refused)
        if outcome is None:
            return
    assert outcome is not None
    if outcome.is_noop:
        tell_outcome_listeners(order_event, outcome)
        if resent:
            metrics.CHANGELOG_RECORDS_RESENT.inc(resent)
            await pending_orders.send_written()
        return
    if outcome.change is not None:
        for listener in change_listeners:
            try:
                listener(order_event.restaurant_id, outcome.change)
            except Exception:  # the change is stored: never dead-letter it for a failed push
                log.exception("a change listener failed for restaurant %r", order_event.restaurant_id)
        observe_push_latency(event)
    tell_outcome_listeners(order_event, outcome)
    # Before the event is acknowledged: Faust flushes the producer before it commits the event's offset.
    await pending_orders.send_written()


def tell_outcome_listeners(order_event: AnyOrderEvent, outcome: Outcome) -> None:
    for listener in outcome_listeners:
        try:
            listener(order_event, outcome)
        except Exception:  # the outcome is stored: never dead-letter it for a failed listener
            log.exception("an outcome listener failed for restaurant %r", order_event.restaurant_id)


async def wait_for_the_store() -> None:
    while pending_orders.storage_failure is not None:  # noqa: ASYNC110 (the other agent's retry clears it)
        await asyncio.sleep(STORE_RETRY_FIRST)


async def write_when_the_store_recovers(
    order_event: AnyOrderEvent, generation: int, source: Source, first_failure: StorageWriteFailed
) -> Outcome | None:
    """Retry until the store takes the event: it is held, never skipped, and returns what was written.

    None if this worker fenced itself meanwhile: the event is then read again after the rejoin.

    Each attempt reopens the partition's database, then applies the event again to what the store holds
    and writes that, in one step: a refused write left nothing behind, and the records may have moved on
    meanwhile. Holding the agent holds every partition it consumes: nothing after this event is applied out
    of turn.
    """
    report_storage_failure(first_failure)
    partition = source[1]
    metrics.STORAGE_WRITE_FAILING.set(1)
    delay = STORE_RETRY_FIRST
    attempts = 1
    try:
        while True:
            metrics.STORAGE_WRITE_FAILURES.inc()
            await asyncio.sleep(delay)
            attempts += 1
            if left_for_the_rejoin():
                return None
            try:
                pending_orders.reopen(partition)
                with pending_orders.applying(partition):
                    outcome = apply_event(pending_orders, order_event, resolved_memory=settings.resolved_memory)
                    pending_orders.write(outcome, generation, partition, source)
            except StorageWriteFailed:
                delay = min(delay * 2, STORE_RETRY_LAST)
                continue
            log.warning("storage write succeeded after %d attempts: event processing resumed", attempts)
            return outcome
    finally:
        metrics.STORAGE_WRITE_FAILING.set(0)


def report_storage_failure(failure: StorageWriteFailed) -> None:
    """Say it once, in words an operator searches for: where, how much space is left, what RocksDB said."""
    data_dir = Path(faust_app.conf.datadir).resolve()
    log.error(
        "STORAGE WRITE FAILED (disk full?): the local store in %s (%.1f MiB free) refused a write: %s. Event "
        "processing is paused and retried until it succeeds; no event is skipped.",
        data_dir,
        free_bytes(data_dir) / 2**20,
        failure,
    )


def observe_push_latency(event: EventT) -> None:
    """Upstream produce -> applied here (the re-key step forwards the upstream record's timestamp)."""
    produced = event.message.timestamp
    if produced:
        metrics.PUSH_LATENCY.observe(max(0.0, time.time() - produced))
