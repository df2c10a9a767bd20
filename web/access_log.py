"""An access log that never prints a token.

Faust runs aiohttp without an access log; this middleware adds one, with
``access_token`` (the browser SignalR client puts the JWT there) and the
SignalR connection token redacted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_plus

from aiohttp import web
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


@web.middleware
async def access_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed_ms = (time.monotonic() - started) * 1000
        path = request.path
        quiet = path in QUIET_PATHS or (path in TABLET_PATHS and status < 400)
        level = logging.DEBUG if quiet else logging.INFO
        if log.isEnabledFor(level):  # redacting costs more than a dropped line
            log.log(level, "%s %s %s %.1fms", request.method, redact(request.rel_url), status, elapsed_ms)
