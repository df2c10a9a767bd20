"""Which browser origins may call this worker, and the CORS headers that say so.

One policy for every browser-facing route (negotiate, the sockets, the dev CentralHub
stand-in), so they cannot drift:

* A request without ``Origin`` is not from a browser page: allowed (tablets in Node,
  curl, other workers).
* The worker's own origin (the board it serves) is always allowed.
* Origins listed in ``PARTNER_STREAM_CORS_ORIGINS`` are allowed with credentials.
* ``*`` allows any origin, but never with credentials: tokens travel in a header or
  the query, so no cookie-style ambient authority may be lent to an arbitrary page.

Sockets are checked too: browsers send ``Origin`` on a WebSocket upgrade and apply no
same-origin rule to it, so without this any page could open a tablet socket with a
token it got hold of.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

ALLOWED_REQUEST_HEADERS = "authorization, content-type, x-requested-with, x-signalr-user-agent"
PREFLIGHT_MAX_AGE_SECONDS = 600
#: An Origin header longer than any real origin is refused before it is compared or echoed.
MAX_ORIGIN_LENGTH = 512


class CorsPolicy:
    """Decides per request whether its ``Origin`` may call this worker, and builds the response headers."""

    __slots__ = ("_any", "_listed")

    def __init__(self, origins: Iterable[str]) -> None:
        cleaned = [origin.strip().rstrip("/") for origin in origins if origin.strip()]
        self._any = "*" in cleaned
        self._listed = frozenset(origin.lower() for origin in cleaned if origin != "*")

    def allows(self, request: web.BaseRequest) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or self._is_trusted(request, origin) or (self._any and len(origin) <= MAX_ORIGIN_LENGTH)

    def headers(self, request: web.BaseRequest) -> dict[str, str]:
        """Headers that let the calling page read the response; empty for a refused or non-browser caller."""
        origin = request.headers.get("Origin")
        if origin is None or not self.allows(request):
            return {}
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if self._is_trusted(request, origin):
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    def preflight(self, request: web.BaseRequest, methods: str) -> web.Response:
        """The answer to an ``OPTIONS`` preflight: 204 with the allowances, or 403 for a refused origin."""
        if not self.allows(request):
            return web.json_response({"error": "origin not allowed"}, status=403)
        headers = {
            **self.headers(request),
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": ALLOWED_REQUEST_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
        }
        return web.Response(status=204, headers=headers)

    def _is_trusted(self, request: web.BaseRequest, origin: str) -> bool:
        if len(origin) > MAX_ORIGIN_LENGTH:
            return False
        normalised = origin.rstrip("/").lower()
        return normalised in self._listed or normalised == _own_origin(request)


def _own_origin(request: web.BaseRequest) -> str:
    """``scheme://host[:port]`` the browser used to reach this worker (what a same-origin page sends)."""
    return f"{request.scheme}://{request.host}".lower()
