"""Where each record of a restaurant lives in the ``pending-orders`` table.

A restaurant's state is several small records instead of one value that grows with its history:

| key | record |
|---|---|
| ``<restaurant>`` | :class:`~tables.model.RestaurantHead`: ``seq`` and how many resolutions were remembered |
| ``<restaurant>␟o␟<order>`` | the order: a ``PendingOrder``, replaced by a ``ResolvedOrder`` once resolved |
| ``<restaurant>␟r␟<n>`` | slot *n* of the ring of remembered resolutions: the order ID stored there |
| ``␟applied␟<topic>␟<partition>`` | local, never in the changelog: the newest offset of that topic partition written |

The head keeps the bare restaurant ID, so ``table_route`` and the operator API hash the same key as before,
and values written by the one-value-per-restaurant layout sit exactly where the head now does (see
:func:`tables.transitions.migrate_legacy`). Every key of a restaurant is written while one of its events is
processed, and Faust sends a table write to the partition of that event: all of them share the restaurant's
changelog partition and RocksDB database. ``␟`` is the ASCII unit separator, which the event contract forbids
in IDs (:mod:`partner_stream.events`), so no ID can forge another restaurant's key.
"""

from __future__ import annotations

SEPARATOR = "\x1f"
_ORDER = f"{SEPARATOR}o{SEPARATOR}"
_RING = f"{SEPARATOR}r{SEPARATOR}"
_APPLIED = f"{SEPARATOR}applied{SEPARATOR}"
_APPLIED_BYTES = _APPLIED.encode()


def head_key(restaurant_id: str) -> str:
    return restaurant_id


def order_key(restaurant_id: str, order_id: str) -> str:
    return f"{restaurant_id}{_ORDER}{order_id}"


def ring_key(restaurant_id: str, slot: int) -> str:
    return f"{restaurant_id}{_RING}{slot}"


def applied_key(topic: str, partition: int) -> str:
    """Starts with the separator, which no restaurant ID holds: no key of a restaurant starts with it."""
    return f"{_APPLIED}{topic}{SEPARATOR}{partition}"


def orders_prefix(restaurant_id: str) -> bytes:
    """The bytes every order key of the restaurant starts with (and no other key does)."""
    return f"{restaurant_id}{_ORDER}".encode()


def is_order_key(key: bytes) -> bool:
    return _ORDER.encode() in key and not key.startswith(_APPLIED_BYTES)


def is_head_key(key: bytes) -> bool:
    return SEPARATOR.encode() not in key
