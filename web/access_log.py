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
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse
from yarl import URL

log = logging.getLogger("partner_stream.access")

SECRET_QUERY_PARAMS = frozenset({"access_token", "token", "id"})
#: A parameter whose name contains one of these is redacted too: a client that misspells
#: ``access_token`` (``accessToken``, ``acces_token``, ``jwt``) still sends a secret.
SECRET_NAME_PARTS = ("token", "auth", "jwt", "secret", "password", "key", "bearer", "session")
#: Longest URL a log line carries: an 8 KB query must not become 8 KB of log per request.
MAX_LOGGED_URL = 300
#: Probes hit every few seconds; logged at DEBUG so they do not drown the log.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Tablet handshakes: thousands per minute after a deploy (a synchronous INFO line each was 8 % of a
#: reconnect storm's CPU). Successes go to DEBUG (the connection gauge and the operator API show who is
#: connected); refusals stay at INFO.
TABLET_PATHS = frozenset({"/partnerhub", "/partnerhub/negotiate", "/ws/partner"})
REDACTED = "[redacted]"


def redact(url: URL) -> str:
    """Raw path and query of ``url`` with secret-looking values replaced, cut to :data:`MAX_LOGGED_URL`."""
    raw_query = url.raw_query_string
    if not raw_query:
        return _shorten(url.raw_path)
    parts = []
    for part in raw_query.split("&"):
        name, sep, value = part.partition("=")
        parts.append(f"{name}{sep}{REDACTED}" if sep and _is_secret(name, value) else part)
    return _shorten(f"{url.raw_path}?{'&'.join(parts)}")


def _is_secret(raw_name: str, raw_value: str) -> bool:
    # aiohttp decodes parameter names (access%5Ftoken is access_token): compare the decoded form.
    name = unquote_plus(raw_name).lower()
    if name in SECRET_QUERY_PARAMS or any(part in name for part in SECRET_NAME_PARTS):
        return True
    return _looks_like_a_jwt(unquote_plus(raw_value))


def _looks_like_a_jwt(value: str) -> bool:
    """A JWT under any name: base64url JSON header (``eyJ``) and three dot-separated parts."""
    return value.startswith("eyJ") and value.count(".") == 2


def _shorten(text: str) -> str:
    if len(text) <= MAX_LOGGED_URL:
        return text
    return f"{text[:MAX_LOGGED_URL]}...[{len(text) - MAX_LOGGED_URL} more characters]"


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


class ClientErrorsWithoutTraceback(logging.Filter):
    """Turns aiohttp's ERROR + traceback for a malformed request into one INFO line.

    A request aiohttp cannot parse (bad Content-Length, an 8 KB header line, TLS on the plain
    port) is the client's fault and already answered with 400; a traceback per such request
    would let anyone fill the log and page an operator. Real server errors keep their trace.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and record.levelno >= logging.ERROR:
            text = str(exc).strip()
            first_line = text.splitlines()[0] if text else type(exc).__name__
            original = record.getMessage()
            record.msg = "%s; refused with %s: %s"
            record.args = (original, exc.code, first_line[:200])
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_client_errors() -> None:
    """Install :class:`ClientErrorsWithoutTraceback` once on aiohttp's server logger."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientErrorsWithoutTraceback) for f in logger.filters):
        logger.addFilter(ClientErrorsWithoutTraceback())
