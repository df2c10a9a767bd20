"""What the platform was told is recorded per order: no OrderSeen twice, no OrderUnseen step twice or below the last."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from partner_stream.events import MAX_UNSEEN_STEP, InvalidEvent, OrderAcknowledged, OrderAnnounced, decode_internal
from partner_stream_tables.queries import change_payload, order_payload, snapshot_payload
from partner_stream_tables.stamps import stamp_of
from partner_stream_tables.transitions import apply_event
from tests.tables.test_transitions import MEMORY, T0, accepted, created, run, seq, step


def unseen(order: str, step_: int) -> OrderAnnounced:
    return OrderAnnounced(order_id=order, restaurant_id="42", announcement="OrderUnseen", step=step_)


def seen(order: str) -> OrderAnnounced:
    return OrderAnnounced(order_id=order, restaurant_id="42", announcement="OrderSeen")


def ack(order: str) -> OrderAcknowledged:
    return OrderAcknowledged(order_id=order, restaurant_id="42", acknowledged_at=T0 + timedelta(seconds=5))


def test_an_announcement_is_recorded_without_a_change_tablets_see() -> None:
    table = run([created("a")])
    outcome = step(table, unseen("a", 1))
    assert outcome.change is None and seq(table) == 1  # tablets are not told: their seq does not move
    assert table.state_of("42").pending[0].unseen_step == 1
    step(table, ack("a"))
    assert step(table, seen("a")).change is None and table.state_of("42").pending[0].seen_announced


def test_nothing_is_recorded_twice() -> None:
    table = run([created("a"), ack("a"), seen("a")])
    assert apply_event(table, seen("a"), resolved_memory=MEMORY).is_noop


def test_no_unseen_step_twice_and_none_below_the_last_one() -> None:
    table = run([created("a"), unseen("a", 0), unseen("a", 2)])
    assert apply_event(table, unseen("a", 2), resolved_memory=MEMORY).is_noop
    assert apply_event(table, unseen("a", 1), resolved_memory=MEMORY).is_noop
    assert not apply_event(table, unseen("a", 3), resolved_memory=MEMORY).is_noop


def test_nothing_is_recorded_for_a_resolved_or_unknown_order() -> None:
    table = run([created("b"), accepted("b")])
    assert apply_event(table, unseen("b", 1), resolved_memory=MEMORY).is_noop
    assert apply_event(table, unseen("never-created", 1), resolved_memory=MEMORY).is_noop


def test_the_record_carries_the_restaurants_current_stamp() -> None:
    # A replay keeps a key's newest stamp: a record stamped lower than the order's earlier one would be dropped.
    table = run([created("a"), created("b")])
    before = stamp_of(table.raw("42\x1fo\x1fa"))
    step(table, unseen("a", 1))
    after = stamp_of(table.raw("42\x1fo\x1fa"))
    assert after >= before and after.seq == 2


def test_tablets_never_see_the_bookkeeping() -> None:
    table = run([created("a"), unseen("a", 1)])
    order = table.state_of("42").pending[0]
    internal = {"unseenStep", "seenAnnounced"}
    assert not internal & set(order_payload(order, 1))
    assert not internal & set(snapshot_payload(table.state_of("42"))["orders"][0])
    added = apply_event(run([]), created("c"), resolved_memory=MEMORY).change
    assert not internal & set(change_payload(added))


@pytest.mark.parametrize(
    "envelope",
    [
        {"announcement": "OrderUnseen", "step": MAX_UNSEEN_STEP + 1},
        {"announcement": "OrderUnseen", "step": -1},
        {"announcement": "OrderUnseen", "step": "1"},
        {"announcement": "OrderCancelled"},
        {"announcement": None},
    ],
)
def test_a_forged_or_broken_record_event_is_refused(envelope: dict[str, object]) -> None:
    raw = orjson.dumps({"kind": "OrderAnnounced", "event": {"OrderId": "a", "RestaurantId": "42", **envelope}})
    with pytest.raises(InvalidEvent):
        decode_internal(raw)
