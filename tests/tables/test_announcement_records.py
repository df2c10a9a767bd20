"""An order is announced seen once and unseen once per step: the table records it, the transitions refuse repeats."""

from __future__ import annotations

from datetime import timedelta

from partner_stream.announcements import UnseenReason
from partner_stream.events import OrderAcknowledged, OrderUnseenDue
from partner_stream_tables.queries import change_payload, order_payload, snapshot_payload
from partner_stream_tables.stamps import stamp_of
from partner_stream_tables.transitions import SeenAnnouncement, UnseenAnnouncement, apply_event
from tests.tables.test_transitions import MEMORY, T0, accepted, created, run, seq, step


def due(order: str, step_: int, reason: UnseenReason = UnseenReason.NOT_ACKNOWLEDGED) -> OrderUnseenDue:
    return OrderUnseenDue(order_id=order, restaurant_id="42", step=step_, reason=reason)


def ack(order: str) -> OrderAcknowledged:
    return OrderAcknowledged(order_id=order, restaurant_id="42", acknowledged_at=T0 + timedelta(seconds=5))


def test_the_first_acknowledgement_is_announced_once() -> None:
    table = run([created("a")])
    first = step(table, ack("a"))
    assert first.announcement == SeenAnnouncement(order=first.change.order, seen_at=T0 + timedelta(seconds=5))
    assert step(table, ack("a")).announcement is None


def test_an_unseen_step_is_recorded_without_a_change_tablets_see() -> None:
    table = run([created("a")])
    outcome = step(table, due("a", 1))
    assert isinstance(outcome.announcement, UnseenAnnouncement) and outcome.announcement.step == 1
    assert outcome.change is None and seq(table) == 1  # tablets are not told: their seq does not move
    assert table.state_of("42").pending[0].unseen_step == 1


def test_no_step_twice_and_no_step_below_the_last_one() -> None:
    table = run([created("a"), due("a", 0, UnseenReason.NO_TABLET_CONNECTED), due("a", 2)])
    assert apply_event(table, due("a", 2), resolved_memory=MEMORY).is_noop
    assert apply_event(table, due("a", 1), resolved_memory=MEMORY).is_noop
    assert not apply_event(table, due("a", 3), resolved_memory=MEMORY).is_noop


def test_nothing_is_announced_unseen_once_it_was_seen_or_resolved() -> None:
    table = run([created("a"), created("b"), ack("a"), accepted("b")])
    assert apply_event(table, due("a", 1), resolved_memory=MEMORY).is_noop
    assert apply_event(table, due("b", 1), resolved_memory=MEMORY).is_noop
    assert apply_event(table, due("never-created", 1), resolved_memory=MEMORY).is_noop


def test_the_recorded_step_carries_the_restaurants_current_stamp() -> None:
    # A replay keeps a key's newest stamp: a record stamped lower than the order's earlier one would be dropped.
    table = run([created("a"), created("b")])
    before = stamp_of(table.raw("42\x1fo\x1fa"))
    step(table, due("a", 1))
    assert stamp_of(table.raw("42\x1fo\x1fa")) >= before and stamp_of(table.raw("42\x1fo\x1fa")).seq == 2


def test_tablets_never_see_the_bookkeeping() -> None:
    table = run([created("a"), due("a", 1)])
    order = table.state_of("42").pending[0]
    assert "unseenStep" not in order_payload(order, 1)
    assert "unseenStep" not in snapshot_payload(table.state_of("42"))["orders"][0]
    added = apply_event(run([]), created("c"), resolved_memory=MEMORY).change
    assert "unseenStep" not in change_payload(added)
