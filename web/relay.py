"""Relay a tablet's WebSocket from a worker that does not own its restaurant to the one that does.

Browsers do not follow redirects on a WebSocket handshake, and SignalR's
``skipNegotiation`` and the plain protocol never negotiate, so a socket that lands
on the wrong worker (e.g. behind a single load-balancer address) is piped to the
owner frame by frame. The owner still authenticates, pushes and decides when to
close; its close code and reason are passed through, so a handover still reaches
the tablet as "reconnect".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from . import metrics
from .protocols.disconnects import SHUTDOWN, UNAVAILABLE, Disconnect

#: Close codes that mean "the connection died", which may not be sent in a close frame.
ABNORMAL_CLOSE_CODES = frozenset({1005, 1006, 1015})

log = logging.getLogger(__name__)

#: Marks a relayed handshake, so an owner that disagrees answers 503 instead of relaying again.
RELAYED_HEADER = "X-Partner-Stream-Relayed"
#: Largest frame accepted from the owner (a big restaurant's snapshot), not from tablets.
OWNER_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Headers the owner needs to authenticate and identify the client.
FORWARDED_HEADERS = ("Authorization", "Origin", "User-Agent", "X-Requested-With")


class RelayRefused(Exception):
    """The owner could not take the socket; answered to the tablet like any other refusal (before the upgrade)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Relay:
    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._session: aiohttp.ClientSession | None = None
        #: Tablet sockets currently relayed through this worker: their restaurant and the owner piped to.
        self._clients: dict[web.WebSocketResponse, tuple[str, URL]] = {}

    @property
    def active(self) -> int:
        return len(self._clients)

    async def close_all(self, timeout: float = 5.0, reason: Disconnect = SHUTDOWN) -> None:
        """On shutdown: tell relayed tablets to reconnect (they land on another worker), all at once."""
        closing = self.close_where(lambda restaurant_id, owner: True, reason)
        if closing:
            await asyncio.wait(closing, timeout=timeout)

    def close_where(self, stale: Callable[[str, URL], bool], reason: Disconnect) -> list[asyncio.Future]:
        """Close the relayed tablets for which ``stale(restaurant_id, owner)`` holds (e.g. the owner changed)."""
        return [
            asyncio.ensure_future(client.close(code=reason.code, message=reason.reason.encode()))
            for client, (restaurant_id, owner) in list(self._clients.items())
            if stale(restaurant_id, owner)
        ]

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def serve(self, request: web.Request, owner: URL, restaurant_id: str) -> web.StreamResponse:
        """Pipe the tablet's socket to the owner's; raises :class:`RelayRefused` before the upgrade."""
        target = owner.with_path(request.path).with_query(request.query)
        headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
        headers[RELAYED_HEADER] = "1"
        try:
            upstream = await self.session.ws_connect(
                # Snapshots from the owner can be far larger than anything a tablet may send us.
                target,
                headers=headers,
                autoping=True,
                max_msg_size=OWNER_MAX_MESSAGE_BYTES,
                heartbeat=None,
            )
        except aiohttp.WSServerHandshakeError as exc:
            # The owner refused (401/403/404/503…): give the client the same answer.
            status = exc.status if exc.status >= 400 else 502
            raise RelayRefused(status, f"owner refused the connection: {exc.message}") from None
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("relay to %s failed: %s", owner, exc)
            raise RelayRefused(503, "the restaurant's worker is unreachable; retry shortly") from None
        client = web.WebSocketResponse(max_msg_size=self.max_message_bytes, autoping=True)
        await client.prepare(request)
        metrics.RELAYS.inc()
        self._clients[client] = (restaurant_id, owner)
        try:
            await self._pipe(client, upstream)
        finally:
            self._clients.pop(client, None)
            metrics.RELAYS.dec()
        return client

    async def _pipe(self, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
        to_owner = asyncio.create_task(self._client_to_owner(client, upstream))
        try:
            reason = ""
            while True:
                # Not `async for`: it swallows the close message, and with it the owner's reason.
                message = await upstream.receive()
                if message.type == WSMsgType.TEXT:
                    await client.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await client.send_bytes(message.data)
                else:
                    if message.type == WSMsgType.CLOSE and isinstance(message.extra, str):
                        reason = message.extra
                    break
            code = upstream.close_code
            if code is None or code in ABNORMAL_CLOSE_CODES:
                # The owner vanished (crash, network): tell the tablet to come back, the new owner will serve it.
                code, reason = UNAVAILABLE.code, UNAVAILABLE.reason
            if not client.closed:
                await client.close(code=code, message=reason.encode())
        finally:
            to_owner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await to_owner
            if not upstream.closed:
                await upstream.close()

    @staticmethod
    async def _client_to_owner(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
        async for message in client:
            if message.type == WSMsgType.TEXT:
                await upstream.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await upstream.send_bytes(message.data)
        if not upstream.closed:
            await upstream.close(code=client.close_code or 1000)
