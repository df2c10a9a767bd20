"""The pure transitions of a restaurant's pending orders over its records, without Faust or Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from partner_stream.events import AnyOrderEvent, OrderAccepted, OrderAcknowledged, OrderCreated, OrderRejected
from partner_stream_tables.memory import MemoryTable
from partner_stream_tables.model import Resolution, ResolvedOrder, RestaurantHead, encode_record
from partner_stream_tables.queries import change_name, change_payload, snapshot_payload
from partner_stream_tables.stamps import payload_of
from partner_stream_tables.transitions import OrderAdded, OrderResolved, OrderSeen, Outcome, apply_event

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


def step(table: MemoryTable, event: AnyOrderEvent, memory: int = MEMORY) -> Outcome:
    """What the agent does: apply, then write the outcome."""
    outcome = apply_event(table, event, resolved_memory=memory)
    table.write(outcome)
    return outcome


def run(events: list[AnyOrderEvent], memory: int = MEMORY, table: MemoryTable | None = None) -> MemoryTable:
    table = table if table is not None else MemoryTable()
    for event in events:
        step(table, event, memory)
    return table


def pending_ids(table: MemoryTable, restaurant: str = "42") -> list[str]:
    return [o.order_id for o in table.state_of(restaurant).pending]


def seq(table: MemoryTable, restaurant: str = "42") -> int:
    return table.state_of(restaurant).seq


def test_created_order_becomes_pending_and_bumps_seq() -> None:
    table = MemoryTable()
    change = step(table, created("a")).change
    assert pending_ids(table) == ["a"] and seq(table) == 1
    assert isinstance(change, OrderAdded) and change.seq == 1
    assert change_name(change) == "NewOrder"
    payload = change_payload(change)
    assert payload["orderId"] == "a" and payload["seq"] == 1 and payload["customerName"] == "Ana"
    assert payload["items"] == [{"name": "Pad Thai", "quantity": 2, "unitPrice": 9.5, "notes": None}]


def test_duplicate_created_changes_nothing() -> None:
    table = run([created("a")])
    outcome = apply_event(table, created("a"), resolved_memory=MEMORY)
    assert outcome.is_noop and outcome.change is None


def test_accept_removes_order_and_reports_resolution() -> None:
    table = run([created("a"), created("b", 1)])
    change = step(table, accepted("a")).change
    assert pending_ids(table) == ["b"] and seq(table) == 3
    assert isinstance(change, OrderResolved) and change_name(change) == "OrderAccepted"


def test_reject_carries_reason() -> None:
    table = run([created("a")])
    change = step(table, rejected("a")).change
    assert pending_ids(table) == []
    assert change is not None and change_name(change) == "OrderRejected"
    assert change_payload(change)["reason"] == "closed"


def test_resolution_before_creation_means_never_pending() -> None:
    table = run([accepted("a"), created("a")])
    assert pending_ids(table) == [] and seq(table) == 0


def test_late_duplicate_cannot_resurrect_resolved_order() -> None:
    table = run([created("a"), rejected("a"), created("a"), accepted("a")])
    assert pending_ids(table) == [] and seq(table) == 2


def test_resolved_memory_is_a_bounded_ring() -> None:
    table = run([accepted(f"o{i}") for i in range(10)], memory=4)
    remembered = {i for i in range(10) if isinstance(table.order("42", f"o{i}"), ResolvedOrder)}
    assert remembered == {6, 7, 8, 9}
    assert len(table.data) == 1 + 4 + 4  # the head, four resolutions, four ring slots
    # A forgotten order is outside the idempotence window: its late OrderCreated shows again, as documented.
    assert step(table, created("o0"), memory=4).change is not None


def test_forgotten_rejections_are_forgotten_and_kept_ones_keep_their_outcome() -> None:
    table = run([rejected("r0"), accepted("a1"), rejected("r2"), accepted("a3")], memory=2)
    assert table.order("42", "r0") is None and table.order("42", "a1") is None
    assert table.order("42", "r2") == ResolvedOrder(order_id="r2", resolution=Resolution.REJECTED)
    assert table.order("42", "a3") == ResolvedOrder(order_id="a3", resolution=Resolution.ACCEPTED)


def test_pending_orders_are_oldest_first_whatever_the_arrival_order() -> None:
    table = run([created("late", 5), created("early", 1), created("mid", 3)])
    assert pending_ids(table) == ["early", "mid", "late"]


def test_acknowledge_marks_order_seen_once() -> None:
    ack = OrderAcknowledged(order_id="a", restaurant_id="42", acknowledged_at=T0)
    table = run([created("a")])
    change = step(table, ack).change
    assert isinstance(change, OrderSeen) and seq(table) == 2
    assert table.state_of("42").pending[0].acknowledged_at == T0
    assert apply_event(table, ack, resolved_memory=MEMORY).is_noop


def test_snapshot_payload_is_camel_case() -> None:
    snapshot = snapshot_payload(run([created("a")]).state_of("42"))
    assert snapshot["restaurantId"] == "42" and snapshot["seq"] == 1
    assert set(snapshot["orders"][0]) >= {"orderId", "customerName", "items", "totalPrice", "createdAt", "seq"}


def test_an_event_writes_the_same_few_small_records_however_many_orders_the_restaurant_holds() -> None:
    """Per-order records: the cost of an event does not grow with the restaurant's history."""
    busy = run([created(f"open-{i}", i % 600) for i in range(2000)] + [accepted(f"gone-{i}") for i in range(500)])
    quiet = MemoryTable()
    for table in (busy, quiet):
        for event in (created("new", 7), accepted("new"), rejected("early")):
            outcome = step(table, event)
            assert len(outcome.writes) + len(outcome.deletes) <= 4
            assert max(len(encode_record(record)) for _, record in outcome.writes) < 1024
    assert len(busy.state_of("42").pending) == 2000


