"""How many TCP connections the web server may hold, so tablets never meet "too many open files".

Every tablet socket, idle keep-alive connection and half-sent request is a file
descriptor. Past the process's open-file limit ``accept()`` fails: no tablet, no probe,
no Kafka reconnect gets through, and nothing says why. So at start the worker raises its
soft limit to the hard one (as Go and Erlang runtimes do), keeps a reserve for Kafka,
RocksDB and logs, logs what it can hold, and from then on closes a new connection at
once when the server holds the cap. Idle connections are timed out by the server
(``PARTNER_STREAM_HTTP_IDLE_TIMEOUT``), so a flood of them drains by itself.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

#: Descriptors kept for everything that is not a client connection: Kafka (a few per broker and
#: consumer thread), RocksDB files per partition, logs, the event loop.
RESERVED_DESCRIPTORS = 256
#: Below this the worker runs, but says loudly that it cannot hold a dinner rush of tablets.
COMFORTABLE_CONNECTIONS = 1000
#: One warning per this many seconds while connections are being refused.
WARN_EVERY_SECONDS = 10.0

OPEN = Gauge("partner_stream_http_connections", "TCP connections open on the web server (sockets included).")
REFUSED = Counter(
    "partner_stream_http_connections_refused_total", "TCP connections closed at once: the server held its cap."
)
LIMIT = Gauge("partner_stream_http_connections_limit", "Most TCP connections the web server accepts.")


@dataclass(frozen=True, slots=True)
class Capacity:
    soft_limit: int
    hard_limit: int
    max_connections: int


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one if allowed (children inherit it); (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft, hard


def plan_capacity(configured: int | None, *, raise_soft_limit: bool = True) -> Capacity:
    """Raise the open-file soft limit to the hard one if allowed, then size the connection cap under it."""
    soft, hard = raise_open_file_limit() if raise_soft_limit else resource.getrlimit(resource.RLIMIT_NOFILE)
    usable = soft if soft != resource.RLIM_INFINITY else 1 << 20
    derived = max(16, usable - RESERVED_DESCRIPTORS)
    cap = min(configured, derived) if configured is not None else derived
    if configured is not None and configured > derived:
        log.warning(
            "PARTNER_STREAM_HTTP_MAX_CONNECTIONS=%d is above what the open-file limit (%d) allows; using %d",
            configured,
            soft,
            derived,
        )
    return Capacity(soft_limit=usable, hard_limit=hard, max_connections=cap)


def report(capacity: Capacity) -> None:
    LIMIT.set(capacity.max_connections)
    level = logging.WARNING if capacity.max_connections < COMFORTABLE_CONNECTIONS else logging.INFO
    log.log(
        level,
        "open-file limit %d: accepting up to %d HTTP/WebSocket connections%s",
        capacity.soft_limit,
        capacity.max_connections,
        " (raise `ulimit -n` to serve more tablets)" if level == logging.WARNING else "",
    )


class ConnectionCap:
    """Hands the listener a protocol per connection: aiohttp's while under the cap, else one that hangs up."""

    def __init__(self, max_connections: int, open_connections: Callable[[], int]) -> None:
        self.max_connections = max_connections
        self._open_connections = open_connections
        self._last_warning = float("-inf")
        self._refused_since_warning = 0

    def protocol_factory(self, make_protocol: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.BaseProtocol]:
        """``make_protocol`` (aiohttp's server) while under the cap; past it, a protocol that hangs up."""

        def protocol_within_cap() -> asyncio.BaseProtocol:
            if self._open_connections() >= self.max_connections:
                self._count_refusal()
                return _HangUp()
            return make_protocol()

        return protocol_within_cap

    def _count_refusal(self) -> None:
        REFUSED.inc()
        self._refused_since_warning += 1
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_SECONDS:
            log.warning(
                "connection limit reached (%d open): refused %d new connection(s); idle ones time out, "
                "or raise the open-file limit / PARTNER_STREAM_HTTP_MAX_CONNECTIONS",
                self.max_connections,
                self._refused_since_warning,
            )
            self._last_warning = now
            self._refused_since_warning = 0


class _HangUp(asyncio.Protocol):
    """Closes the connection as soon as it is made: the cheapest answer, and the descriptor is free at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]
