"""The upstream contract: case-insensitive names, normalised IDs, clear reasons for bad events."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from partner_stream.events import (
    EventKind,
    InvalidEvent,
    OrderCreated,
    decode_internal,
    decode_upstream,
    encode_internal,
    json_schemas,
)

KAFKA_TIME = datetime(2026, 11, 25, 18, 30, tzinfo=UTC)
DOCS = Path(__file__).resolve().parent.parent / "docs"

EXAMPLE = (
    b'{"OrderId":"8f1c","RestaurantId":"42","CustomerName":"Ana",'
    b'"Items":[{"Name":"Pad Thai","Quantity":2,"UnitPrice":9.5}],"TotalPrice":19.0}'
)


def test_pascal_case_example_from_the_contract_decodes() -> None:
    event = decode_upstream(EventKind.CREATED, EXAMPLE, KAFKA_TIME)
    assert isinstance(event, OrderCreated)
    assert (event.order_id, event.restaurant_id, event.total_price) == ("8f1c", "42", 19.0)
    assert event.items[0].name == "Pad Thai" and event.items[0].quantity == 2


def test_missing_created_at_defaults_to_kafka_timestamp() -> None:
    event = decode_upstream(EventKind.CREATED, EXAMPLE, KAFKA_TIME)
    assert event.created_at == KAFKA_TIME


def test_camel_case_integer_and_guid_ids_are_normalised_to_strings() -> None:
    guid = uuid.uuid4()
    raw = json.dumps({"orderId": str(guid).upper(), "restaurantId": 42, "reason": "closed", "extra": [1]})
    event = decode_upstream(EventKind.REJECTED, raw.encode(), KAFKA_TIME)
    assert event.order_id == str(guid).upper() and event.restaurant_id == "42"


def test_field_names_match_in_any_case() -> None:
    raw = b'{"ORDERID":"1","restaurantID":"2","acceptedat":"2026-11-25T19:00:00Z"}'
    event = decode_upstream(EventKind.ACCEPTED, raw, KAFKA_TIME)
    assert event.restaurant_id == "2"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message value"),
        (b"{not json", "not JSON"),
        (b'"a string"', "expected a JSON object"),
        (b'{"OrderId":"1"}', "RestaurantId: Field required"),
        (b'{"OrderId":1.5,"RestaurantId":"1"}', "OrderId"),
        (b'{"OrderId":"1","RestaurantId":false}', "not a boolean"),
        (b'{"OrderId":"  ","RestaurantId":"1"}', "must not be empty"),
    ],
)
def test_invalid_events_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_upstream(EventKind.ACCEPTED, raw, KAFKA_TIME)
    assert reason in caught.value.reason


def test_created_needs_items_with_positive_quantities() -> None:
    raw = (
        b'{"OrderId":"1","RestaurantId":"1","CustomerName":"A",'
        b'"Items":[{"Name":"x","Quantity":0,"UnitPrice":1}],"TotalPrice":1}'
    )
    with pytest.raises(InvalidEvent, match=r"Items\.0\.Quantity"):
        decode_upstream(EventKind.CREATED, raw, KAFKA_TIME)


def test_internal_encoding_round_trips() -> None:
    event = decode_upstream(EventKind.CREATED, EXAMPLE, KAFKA_TIME)
    assert decode_internal(encode_internal(event)) == event


def test_published_json_schema_matches_the_models() -> None:
    published = json.loads((DOCS / "order-events.schema.json").read_text())
    assert published == json_schemas(), "run: partner-stream schemas --out docs/order-events.schema.json"
    assert "CustomerName" in published["OrderCreated"]["required"]
