"""Hostile input at the door: every event is applied or dead-lettered with a short reason, nothing else.

Runs the real decode -> transition -> write path (over the in-memory twin of the table) and the dead-letter
builder on generated events: any JSON, any shape, huge and odd values.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partner_stream.dead_letters import KEY_BYTES, VALUE_BYTES, dead_letter
from partner_stream.events import (
    LIMITS,
    EventKind,
    InvalidEvent,
    OrderCreated,
    decode_internal,
    decode_upstream,
    encode_internal,
    timestamp_to_datetime,
)
from partner_stream_tables.memory import MemoryTable
from partner_stream_tables.transitions import apply_event
from tests.support.hostile import hostile_created, valid_created

KAFKA_TIME = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
#: Kafka's default largest request; a dead letter must always fit in one.
KAFKA_REQUEST_LIMIT = 1_000_000


def survive(kind: EventKind, raw: bytes, table: MemoryTable) -> str | None:
    """Run one record through the door and the table: None if applied, else the dead-letter reason."""
    try:
        event = decode_upstream(kind, raw, KAFKA_TIME)
    except InvalidEvent as exc:
        assert 0 < len(exc.reason) <= LIMITS.reason_chars
        letter = dead_letter(
            key=b"k", value=raw, reason=exc.reason, topic="order-created", partition=0, offset=1, timestamp=None
        )
        size = len(letter.value or b"") + sum(len(k) + len(v) for k, v in letter.headers)
        assert size < KAFKA_REQUEST_LIMIT
        return exc.reason
    assert decode_internal(encode_internal(event)) == event
    table.write(apply_event(table, event, resolved_memory=50))
    return None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
FIELD_NAMES = ["OrderId", "orderId", "RestaurantId", "restaurantid", "CustomerName", "Items", "TotalPrice",
               "CreatedAt", "AcceptedAt", "EstimatedReadyAt", "Reason"]  # fmt: skip
shaped_events = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=8)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(list(EventKind)[:3]), body=json_values | shaped_events)
def test_any_json_is_applied_or_dead_lettered(kind: EventKind, body: Any) -> None:
    survive(kind, json.dumps(body).encode(), MemoryTable())


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=300))
def test_any_bytes_are_applied_or_dead_lettered(raw: bytes) -> None:
    survive(EventKind.CREATED, raw, MemoryTable())


def test_ten_thousand_hostile_events_lose_no_good_order() -> None:
    """The generator the real-worker fuzz test uses: every tolerated event is applied, the rest are refused."""
    rng = random.Random(11)
    table = MemoryTable()
    applied = refused = 0
    for n in range(10_000):
        if survive(EventKind.CREATED, hostile_created(rng, f"r{n % 50}", f"bad-{n}"), table) is None:
            applied += 1
        else:
            refused += 1
        assert survive(EventKind.CREATED, orjson.dumps(valid_created(f"r{n % 50}", f"good-{n}")), table) is None
    pending = {o.order_id for r in range(50) for o in table.state_of(f"r{r}").pending}
    assert {f"good-{n}" for n in range(10_000)} <= pending
    assert refused > 5_000 and applied > 500


# -- each poison class found on main ff17dc6 ------------------------------------------------------------------


def item(**changes: Any) -> dict[str, Any]:
    return {"Name": "x", "Quantity": 1, "UnitPrice": 1, **changes}


def created_raw(**changes: Any) -> bytes:
    return orjson.dumps({**valid_created("42", "o1"), **changes})


def test_a_created_at_without_offset_is_utc_and_later_orders_still_sort() -> None:
    table = MemoryTable()
    assert survive(EventKind.CREATED, created_raw(CreatedAt="2025-01-01T10:00:00"), table) is None
    assert survive(EventKind.CREATED, created_raw(OrderId="o2", CreatedAt="2025-01-01T09:00:00+00:00"), table) is None
    assert survive(EventKind.CREATED, created_raw(OrderId="o3"), table) is None
    state = table.state_of("42")
    assert [o.order_id for o in state.pending] == ["o2", "o1", "o3"]
    assert state.pending[1].created_at == datetime(2025, 1, 1, 10, tzinfo=UTC)


def test_dotnet_default_datetime_falls_back_to_the_kafka_timestamp() -> None:
    event = decode_upstream(EventKind.CREATED, created_raw(CreatedAt="0001-01-01T00:00:00"), KAFKA_TIME)
    assert isinstance(event, OrderCreated) and event.created_at == KAFKA_TIME


@pytest.mark.parametrize("timestamp_ms", [10**15, 10**20, -5, 0, float("inf"), float("nan"), None, 1.0])
def test_an_implausible_kafka_timestamp_falls_back_to_the_time_of_receipt(timestamp_ms: float | None) -> None:
    before = time.time()
    stamped = timestamp_to_datetime(timestamp_ms)
    assert before - 1 <= stamped.timestamp() <= time.time() + 1


def test_a_plausible_kafka_timestamp_is_kept() -> None:
    assert timestamp_to_datetime(KAFKA_TIME.timestamp() * 1000) == KAFKA_TIME


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"CustomerName": "n" * 1_000_000}, "bytes; the limit is"),
        ({"CustomerName": "n" * 501}, "CustomerName: String should have at most 500 characters"),
        ({"RestaurantId": "r" * 10_000}, "RestaurantId: Value error, must be at most 128 characters"),
        ({"RestaurantId": "a/b"}, "must not contain '/'"),
        ({"OrderId": "o\x00"}, "must not contain control characters"),
        ({"Items": [item()] * 501}, "Items: Tuple should have at most 500 items"),
        ({"Items": [item(Quantity=True)]}, "Items.0.Quantity: Input should be a valid integer"),
        ({"Items": [item(Quantity="5")]}, "Items.0.Quantity: Input should be a valid integer"),
        ({"Items": [item(UnitPrice="1")]}, "Items.0.UnitPrice: Input should be a valid number"),
        ({"TotalPrice": 1e12}, "TotalPrice: Input should be less than or equal to"),
        ({"CreatedAt": 5}, "CreatedAt: Value error, must be an ISO 8601 date-time string, not int"),
        ({"CreatedAt": "9999-12-31T23:59:59-05:00"}, "CreatedAt: Value error, is out of range"),
    ],
)  # fmt: skip
def test_events_past_a_limit_are_refused_with_a_short_reason(changes: dict[str, Any], fragment: str) -> None:
    reason = survive(EventKind.CREATED, created_raw(**changes), MemoryTable())
    assert reason is not None and fragment in reason, reason


def test_accepted_at_must_be_a_date_time_string() -> None:
    raw = orjson.dumps({"OrderId": "o1", "RestaurantId": "42", "AcceptedAt": 5})
    assert "AcceptedAt" in (survive(EventKind.ACCEPTED, raw, MemoryTable()) or "")


def test_ten_thousand_invalid_items_give_a_short_reason() -> None:
    items = [{"Name": "", "Quantity": -1, "UnitPrice": -1}] * 400
    reason = survive(EventKind.CREATED, created_raw(Items=items), MemoryTable())
    assert reason is not None and len(reason) <= LIMITS.reason_chars and "more" in reason


def test_a_dead_letter_of_a_huge_record_is_a_truncated_copy_with_its_size_and_digest() -> None:
    value, key = b"v" * 3_000_000, b"k" * 5_000
    letter = dead_letter(key=key, value=value, reason="r" * 50_000, topic="t", partition=1, offset=2, timestamp=1e15)
    headers = dict(letter.headers)
    assert letter.value == value[:VALUE_BYTES] and letter.key == key[:KEY_BYTES]
    assert headers["x-dead-letter-truncated"] == b"key,value"
    assert headers["x-original-value-bytes"] == b"3000000"
    assert len(headers["x-original-value-sha256"]) == 64
    assert len(headers["x-dead-letter-reason"]) <= LIMITS.reason_chars * 4


def test_a_small_dead_letter_is_the_original_record_unchanged() -> None:
    letter = dead_letter(key=b"k", value=b"{}", reason="bad", topic="t", partition=0, offset=0, timestamp=None)
    assert (letter.key, letter.value) == (b"k", b"{}")
    assert "x-dead-letter-truncated" not in dict(letter.headers)
