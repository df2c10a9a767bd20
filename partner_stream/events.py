"""The upstream contract: order events as the OrderService (.NET) writes them.

The producer is not Python: values are plain JSON with no Faust metadata, field
names are usually PascalCase (System.Text.Json defaults) and sometimes camelCase,
and IDs may be strings, GUIDs or integers. Names match case-insensitively, IDs
are normalised to strings and unknown fields are ignored, so the producer can
add fields without breaking us.

Every event is hostile until bounded: its size, each string, the item count and
each number have a limit far above any real order (:data:`LIMITS`), and a value
takes only the JSON shape .NET writes for its field (no ``"5"`` or ``true`` for a
quantity, no number for a date). An event past a limit is dead-lettered with the
reason. Date-times without an offset (``DateTimeKind.Unspecified``) are taken as UTC.
"""

from __future__ import annotations

import math
import time
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)


class Limits:
    """What one upstream event may hold. A real order is a few KB with a handful of items."""

    #: Bytes of a record's value (Kafka's default request limit is 1,000,000).
    event_bytes = 256 * 1024
    #: Characters of an order or restaurant ID (a GUID is 36).
    id_chars = 128
    #: Characters of ``CustomerName`` and of an item's ``Name``.
    name_chars = 500
    #: Characters of an item's ``Notes`` and of a rejection's ``Reason``.
    text_chars = 2000
    #: Items of one order.
    items = 500
    #: Units of one item.
    quantity = 100_000
    #: ``UnitPrice`` and ``TotalPrice``.
    price = 1_000_000_000.0
    #: Characters of an ISO 8601 date-time.
    datetime_chars = 64
    #: Problems listed in a dead letter's reason, and the reason's length in characters.
    reason_problems = 5
    reason_chars = 1000


LIMITS = Limits()
#: Thresholds PARTNER_STREAM_UNSEEN_AFTER may list; OrderUnseen steps are 0 (on arrival) to this.
MAX_UNSEEN_STEP = 7


class EventKind(StrEnum):
    CREATED = "OrderCreated"
    ACCEPTED = "OrderAccepted"
    REJECTED = "OrderRejected"
    ACKNOWLEDGED = "OrderAcknowledged"
    ANNOUNCED = "OrderAnnounced"


class InvalidEvent(ValueError):
    """An event that can never be applied; it goes to the dead-letter topic with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _normalise_id(value: Any) -> str:
    """Accept str, GUID and integer IDs; everything else is a contract violation."""
    if isinstance(value, bool):
        raise ValueError("must be a string, GUID or integer, not a boolean")
    if isinstance(value, int | uuid.UUID):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(f"must be a string, GUID or integer, not {type(value).__name__}")
    if not text:
        raise ValueError("must not be empty")
    if len(text) > LIMITS.id_chars:
        raise ValueError(f"must be at most {LIMITS.id_chars} characters, not {len(text)}")
    if any(unicodedata.category(char) == "Cc" for char in text):
        # Table keys join IDs with a control character (tables/keys.py): none may occur in an ID.
        raise ValueError("must not contain control characters")
    return text


def _addressable(restaurant_id: str) -> str:
    """A restaurant ID is a path segment of the operator API: a '/' would make it unreachable."""
    if "/" in restaurant_id:
        raise ValueError("must not contain '/'")
    return restaurant_id


def order_id_problem(text: str) -> str | None:
    """Why ``text`` can never be an order ID (the contract's rule, for IDs a tablet sends), or None."""
    try:
        _normalise_id(text)
    except ValueError as exc:
        return f"orderId {exc}"
    return None


def restaurant_id_problem(text: str) -> str | None:
    """Why ``text`` can never be a restaurant ID (the contract's rule, for IDs arriving over HTTP), or None."""
    try:
        _addressable(_normalise_id(text))
    except ValueError as exc:
        return f"restaurantId {exc}"
    return None


_ID_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": LIMITS.id_chars},
        {"type": "integer"},
    ]
}
Id = Annotated[str, BeforeValidator(_normalise_id), WithJsonSchema(_ID_SCHEMA)]
RestaurantId = Annotated[str, BeforeValidator(_normalise_id), AfterValidator(_addressable), WithJsonSchema(_ID_SCHEMA)]


