"""Prometheus metrics of the tablet hub."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("partner_stream_connections", "Open tablet connections on this worker.", ["protocol"])
PUSHES = Counter("partner_stream_pushes_total", "Order changes queued to tablets.", ["name"])
REFUSED = Counter("partner_stream_connections_refused_total", "Tablet connections refused.", ["status"])
PROTOCOL_ERRORS = Counter(
    "partner_stream_protocol_errors_total", "Tablet connections closed for breaking the protocol.", ["protocol"]
)
REFUSED_REQUESTS = Counter(
    "partner_stream_tablet_requests_refused_total",
    "Tablet requests refused without closing the socket: over the rate budget, or a snapshot already queued.",
    ["reason"],
)
RELAYS = Gauge("partner_stream_relayed_connections", "Tablet sockets relayed from this worker to their owner.")

# Children bound once per label value (``labels()`` takes a lock and validates its arguments), for the
# calls made on every connect, disconnect and pushed change.
connections = cache(CONNECTIONS.labels)
pushes = cache(PUSHES.labels)
refused_requests = cache(REFUSED_REQUESTS.labels)
