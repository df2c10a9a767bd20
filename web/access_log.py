"""An access log that never prints a token.

Faust runs aiohttp without an access log; :class:`RedactingAccessLogger` is the one
:mod:`web.site` gives aiohttp's runner, with ``access_token`` (the browser SignalR client
puts the JWT there) and the SignalR connection token redacted. An access logger rather
than a middleware: aiohttp calls it once the response is done, so an open tablet socket
does not keep one more coroutine frame alive for its whole life.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse
from yarl import URL

log = logging.getLogger("partner_stream.access")

SECRET_QUERY_PARAMS = frozenset({"access_token", "token", "id"})
#: Probes hit every few seconds; logged at DEBUG so they do not drown the log.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Tablet handshakes: thousands per minute after a deploy (a synchronous INFO line each was 8 % of a
#: reconnect storm's CPU). Successes go to DEBUG (the connection gauge and the operator API show who is
#: connected); refusals stay at INFO.
TABLET_PATHS = frozenset({"/partnerhub", "/partnerhub/negotiate", "/ws/partner"})
REDACTED = "[redacted]"


def redact(url: URL) -> str:
    """Raw path and query of ``url`` with the values of secret query parameters replaced."""
    raw_query = url.raw_query_string
    if not raw_query:
        return url.raw_path
    parts = []
    for part in raw_query.split("&"):
        name, sep, _ = part.partition("=")
        # aiohttp decodes parameter names (access%5Ftoken is access_token): compare the decoded form.
        secret = unquote_plus(name).lower() in SECRET_QUERY_PARAMS
        parts.append(f"{name}{sep}{REDACTED}" if sep and secret else part)
    return f"{url.raw_path}?{'&'.join(parts)}"


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per finished request (for a socket: when it closes): method, redacted URL, status, time."""

    __slots__ = ()

    @property
    def enabled(self) -> bool:
        # Read per connection by aiohttp: with INFO off there is no per-request work at all.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path = request.path
        status = response.status
        quiet = path in QUIET_PATHS or (path in TABLET_PATHS and status < 400)
        level = logging.DEBUG if quiet else logging.INFO
        if self.logger.isEnabledFor(level):  # redacting costs more than a dropped line
            self.logger.log(level, "%s %s %s %.1fms", request.method, redact(request.rel_url), status, time * 1000)
