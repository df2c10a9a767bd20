"""Prometheus metrics of the tablet hub."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("partner_stream_connections", "Open tablet connections on this worker.", ["protocol"])
PUSHES = Counter("partner_stream_pushes_total", "Order changes queued to tablets.", ["name"])
REFUSED = Counter("partner_stream_connections_refused_total", "Tablet connections refused.", ["status"])
PROTOCOL_ERRORS = Counter(
    "partner_stream_protocol_errors_total", "Tablet connections closed for breaking the protocol.", ["protocol"]
)
RELAYS = Gauge("partner_stream_relayed_connections", "Tablet sockets relayed from this worker to their owner.")
