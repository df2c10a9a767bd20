"""Hostile and careless upstream events: what a sloppy producer or an attacker could put on the order topics.

Each generator starts from a valid OrderCreated and breaks one thing (or nothing, where the break is one the
contract tolerates, such as a date-time without an offset). Deterministic for a given ``random.Random``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

Mutation = Callable[[random.Random, dict[str, Any]], bytes]


def valid_created(restaurant: str, order: str) -> dict[str, Any]:
    return {
        "OrderId": order,
        "RestaurantId": restaurant,
        "CustomerName": "Ana",
        "Items": [{"Name": "Pad Thai", "Quantity": 2, "UnitPrice": 9.5, "Notes": "no peanuts"}],
        "TotalPrice": 19.0,
    }


ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    -(2**70),
    1.5,
    -0.0,
    1e308,
    "",
    " ",
    "5",
    "true",
    "\x00",
    "\x1f",
    "é" * 3,
    "🍜" * 50,
    "a" * 600,
    "x" * 10_000,
    [],
    [1, 2],
    {},
    {"a": {"b": {"c": []}}},
    "2025-01-01T10:00:00",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00",
    "not a date",
]

FIELDS = ["OrderId", "RestaurantId", "CustomerName", "Items", "TotalPrice", "CreatedAt"]
ITEM_FIELDS = ["Name", "Quantity", "UnitPrice", "Notes"]


def _dump(body: Any) -> bytes:
    """JSON as any producer may write it: big integers and non-ASCII included (orjson refuses the former)."""
    return json.dumps(body, ensure_ascii=False).encode()


def odd_field(rng: random.Random, body: dict[str, Any]) -> bytes:
    body[rng.choice(FIELDS)] = rng.choice(ODD_VALUES)
    return _dump(body)


def odd_item_field(rng: random.Random, body: dict[str, Any]) -> bytes:
    body["Items"][0][rng.choice(ITEM_FIELDS)] = rng.choice(ODD_VALUES)
    return _dump(body)


def missing_field(rng: random.Random, body: dict[str, Any]) -> bytes:
    del body[rng.choice(FIELDS[:5])]
    return _dump(body)


def many_items(rng: random.Random, body: dict[str, Any]) -> bytes:
    bad = rng.random() < 0.5
    body["Items"] = [{"Name": "x", "Quantity": 0 if bad else 1, "UnitPrice": 1} for _ in range(rng.choice([501, 2000]))]
    return _dump(body)


def huge_value(rng: random.Random, body: dict[str, Any]) -> bytes:
    body[rng.choice(["CustomerName", "Padding"])] = "y" * rng.choice([300_000, 1_100_000])
    return _dump(body)


def not_json(rng: random.Random, body: dict[str, Any]) -> bytes:
    raw = _dump(body)
    cut = rng.randrange(1, len(raw))
    return rng.choice([raw[:cut], b"\xff\xfe" + raw, b"[" * 5000 + b"]" * 5000, b"NaN", b"null", b""])


def wrong_shape(rng: random.Random, body: dict[str, Any]) -> bytes:
    return _dump(rng.choice([[body], "order", 42, None, {"Event": body}]))


def tolerated(rng: random.Random, body: dict[str, Any]) -> bytes:
    """Shapes the contract accepts: naive or odd-but-valid date-times, camelCase, integer IDs, extra fields."""
    choice = rng.randrange(4)
    if choice == 0:
        body["CreatedAt"] = "2025-01-01T10:00:00"
    elif choice == 1:
        body["CreatedAt"] = "0001-01-01T00:00:00"
    elif choice == 2:
        body = {k[:1].lower() + k[1:]: v for k, v in body.items()}
    else:
        body["Extra"] = {"nested": list(range(50))}
    return _dump(body)


MUTATIONS: list[Mutation] = [
    odd_field,
    odd_field,
    odd_item_field,
    missing_field,
    many_items,
    huge_value,
    not_json,
    wrong_shape,
    tolerated,
]


def hostile_created(rng: random.Random, restaurant: str, order: str, *, huge: bool = True) -> bytes:
    """One hostile OrderCreated; ``huge=False`` keeps every value under 100 KB (for runs through a broker)."""
    mutations = MUTATIONS if huge else [m for m in MUTATIONS if m is not huge_value]
    body = valid_created(restaurant, order)
    mutation = rng.choice(mutations)
    if mutation is many_items and not huge:
        body["Items"] = [{"Name": "x", "Quantity": 1, "UnitPrice": 1}] * 501
        return _dump(body)
    return mutation(rng, body)