# -- values written by the one-value-per-restaurant layout (before 2026-12-04) ---------------------------

LEGACY = (
    b'{"restaurantId":"42","seq":7,"pending":['
    b'{"orderId":"p2","restaurantId":"42","customerName":"Bo","items":[{"name":"Soup","quantity":1,'
    b'"unitPrice":4.0,"notes":null}],"totalPrice":4.0,"createdAt":"2026-11-25T19:05:00Z","seq":6,'
    b'"acknowledgedAt":null},'
    b'{"orderId":"p1","restaurantId":"42","customerName":"Ana","items":[{"name":"Pad Thai","quantity":2,'
    b'"unitPrice":9.5,"notes":null}],"totalPrice":19.0,"createdAt":"2026-11-25T19:00:00Z","seq":5,'
    b'"acknowledgedAt":"2026-11-25T19:01:00Z"}],'
    b'"resolved":["a","b"],"rejected":["b"]}'
)
OLDER_LEGACY = (
    b'{"restaurantId":"42","seq":3,"pending":[],"resolved":['
    b'{"orderId":"a","resolution":"accepted"},{"orderId":"b","resolution":"rejected"}]}'
)


def legacy_table(raw: bytes = LEGACY) -> MemoryTable:
    table = MemoryTable()
    table.data[b"42"] = raw
    return table


def test_a_legacy_value_reads_as_its_pending_orders_before_any_event() -> None:
    state = legacy_table().state_of("42")
    assert state.seq == 7 and [o.order_id for o in state.pending] == ["p1", "p2"]
    assert legacy_table(OLDER_LEGACY).state_of("42").seq == 3


def test_the_next_event_rewrites_a_legacy_value_as_records_keeping_everything() -> None:
    table = legacy_table()
    change = step(table, created("p3", 9)).change
    assert isinstance(change, OrderAdded) and change.seq == 8
    state = table.state_of("42")
    assert [o.order_id for o in state.pending] == ["p1", "p2", "p3"] and state.seq == 8
    assert state.pending[0].acknowledged_at is not None
    assert table.order("42", "b") == ResolvedOrder(order_id="b", resolution=Resolution.REJECTED)
    # The remembered resolutions still absorb late duplicates, and the head is a head now.
    assert apply_event(table, created("a"), resolved_memory=MEMORY).is_noop
    assert isinstance(table.head("42"), RestaurantHead)


def test_a_duplicate_still_migrates_the_legacy_value() -> None:
    table = legacy_table(OLDER_LEGACY)
    outcome = step(table, accepted("a"))
    assert outcome.change is None and outcome.writes
    assert isinstance(table.head("42"), RestaurantHead) and seq(table) == 3
    assert table.order("42", "b") == ResolvedOrder(order_id="b", resolution=Resolution.REJECTED)


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

    def resolutions(table: MemoryTable) -> dict[bytes, bytes]:
        return {key: payload_of(raw) for key, raw in table.data.items() if b"resolution" in raw}

    assert resolutions(actual) == resolutions(expected)


def test_a_legacy_order_stored_without_offset_sorts_with_new_ones_after_migration() -> None:
    """The old layout kept a producer's naive CreatedAt as it was; it means UTC."""
    table = legacy_table(LEGACY.replace(b'"2026-11-25T19:00:00Z"', b'"2026-11-25T19:00:00"'))
    step(table, created("p3", 9))
    pending = table.state_of("42").pending
    assert [o.order_id for o in pending] == ["p1", "p2", "p3"]
    assert pending[0].created_at.tzinfo is not None


def test_migrating_a_full_ring_on_a_resolve_leaves_no_forgotten_resolution_behind() -> None:
    resolved = ",".join(f'"r{n}"' for n in range(4)).encode()
    table = legacy_table(b'{"restaurantId":"42","seq":1,"pending":[],"resolved":[' + resolved + b'],"rejected":[]}')
    step(table, accepted("new"), memory=4)
    assert table.order("42", "r0") is None  # forgotten: the oldest of a full ring
    assert len(table.data) == 1 + 4 + 4


def test_change_payloads_write_times_as_the_stored_orders_do() -> None:
    """Tablets got `Z` in snapshots and `+00:00` in pushes; one format now."""
    from datetime import UTC, datetime

    from partner_stream_tables.model import json_time

    assert json_time(datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC)) == "2026-12-05T01:02:03Z"
    assert json_time(datetime(2026, 12, 5, 1, 2, 3)) == "2026-12-05T01:02:03Z"  # naive means UTC
    assert json_time(None) is None
