"""The pure transitions of a restaurant's pending orders, without Faust or Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from partner_stream.events import AnyOrderEvent, OrderAccepted, OrderAcknowledged, OrderCreated, OrderRejected
from tables.model import Resolution, RestaurantOrders
from tables.queries import change_name, change_payload, snapshot_payload
from tables.transitions import OrderAdded, OrderResolved, OrderSeen, apply_event

T0 = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
MEMORY = 50


def created(order: str, minute: int = 0, restaurant: str = "42") -> OrderCreated:
    return OrderCreated.model_validate(
        {
            "OrderId": order,
            "RestaurantId": restaurant,
            "CustomerName": "Ana",
            "Items": [{"Name": "Pad Thai", "Quantity": 2, "UnitPrice": 9.5}],
            "TotalPrice": 19.0,
            "CreatedAt": (T0 + timedelta(minutes=minute)).isoformat(),
        }
    )


def accepted(order: str) -> OrderAccepted:
    return OrderAccepted.model_validate({"OrderId": order, "RestaurantId": "42"})


def rejected(order: str) -> OrderRejected:
    return OrderRejected.model_validate({"OrderId": order, "RestaurantId": "42", "Reason": "closed"})


def run(events: list[AnyOrderEvent], memory: int = MEMORY) -> RestaurantOrders:
    state = RestaurantOrders.empty("42")
    for event in events:
        state, _ = apply_event(state, event, resolved_memory=memory)
    return state


def pending_ids(state: RestaurantOrders) -> list[str]:
    return [o.order_id for o in state.pending]


def test_created_order_becomes_pending_and_bumps_seq() -> None:
    state, change = apply_event(RestaurantOrders.empty("42"), created("a"), resolved_memory=MEMORY)
    assert pending_ids(state) == ["a"] and state.seq == 1
    assert isinstance(change, OrderAdded) and change.seq == 1
    assert change_name(change) == "NewOrder"
    payload = change_payload(change)
    assert payload["orderId"] == "a" and payload["seq"] == 1 and payload["customerName"] == "Ana"
    assert payload["items"] == [{"name": "Pad Thai", "quantity": 2, "unitPrice": 9.5, "notes": None}]


def test_duplicate_created_changes_nothing() -> None:
    state = run([created("a")])
    again, change = apply_event(state, created("a"), resolved_memory=MEMORY)
    assert again is state and change is None


def test_accept_removes_order_and_reports_resolution() -> None:
    state = run([created("a"), created("b", 1)])
    state, change = apply_event(state, accepted("a"), resolved_memory=MEMORY)
    assert pending_ids(state) == ["b"] and state.seq == 3
    assert isinstance(change, OrderResolved) and change_name(change) == "OrderAccepted"


def test_reject_carries_reason() -> None:
    state, change = apply_event(run([created("a")]), rejected("a"), resolved_memory=MEMORY)
    assert state.pending == ()
    assert change is not None and change_name(change) == "OrderRejected"
    assert change_payload(change)["reason"] == "closed"


def test_resolution_before_creation_means_never_pending() -> None:
    state = run([accepted("a"), created("a")])
    assert state.pending == () and state.seq == 0


def test_late_duplicate_cannot_resurrect_resolved_order() -> None:
    state = run([created("a"), rejected("a"), created("a"), accepted("a")])
    assert state.pending == () and state.seq == 2


def test_resolved_memory_is_bounded() -> None:
    state = run([accepted(f"o{i}") for i in range(10)], memory=4)
    assert list(state.resolved) == ["o6", "o7", "o8", "o9"]


def test_forgotten_rejections_leave_the_rejected_list_too() -> None:
    state = run([rejected("r0"), accepted("a1"), rejected("r2"), accepted("a3")], memory=2)
    assert list(state.resolved) == ["r2", "a3"] and list(state.rejected) == ["r2"]
    assert state.resolution_of("r2") == Resolution.REJECTED
    assert state.resolution_of("a3") == Resolution.ACCEPTED
    assert state.resolution_of("r0") is None


def test_values_stored_in_the_older_resolution_format_still_load() -> None:
    older = (
        b'{"restaurantId":"42","seq":3,"pending":[],"resolved":['
        b'{"orderId":"a","resolution":"accepted"},{"orderId":"b","resolution":"rejected"}]}'
    )
    state = RestaurantOrders.from_bytes(older)
    assert list(state.resolved) == ["a", "b"] and list(state.rejected) == ["b"]
    assert RestaurantOrders.from_bytes(state.to_bytes()) == state


def test_pending_orders_are_oldest_first_whatever_the_arrival_order() -> None:
    state = run([created("late", 5), created("early", 1), created("mid", 3)])
    assert pending_ids(state) == ["early", "mid", "late"]


def test_acknowledge_marks_order_seen_once() -> None:
    ack = OrderAcknowledged(order_id="a", restaurant_id="42", acknowledged_at=T0)
    state, change = apply_event(run([created("a")]), ack, resolved_memory=MEMORY)
    assert isinstance(change, OrderSeen) and state.seq == 2
    assert state.pending[0].acknowledged_at == T0
    again, change = apply_event(state, ack, resolved_memory=MEMORY)
    assert again is state and change is None


def test_snapshot_payload_is_camel_case() -> None:
    snapshot = snapshot_payload(run([created("a")]))
    assert snapshot["restaurantId"] == "42" and snapshot["seq"] == 1
    assert set(snapshot["orders"][0]) >= {"orderId", "customerName", "items", "totalPrice", "createdAt", "seq"}


def test_value_round_trips_through_bytes() -> None:
    state = run([created("a"), created("b", 1), accepted("b"), accepted("zzz")])
    assert RestaurantOrders.from_bytes(state.to_bytes()) == state


# Property: whatever the interleaving of upstream events, with duplicates, the pending set
# ends up the same as applying the clean sequence (each order created once, then resolved).

order_fates = st.lists(st.sampled_from(["pending", "accepted", "rejected"]), min_size=1, max_size=8)


def clean_events(fates: list[str]) -> list[AnyOrderEvent]:
    events: list[AnyOrderEvent] = []
    for i, fate in enumerate(fates):
        events.append(created(f"o{i}", i))
        if fate == "accepted":
            events.append(accepted(f"o{i}"))
        elif fate == "rejected":
            events.append(rejected(f"o{i}"))
    return events


@settings(max_examples=300, deadline=None)
@given(fates=order_fates, data=st.data())
def test_any_interleaving_with_duplicates_gives_the_clean_final_state(fates: list[str], data: st.DataObject) -> None:
    clean = clean_events(fates)
    duplicates = data.draw(st.lists(st.sampled_from(clean), max_size=len(clean)))
    shuffled = data.draw(st.permutations(clean + duplicates))

    expected = run(clean)
    actual = run(list(shuffled))

    assert pending_ids(actual) == pending_ids(expected)
    assert set(actual.resolved) == set(expected.resolved)
