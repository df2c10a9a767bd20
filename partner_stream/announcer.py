"""The owner's announcer: publishes OrderSeen / OrderUnseen for its restaurants' orders, each once.

It runs beside the stream, never in it: a broker that refuses or delays the announcement topics slows
announcements down, never an order on its way to a tablet.

For every order it owes something to, the announcer keeps a reminder (:class:`~partner_stream.unseen.UnseenSchedule`).
When one comes due it reads the order's record *as it is now* and decides:

- OrderSeen, once the order's first acknowledgement is recorded (``acknowledged_at``) and ``seen_announced`` is
  not; published even if the order was resolved meanwhile (the acknowledgement remembers what was seen);
- OrderUnseen at the step :meth:`UnseenSchedule.next_step` says is due, unless that step is recorded.

It publishes, waits until the broker has the announcement, then sends an ``OrderAnnounced`` event to the
restaurant's partition; the agent applies it like any event and records the announcement in the order's record,
through the changelog. Until that record is applied the announcement is *in flight* here and not published
again. A new owner reads the records (after a failover, a rebalance): it publishes what is not recorded. An
announcement published by a worker that died before its record was applied is therefore published again, with
the same ``AnnouncementId``; never lost. A publish that fails is tried again after a back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from partner_stream_tables.model import OrderRecord, PendingOrder
from partner_stream_tables.transitions import OrderAdded, OrderSeen, Outcome

from . import metrics
from .announcements import OrderSeen as OrderSeenAnnouncement
from .announcements import OrderUnseen
from .events import AnyOrderEvent, OrderAnnounced
from .unseen import DueStep, UnseenSchedule, threshold_of

log = logging.getLogger(__name__)

#: Seconds to wait for the broker to take a round of announcements before it counts as failed.
PUBLISH_TIMEOUT = 10.0
#: After a failed publish, the order's reminder comes back this much later (seconds).
RETRY_AFTER = 5.0
#: Records read between two yields to the event loop while the reminders are rebuilt after a handover.
REBUILD_SLICE = 2000
#: While the stream has more records than this left to read (catching up after an outage), announcements
#: wait: every one costs the stream a record to apply, and the kitchens' orders come first.
CATCH_UP_BACKLOG = 1000
#: Announcements published per tick at most (a burst is spread over ticks). A round shares the producer with
#: the stream: each announcement is a record, and its recording costs the stream an event and two changelog
#: records. Rounds of 500 (~1,500 records, ~3.5 s on the embedded broker) held every order behind them, and a
#: worker with thousands of unseen orders went on doing so round after round (an accept waited over 30 s in
#: the suite). Rounds of 50 keep what an order waits behind well under a second.
MAX_PER_TICK = 50

Key = tuple[str, str]  # (restaurant ID, order ID)


@dataclass(frozen=True, slots=True)
class Ports:
    """What the announcer reads and sends; the composition root (partner_stream/runtime.py) binds them."""

    read_order: Callable[[str, str], OrderRecord | None]
    pending_orders: Callable[[], Iterable[PendingOrder]]
    owns: Callable[[str], bool]
    ready: Callable[[], bool]
    #: Records this worker's stream partitions have left to read.
    backlog: Callable[[], int]
    count_tablets: Callable[[str], int]
    #: Send an announcement; the awaitable it returns completes once the broker has it.
    publish: Callable[[OrderSeenAnnouncement | OrderUnseen], Awaitable[Awaitable[Any]]]
    record: Callable[[OrderAnnounced], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Due:
    key: Key
    announcement: OrderSeenAnnouncement | OrderUnseen
    record: OrderAnnounced


class Announcer:
    def __init__(self, schedule: UnseenSchedule, ports: Ports) -> None:
        self.schedule = schedule
        self.ports = ports
        #: Orders whose first acknowledgement is recorded and whose OrderSeen is not yet.
        self._seen_owed: dict[Key, PendingOrder] = {}
        #: Announcements published whose record is not applied yet: (restaurant, order, kind, step).
        self._in_flight: set[tuple[str, str, str, int]] = set()
        self._failures_logged_at = 0.0

    # -- what the stream tells it ---------------------------------------------------------------------

    def on_outcome(self, event: AnyOrderEvent, outcome: Outcome, now: float) -> None:
        """An event was applied on this worker: remind of the order it changed, or settle a recorded one."""
        match outcome.change:
            case OrderAdded(order=order):
                self._remind_unseen(order, now)
            case OrderSeen(order=order):
                self._seen_owed[(order.restaurant_id, order.order_id)] = order
                self.schedule.remind(order.restaurant_id, order.order_id, now)
        if isinstance(event, OrderAnnounced):
            self._in_flight.discard(_flight(event))
            # The record just written (none if it was resolved, or recorded already: then its owner reminded).
            for _, record in outcome.writes:
                if isinstance(record, PendingOrder):
                    self._remind_unseen(record, now)  # the next step, if any

    def handed_partitions(self, now: float) -> None:
        self.schedule.handed_partitions(now)
        self._seen_owed.clear()

    # -- the timer ------------------------------------------------------------------------------------

    async def tick(self, now: float) -> None:
        """Publish what is due (only while this worker may serve its restaurants: the records must be true, and
        not while it catches up: the orders themselves come first)."""
        if not self.ports.ready() or self.ports.backlog() > CATCH_UP_BACKLOG:
            return
        if self.schedule.needs_rebuild:
            await self._rebuild(now)
            if not self.ports.ready():
                return
        due = [d for key in self.schedule.pop_due(now, MAX_PER_TICK) if (d := self._decide(key, now)) is not None]
        metrics.UNSEEN_WATCHED.set(len(self.schedule))
        if due:
            await self._publish(due, now)

    async def _rebuild(self, now: float) -> None:
        """After a handover: a reminder for every order of this worker's partitions that is owed something."""
        self.schedule.needs_rebuild = False
        self._in_flight = {flight for flight in self._in_flight if self.ports.owns(flight[0])}
        for count, order in enumerate(self.ports.pending_orders(), start=1):
            if order.acknowledged_at is not None and not order.seen_announced:
                self._seen_owed[(order.restaurant_id, order.order_id)] = order
                self.schedule.remind(order.restaurant_id, order.order_id, now)
            else:
                self._remind_unseen(order, now)
            if count % REBUILD_SLICE == 0:
                await asyncio.sleep(0)  # a store of many orders must not stall the sockets

    def _remind_unseen(self, order: PendingOrder, now: float) -> None:
        due = self._next_unseen(order, now)
        if due is not None:
            self.schedule.remind(order.restaurant_id, order.order_id, due.at)

    def _next_unseen(self, order: PendingOrder, now: float) -> DueStep | None:
        if order.acknowledged_at is not None:
            return None
        return self.schedule.next_step(
            created_at=order.created_at,
            announced=order.unseen_step,
            tablets=self.ports.count_tablets(order.restaurant_id),
            now=now,
        )

    def _decide(self, key: Key, now: float) -> _Due | None:
        restaurant_id, order_id = key
        if not self.ports.owns(restaurant_id):
            self._seen_owed.pop(key, None)
            return None
        record = self.ports.read_order(restaurant_id, order_id)
        owed = self._seen_owed.get(key)
        if owed is not None:
            if isinstance(record, PendingOrder) and record.seen_announced:
                del self._seen_owed[key]
                return None
            if (restaurant_id, order_id, "OrderSeen", 0) in self._in_flight:
                return None
            return self._seen(owed)
        if not isinstance(record, PendingOrder):
            return None  # resolved (nothing more to say) or gone
        due = self._next_unseen(record, now)
        if due is None:
            return None
        if due.reason is None:  # not yet
            self.schedule.remind(restaurant_id, order_id, due.at)
            return None
        if (restaurant_id, order_id, "OrderUnseen", due.step) in self._in_flight:
            return None
        pending_for = max(0.0, now - record.created_at.timestamp())
        announcement = OrderUnseen(
            announcement_id=OrderUnseen.id_for(order_id, due.step),
            order_id=order_id,
            restaurant_id=restaurant_id,
            created_at=record.created_at,
            pending_for_seconds=round(pending_for, 3),
            connected_tablets=self.ports.count_tablets(restaurant_id),
            reason=due.reason,
            step=due.step,
            threshold_seconds=threshold_of(self.schedule.thresholds, due.step),
        )
        recorded = OrderAnnounced(
            order_id=order_id, restaurant_id=restaurant_id, announcement="OrderUnseen", step=due.step
        )
        return _Due(key, announcement, recorded)

    def _seen(self, order: PendingOrder) -> _Due:
        assert order.acknowledged_at is not None
        announcement = OrderSeenAnnouncement(
            announcement_id=OrderSeenAnnouncement.id_for(order.order_id),
            order_id=order.order_id,
            restaurant_id=order.restaurant_id,
            seen_at=order.acknowledged_at,
            connected_tablets=self.ports.count_tablets(order.restaurant_id),
        )
        recorded = OrderAnnounced(order_id=order.order_id, restaurant_id=order.restaurant_id, announcement="OrderSeen")
        return _Due((order.restaurant_id, order.order_id), announcement, recorded)

    async def _publish(self, due: list[_Due], now: float) -> None:
        """Publish a round at once, then record each one the broker took; retry the rest later."""
        results = await asyncio.gather(*(self._publish_one(d) for d in due), return_exceptions=True)
        failed = 0
        for item, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                failed += 1
                self.schedule.remind(*item.key, now + RETRY_AFTER)
                continue
            self._in_flight.add(_flight(item.record))
            if isinstance(item.announcement, OrderSeenAnnouncement):
                self._seen_owed.pop(item.key, None)
            kind = type(item.announcement).__name__
            reason = item.announcement.reason.value if isinstance(item.announcement, OrderUnseen) else ""
            metrics.announcements(announcement=kind, reason=reason).inc()
        if failed:
            metrics.ANNOUNCEMENT_FAILURES.inc(failed)
            self._log_failures(failed, due, results, now)

    async def _publish_one(self, item: _Due) -> None:
        delivery = await self.ports.publish(item.announcement)
        await asyncio.wait_for(delivery, PUBLISH_TIMEOUT)
        # The record goes through the stream; if it cannot be sent, the announcement stays owed (and in flight
        # is not set): published again after the back-off, with the same AnnouncementId.
        await asyncio.wait_for(self.ports.record(item.record), PUBLISH_TIMEOUT)

    def _log_failures(self, failed: int, due: list[_Due], results: list[Any], now: float) -> None:
        if now - self._failures_logged_at < 60.0:
            return
        self._failures_logged_at = now
        first = next(r for r in results if isinstance(r, BaseException))
        log.warning(
            "could not publish %d of %d announcement(s) (first: %s: %s); retrying in %.0f s (logged once a minute)",
            failed,
            len(due),
            type(first).__name__,
            str(first)[:200],
            RETRY_AFTER,
        )


def _flight(record: OrderAnnounced) -> tuple[str, str, str, int]:
    return (record.restaurant_id, record.order_id, record.announcement, record.step or 0)
