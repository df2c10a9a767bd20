"""What partner-stream publishes is PascalCase JSON, as a .NET consumer reads it, and its schema is in docs/."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson

from partner_stream.announcements import OrderSeen, OrderUnseen, UnseenReason, announcement_schemas

DOCS = Path(__file__).resolve().parent.parent / "docs"
AT = datetime(2026, 12, 5, 12, 0, 30, tzinfo=UTC)


def test_order_unseen_is_pascal_case_json_with_utc_times() -> None:
    record = OrderUnseen(
        announcement_id=OrderUnseen.id_for("o-1", 1),
        order_id="o-1",
        restaurant_id="42",
        created_at=datetime(2026, 12, 5, 12, 0, tzinfo=UTC),
        pending_for_seconds=60.5,
        connected_tablets=0,
        reason=UnseenReason.NO_TABLET_CONNECTED,
        step=1,
        threshold_seconds=60.0,
    )
    assert orjson.loads(record.to_bytes()) == {
        "AnnouncementId": "o-1:unseen:1",
        "OrderId": "o-1",
        "RestaurantId": "42",
        "CreatedAt": "2026-12-05T12:00:00Z",
        "PendingForSeconds": 60.5,
        "ConnectedTablets": 0,
        "Reason": "no-tablet-connected",
        "Step": 1,
        "ThresholdSeconds": 60.0,
    }


def test_order_seen_is_pascal_case_json() -> None:
    record = OrderSeen(
        announcement_id=OrderSeen.id_for("o-1"), order_id="o-1", restaurant_id="42", seen_at=AT, connected_tablets=2
    )
    assert orjson.loads(record.to_bytes()) == {
        "AnnouncementId": "o-1:seen",
        "OrderId": "o-1",
        "RestaurantId": "42",
        "SeenAt": "2026-12-05T12:00:30Z",
        "ConnectedTablets": 2,
    }


def test_published_schema_matches_the_models() -> None:
    published = json.loads((DOCS / "order-announcements.schema.json").read_text())
    hint = "run: partner-stream schemas --announcements --out docs/order-announcements.schema.json"
    assert published == announcement_schemas(), hint
    unseen = published["OrderUnseen"]
    assert set(unseen["required"]) >= {"OrderId", "RestaurantId", "CreatedAt", "PendingForSeconds", "Reason"}
    assert set(unseen["required"]) == set(unseen["properties"]), "every field is always present"
