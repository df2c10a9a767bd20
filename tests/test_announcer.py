"""The announcer publishes each announcement once, records it through the stream, and retries what failed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from partner_stream.announcements import OrderSeen, OrderUnseen
from partner_stream.announcer import CATCH_UP_BACKLOG, MAX_PER_TICK, RETRY_AFTER, Announcer, Ports
from partner_stream.events import AnyOrderEvent, OrderAccepted, OrderAcknowledged, OrderAnnounced, OrderCreated
from partner_stream.unseen import UnseenSchedule
from partner_stream_tables.memory import MemoryTable
from partner_stream_tables.model import PendingOrder
from partner_stream_tables.transitions import apply_event

CREATED = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
T = CREATED.timestamp()


class Stage:
    """One owner: its table, its tablets, the broker it publishes to, and the stream that applies records."""

    def __init__(self, *, tablets: int = 0, thresholds: tuple[float, ...] = (60.0,)) -> None:
        self.table = MemoryTable()
        self.tablets = tablets
        self.published: list[OrderSeen | OrderUnseen] = []
        self.records: list[OrderAnnounced] = []
        self.broker_down = False
        self.backlog = 0
        self.thresholds = thresholds
        self.announcer = self.new_owner()

    def new_owner(self) -> Announcer:
        """A worker that takes the partition over: the same table, none of the announcer's memory."""
        announcer = Announcer(
            UnseenSchedule(self.thresholds, arrival_grace=0.0),
            Ports(
                read_order=self.table.order,
                pending_orders=lambda: self._pending(),
                owns=lambda restaurant_id: True,
                ready=lambda: True,
                backlog=lambda: self.backlog,
                count_tablets=lambda restaurant_id: self.tablets,
                publish=self._publish,
                record=self._record,
            ),
        )
        announcer.schedule.needs_rebuild = False
        return announcer

    def _pending(self) -> list[PendingOrder]:
        return list(self.table.state_of("42").pending)

    async def _publish(self, announcement: OrderSeen | OrderUnseen) -> Any:
        if self.broker_down:
            raise ConnectionError("broker unreachable")
        self.published.append(announcement)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def _record(self, record: OrderAnnounced) -> None:
        self.records.append(record)

    def apply(self, event: AnyOrderEvent, now: float) -> None:
        """What the agent does: apply, write, tell the listeners."""
        outcome = apply_event(self.table, event, resolved_memory=50)
        self.table.write(outcome)
        self.announcer.on_outcome(event, outcome, now)

    def apply_records(self, now: float) -> None:
        records, self.records = self.records, []
        for record in records:
            self.apply(record, now)


def created(order: str, minutes_ago: float = 0.0) -> OrderCreated:
    return OrderCreated(
        order_id=order,
        restaurant_id="42",
        customer_name="Ana",
        items=[{"name": "Pad Thai", "quantity": 1, "unit_price": 9.5}],
        total_price=9.5,
        created_at=CREATED - timedelta(minutes=minutes_ago),
    )


async def test_no_tablet_on_arrival_is_published_once_and_recorded() -> None:
    stage = Stage(tablets=0)
    stage.apply(created("a"), T)
    await stage.announcer.tick(T + 0.25)
    await stage.announcer.tick(T + 0.5)  # the record is not applied yet: in flight, not published again
    assert [(a.order_id, a.step, a.reason.value) for a in stage.published] == [("a", 0, "no-tablet-connected")]
    stage.apply_records(T + 0.6)
    assert stage.table.order("42", "a").unseen_step == 0


async def test_the_next_step_follows_the_record_and_comes_at_its_threshold() -> None:
    stage = Stage(tablets=1, thresholds=(60.0, 300.0))
    stage.apply(created("a"), T)
    await stage.announcer.tick(T + 59)
    assert stage.published == []
    await stage.announcer.tick(T + 60)
    stage.apply_records(T + 60)
    await stage.announcer.tick(T + 299)
    await stage.announcer.tick(T + 300)
    assert [(a.step, a.reason.value, a.threshold_seconds) for a in stage.published] == [
        (1, "not-acknowledged", 60.0),
        (2, "not-acknowledged", 300.0),
    ]


async def test_a_failed_publish_is_retried_and_not_recorded_meanwhile() -> None:
    stage = Stage(tablets=0)
    stage.apply(created("a"), T)
    stage.broker_down = True
    await stage.announcer.tick(T + 0.25)
    assert stage.published == [] and stage.records == []
    stage.broker_down = False
    await stage.announcer.tick(T + 0.25 + RETRY_AFTER / 2)
    assert stage.published == []
    await stage.announcer.tick(T + 0.25 + RETRY_AFTER)
    assert [a.step for a in stage.published] == [0] and len(stage.records) == 1


async def test_seen_is_published_once_even_if_the_order_was_resolved_before_the_tick() -> None:
    stage = Stage(tablets=1)
    stage.apply(created("a"), T)
    stage.apply(OrderAcknowledged(order_id="a", restaurant_id="42", acknowledged_at=CREATED), T + 1)
    stage.apply(OrderAccepted(order_id="a", restaurant_id="42"), T + 1)
    await stage.announcer.tick(T + 1.1)
    stage.apply_records(T + 1.2)
    await stage.announcer.tick(T + 1.5)
    seen = [a for a in stage.published if isinstance(a, OrderSeen)]
    assert [(a.order_id, a.connected_tablets) for a in seen] == [("a", 1)]


async def test_a_new_owner_publishes_what_is_not_recorded_and_nothing_that_is() -> None:
    stage = Stage(tablets=0)
    stage.apply(created("done"), T)
    stage.apply(created("owed", minutes_ago=2), T)  # its threshold passed: due at the next tick
    await stage.announcer.tick(T + 0.25)
    assert sorted((a.order_id, a.step) for a in stage.published) == [("done", 0), ("owed", 1)]
    stage.records = [r for r in stage.records if r.order_id == "done"]  # the owner died before the other applied
    stage.apply_records(T + 0.3)

    stage.published.clear()
    stage.announcer = stage.new_owner()
    stage.announcer.handed_partitions(T + 10)
    await stage.announcer.tick(T + 10)
    assert [(a.order_id, a.step) for a in stage.published] == [("owed", 1)], "published again: same AnnouncementId"


@pytest.mark.parametrize("grace_over", [False, True])
async def test_after_a_handover_nothing_is_decided_before_tablets_could_reconnect(grace_over: bool) -> None:
    stage = Stage(tablets=0)
    stage.announcer.schedule.arrival_grace = 10.0
    stage.apply(created("a", minutes_ago=2), T)
    stage.announcer.handed_partitions(T)
    stage.tablets = 1  # the kitchen's tablet is back within the grace
    await stage.announcer.tick(T + (10 if grace_over else 5))
    expected = [("a", 1, "not-acknowledged")] if grace_over else []
    assert [(a.order_id, a.step, a.reason.value) for a in stage.published] == expected


async def test_while_the_stream_catches_up_announcements_wait_then_come_in_bounded_rounds() -> None:
    stage = Stage(tablets=0)
    for n in range(MAX_PER_TICK + 10):
        stage.apply(created(f"o{n}"), T)
    stage.backlog = CATCH_UP_BACKLOG + 1
    await stage.announcer.tick(T + 1)
    assert stage.published == []
    stage.backlog = 0
    await stage.announcer.tick(T + 2)
    assert len(stage.published) == MAX_PER_TICK
    await stage.announcer.tick(T + 3)
    assert len(stage.published) == MAX_PER_TICK + 10