def _iso_text(value: Any) -> Any:
    """.NET writes a date-time as an ISO 8601 string; a number or anything else is a producer bug."""
    if isinstance(value, datetime):
        return value  # built in code (tests, the hub's acknowledgements)
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 date-time string, not {type(value).__name__}")
    if len(value) > LIMITS.datetime_chars:
        raise ValueError(f"must be at most {LIMITS.datetime_chars} characters")
    return value


def _as_utc(value: datetime) -> datetime:
    """Naive (no offset, .NET's ``DateTimeKind.Unspecified``) means UTC; aware values are kept as sent.

    Checked here that the instant is representable in UTC, so ordering two of them can never overflow.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    return value


EventTime = Annotated[
    datetime,
    BeforeValidator(_iso_text),
    AfterValidator(_as_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "maxLength": LIMITS.datetime_chars}),
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
    name: str = Field(min_length=1, max_length=LIMITS.name_chars)
    quantity: StrictInt = Field(gt=0, le=LIMITS.quantity)
    unit_price: StrictFloat = Field(ge=0, le=LIMITS.price)
    notes: str | None = Field(None, max_length=LIMITS.text_chars)

    _check_price = field_validator("unit_price")(_finite)


class OrderEvent(ContractModel):
    kind: ClassVar[EventKind]
    order_id: Id
    restaurant_id: RestaurantId


class OrderCreated(OrderEvent):
    kind: ClassVar[EventKind] = EventKind.CREATED
    customer_name: str = Field(max_length=LIMITS.name_chars)
    items: tuple[OrderItem, ...] = Field(min_length=1, max_length=LIMITS.items)
    total_price: StrictFloat = Field(ge=0, le=LIMITS.price)
    #: Optional upstream; the decoder fills in the Kafka record timestamp when absent.
    created_at: EventTime | None = None

    _check_total = field_validator("total_price")(_finite)


class OrderAccepted(OrderEvent):
    kind: ClassVar[EventKind] = EventKind.ACCEPTED
    accepted_at: EventTime | None = None
    estimated_ready_at: EventTime | None = None


class OrderRejected(OrderEvent):
    kind: ClassVar[EventKind] = EventKind.REJECTED
    reason: str | None = Field(None, max_length=LIMITS.text_chars)


class OrderAcknowledged(OrderEvent):
    """Internal: a tablet reported that it displayed the order (sent by the hub, never upstream)."""

    kind: ClassVar[EventKind] = EventKind.ACKNOWLEDGED
    acknowledged_at: EventTime


class OrderAnnounced(OrderEvent):
    """Internal: the restaurant's owner published OrderSeen or OrderUnseen (at ``step``) for the order.

    Applied like every other event, so the announcement is recorded in the order's record through the
    changelog: a later owner does not publish it again (partner_stream/announcer.py).
    """

    kind: ClassVar[EventKind] = EventKind.ANNOUNCED
    announcement: Literal["OrderSeen", "OrderUnseen"]
    #: The OrderUnseen step (0 on arrival, k for the k-th threshold); None for OrderSeen.
    step: StrictInt | None = Field(None, ge=0, le=MAX_UNSEEN_STEP)


AnyOrderEvent = OrderCreated | OrderAccepted | OrderRejected | OrderAcknowledged | OrderAnnounced

EVENT_MODELS: dict[EventKind, type[OrderEvent]] = {
    EventKind.CREATED: OrderCreated,
    EventKind.ACCEPTED: OrderAccepted,
    EventKind.REJECTED: OrderRejected,
    EventKind.ACKNOWLEDGED: OrderAcknowledged,
    EventKind.ANNOUNCED: OrderAnnounced,
}

_PASCAL_BY_ALIAS: dict[str, str] = {
    _flat_alias(name): "".join(p[:1].upper() + p[1:] for p in name.split("_"))
    for model in (*EVENT_MODELS.values(), OrderItem)
    for name in model.model_fields
}

UPSTREAM_KINDS: tuple[EventKind, ...] = (EventKind.CREATED, EventKind.ACCEPTED, EventKind.REJECTED)


def describe_validation_error(kind: EventKind, error: ValidationError) -> str:
    """One readable line naming the first problems, and the fields the way the producer spells them.

    Bounded (:class:`Limits`): an event with 10,000 bad items gets a short reason, not a 0.5 MB one.
    """
    errors = error.errors(include_url=False)
    problems = []
    for item in errors[: LIMITS.reason_problems]:
        location = ".".join(_producer_spelling(part) for part in item["loc"]) or "(event)"
        problems.append(f"{location}: {item['msg']}")
    if len(errors) > LIMITS.reason_problems:
        problems.append(f"and {len(errors) - LIMITS.reason_problems} more")
    return cap_reason(f"invalid {kind.value}: " + "; ".join(problems))


def cap_reason(reason: str) -> str:
    if len(reason) <= LIMITS.reason_chars:
        return reason
    return reason[: LIMITS.reason_chars - 1] + "…"


def _producer_spelling(part: str | int) -> str:
    """``customername`` (our folded alias) -> ``CustomerName``, as the producer writes it."""
    if isinstance(part, int):
        return str(part)
    return _PASCAL_BY_ALIAS.get(part, part)


#: Kafka timestamps before this are producer bugs (a zero, seconds taken for milliseconds …).
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
#: How far ahead of this worker's clock a producer's clock may run.
CLOCK_SKEW = timedelta(days=1)
_EARLIEST_PLAUSIBLE_S = EARLIEST_PLAUSIBLE.timestamp()
_CLOCK_SKEW_S = CLOCK_SKEW.total_seconds()


def timestamp_to_datetime(timestamp_ms: float | None, received_at: float | None = None) -> datetime:
    """A record's Kafka timestamp, or the time of receipt when it is absent or implausible.

    Compared as seconds first: it runs once per upstream record, and builds one datetime, not two.
    """
    received = time.time() if received_at is None else received_at
    if timestamp_ms is None or not math.isfinite(timestamp_ms):
        return datetime.fromtimestamp(received, tz=UTC)
    seconds = timestamp_ms / 1000.0
    if seconds < _EARLIEST_PLAUSIBLE_S or seconds > received + _CLOCK_SKEW_S:
        return datetime.fromtimestamp(received, tz=UTC)
    return datetime.fromtimestamp(seconds, tz=UTC)


def decode_upstream(kind: EventKind, raw: bytes | None, kafka_timestamp: datetime) -> AnyOrderEvent:
    """Decode and validate one upstream record, or raise :class:`InvalidEvent` saying why."""
    if raw is None or not raw.strip():
        raise InvalidEvent(f"invalid {kind.value}: empty message value")
    if len(raw) > LIMITS.event_bytes:
        raise InvalidEvent(f"invalid {kind.value}: the value is {len(raw)} bytes; the limit is {LIMITS.event_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(cap_reason(f"invalid {kind.value}: not JSON ({exc})")) from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"invalid {kind.value}: expected a JSON object, got {type(data).__name__}")
    try:
        event = EVENT_MODELS[kind].model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(describe_validation_error(kind, exc)) from None
    if isinstance(event, OrderCreated) and (event.created_at is None or event.created_at < EARLIEST_PLAUSIBLE):
        # Absent, or .NET's default(DateTime) (0001-01-01): the record's timestamp is the better guess.
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
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]["msg"]
        raise InvalidEvent(cap_reason(f"invalid internal event: {exc.error_count()} problem(s), {first}")) from None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidEvent(cap_reason(f"invalid internal event: {exc}")) from None


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
    "LIMITS",
    "UPSTREAM_KINDS",
    "AnyOrderEvent",
    "EventKind",
    "InvalidEvent",
    "OrderAccepted",
    "OrderAcknowledged",
    "OrderAnnounced",
    "OrderCreated",
    "OrderEvent",
    "OrderItem",
    "OrderRejected",
    "cap_reason",
    "decode_internal",
    "decode_upstream",
    "encode_internal",
    "json_schemas",
    "restaurant_id_problem",
    "timestamp_to_datetime",
]
