"""One kind of refusal for every HTTP answer that is not a success: a status, a reason, the right headers.

Like Faust's ``WebError``: code that refuses a request raises (or builds) a :class:`Refusal`, and
one place turns it into the JSON body ``{"error": reason}`` with the headers its status calls for
(``WWW-Authenticate`` on 401, ``Retry-After`` on 429 and 503). Tablet endpoints, operator views
and the dev stand-in all answer the same way, and a client can always tell what to do from the
status alone.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

#: Seconds a client is told to wait before retrying a 429 or a 503.
RETRY_AFTER_SECONDS = 1


class Refusal(Exception):
    """A request refused with an HTTP status and a reason meant for the client."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def headers(self) -> dict[str, str]:
        """The headers this status calls for."""
        if self.status == HTTPStatus.UNAUTHORIZED:
            return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if self.status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE):
            return {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return {}

    def body(self) -> dict[str, str]:
        return {"error": self.reason}

    def response(self, extra_headers: dict[str, str] | None = None) -> web.Response:
        """The aiohttp response: JSON body, status, and the status's headers plus ``extra_headers`` (CORS)."""
        headers = {**(extra_headers or {}), **self.headers()}
        return web.json_response(self.body(), status=int(self.status), headers=headers or None)
