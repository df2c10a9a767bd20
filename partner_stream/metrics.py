"""Prometheus metrics of the stream side (the hub adds its own)."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS_APPLIED = Counter(
    "partner_stream_events_applied_total",
    "Order events applied to the pending-orders table.",
    ["kind", "changed"],
)
DEAD_LETTERS = Counter(
    "partner_stream_dead_letters_total",
    "Events sent to the dead-letter topic because they can never be applied.",
    ["source_topic"],
)
