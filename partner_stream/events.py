"""The upstream contract: order events as the OrderService (.NET) writes them.

The producer is not Python: values are plain JSON with no Faust metadata, field
names are usually PascalCase (System.Text.Json defaults) and sometimes camelCase,
and IDs may be strings, GUIDs or integers. Names match case-insensitively, IDs
are normalised to strings and unknown fields are ignored, so the producer can
add fields without breaking us.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)


class EventKind(StrEnum):
    CREATED = "OrderCreated"
    ACCEPTED = "OrderAccepted"
    REJECTED = "OrderRejected"
    ACKNOWLEDGED = "OrderAcknowledged"


class InvalidEvent(ValueError):
    """An event that can never be applied; it goes to the dead-letter topic with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _normalise_id(value: Any) -> str:
    """Accept str, GUID and integer IDs; everything else is a contract violation."""
    if isinstance(value, bool):
        raise ValueError("must be a string, GUID or integer, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("must not be empty")
        return text
    raise ValueError(f"must be a string, GUID or integer, not {type(value).__name__}")


Id = Annotated[
    str,
    BeforeValidator(_normalise_id),
    WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}),
]


def _flat_alias(name: str) -> str:
    """``order_id`` -> ``orderid``: the lower-cased form both PascalCase and camelCase fold to."""
    return name.replace("_", "").lower()


class ContractModel(BaseModel):
    """Base for upstream payloads: case-insensitive names, unknown fields ignored, immutable."""

    model_config = ConfigDict(alias_generator=_flat_alias, populate_by_name=True, extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _fold_key_case(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k.lower() if isinstance(k, str) else k: v for k, v in data.items()}
        return data


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class OrderItem(ContractModel):
    name: str = Field(min_length=1)
    quantity: int = Field(gt=0)
    unit_price: float = Field(ge=0)
    notes: str | None = None

    _check_price = field_validator("unit_price")(_finite)


class OrderEvent(ContractModel):
    kind: ClassVar[EventKind]
    order_id: Id
    restaurant_id: Id


class OrderCreated(OrderEvent):
    kind: ClassVar[EventKind] = EventKind.CREATED
    customer_name: str
    items: tuple[OrderItem, ...] = Field(min_length=1)
    total_price: float = Field(ge=0)
    #: Optional upstream; the decoder fills in the Kafka record timestamp when absent.
    created_at: datetime | None = None

    _check_total = field_validator("total_price")(_finite)


class OrderAccepted(OrderEvent):
    kind: ClassVar[EventKind] = EventKind.ACCEPTED
    accepted_at: datetime | None = None
    estimated_ready_at: datetime | None = None


class OrderRejected(OrderEvent):
    kind: ClassVar[EventKind] = EventKind.REJECTED
    reason: str | None = None


class OrderAcknowledged(OrderEvent):
    """Internal: a tablet reported that it displayed the order (sent by the hub, never upstream)."""

    kind: ClassVar[EventKind] = EventKind.ACKNOWLEDGED
    acknowledged_at: datetime


AnyOrderEvent = OrderCreated | OrderAccepted | OrderRejected | OrderAcknowledged

EVENT_MODELS: dict[EventKind, type[OrderEvent]] = {
    EventKind.CREATED: OrderCreated,
    EventKind.ACCEPTED: OrderAccepted,
    EventKind.REJECTED: OrderRejected,
    EventKind.ACKNOWLEDGED: OrderAcknowledged,
}

_PASCAL_BY_ALIAS: dict[str, str] = {
    _flat_alias(name): "".join(p[:1].upper() + p[1:] for p in name.split("_"))
    for model in (*EVENT_MODELS.values(), OrderItem)
    for name in model.model_fields
}

UPSTREAM_KINDS: tuple[EventKind, ...] = (EventKind.CREATED, EventKind.ACCEPTED, EventKind.REJECTED)


def describe_validation_error(kind: EventKind, error: ValidationError) -> str:
    """One readable line per problem, naming fields the way the producer spells them."""
    problems = []
    for item in error.errors(include_url=False):
        location = ".".join(_producer_spelling(part) for part in item["loc"]) or "(event)"
        problems.append(f"{location}: {item['msg']}")
    return f"invalid {kind.value}: " + "; ".join(problems)


def _producer_spelling(part: str | int) -> str:
    """``customername`` (our folded alias) -> ``CustomerName``, as the producer writes it."""
    if isinstance(part, int):
        return str(part)
    return _PASCAL_BY_ALIAS.get(part, part)


def timestamp_to_datetime(timestamp_ms: int | float | None) -> datetime:
    if timestamp_ms is None or timestamp_ms <= 0:
        return datetime.now(UTC)
    return datetime.fromtimestamp(timestamp_ms / 1000.0, tz=UTC)


def decode_upstream(kind: EventKind, raw: bytes | None, kafka_timestamp: datetime) -> AnyOrderEvent:
    """Decode and validate one upstream record, or raise :class:`InvalidEvent` saying why."""
    if raw is None or not raw.strip():
        raise InvalidEvent(f"invalid {kind.value}: empty message value")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"invalid {kind.value}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"invalid {kind.value}: expected a JSON object, got {type(data).__name__}")
    try:
        event = EVENT_MODELS[kind].model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(describe_validation_error(kind, exc)) from None
    if isinstance(event, OrderCreated) and event.created_at is None:
        event = event.model_copy(update={"created_at": kafka_timestamp})
    return event  # type: ignore[return-value]


# The internal re-key topic carries our own normalised form: {"kind": ..., "event": {...}}.


def encode_internal(event: OrderEvent) -> bytes:
    return orjson.dumps({"kind": event.kind.value, "event": event.model_dump(mode="json", by_alias=True)})


def decode_internal(raw: bytes) -> AnyOrderEvent:
    try:
        envelope = orjson.loads(raw)
        kind = EventKind(envelope["kind"])
        return EVENT_MODELS[kind].model_validate(envelope["event"])  # type: ignore[return-value]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidEvent(f"invalid internal event: {exc}") from None


def json_schemas() -> dict[str, Any]:
    """JSON Schema of each upstream event, in the PascalCase the OrderService writes."""
    schemas: dict[str, Any] = {}
    for kind in UPSTREAM_KINDS:
        schema = EVENT_MODELS[kind].model_json_schema(by_alias=False, mode="validation")
        schemas[kind.value] = _pascal_schema(schema)
    return schemas


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _pascal_schema(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                out[key] = {_pascal(k): _pascal_schema(v) for k, v in value.items()}
            elif key == "required" and isinstance(value, list):
                out[key] = [_pascal(k) for k in value]
            else:
                out[key] = _pascal_schema(value)
        return out
    if isinstance(node, list):
        return [_pascal_schema(v) for v in node]
    return node


__all__ = [
    "EVENT_MODELS",
    "UPSTREAM_KINDS",
    "AnyOrderEvent",
    "EventKind",
    "InvalidEvent",
    "OrderAccepted",
    "OrderAcknowledged",
    "OrderCreated",
    "OrderEvent",
    "OrderItem",
    "OrderRejected",
    "decode_internal",
    "decode_upstream",
    "encode_internal",
    "json_schemas",
    "timestamp_to_datetime",
]
