"""The tablet endpoints on Faust's aiohttp server: SignalR at /partnerhub, plain JSON at /ws/partner.

Every refusal happens before the WebSocket upgrade, with an HTTP status and a JSON
reason: 400 bad query, 401 missing/invalid/expired token, 403 token for another
restaurant, 404 unknown SignalR connection id, 503 (+ Retry-After) while the owner
is rebalancing or recovering, so a client retries rather than talk to a stale owner.
A restaurant another worker owns gets SignalR's redirect on negotiate, and a socket
that lands here is relayed to the owner (see :mod:`web.relay`).
After the upgrade the handler is a thin loop: read a frame, let the codec decode
it, let the hub react; protocol errors close the socket with a reason.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from http import HTTPStatus
from typing import Any

from aiohttp import WSMessage, WSMsgType, web
from multidict import MultiDictProxy
from yarl import URL

from partner_stream.events import restaurant_id_problem
from partner_stream.settings import Settings

from . import metrics
from .aiohttp_patches import release_http_machinery
from .auth import LEEWAY_SECONDS, AuthError, TabletIdentity, TokenVerifier, token_from_request
from .connection import Connection, new_connection_id
from .cors import CorsPolicy
from .errors import Refusal
from .hub import Hub
from .negotiations import NegotiationRefused, PendingNegotiations
from .placement import ConfirmOwner, Locate, Owner, OwnerUnreachable, Placement
from .protocols import NEED_DATA, PlainCodec, RemoteProtocolError, SignalRCodec
from .protocols.disconnects import BAD_REQUEST, NOT_OWNER, UNAVAILABLE
from .protocols.messages import HandshakeAccepted, HandshakeRejected, HandshakeRequested
from .relay import RELAYED_HEADER, Relay, RelayRefused
from .token_expiry import TokenExpiries

log = logging.getLogger(__name__)

SIGNALR_PATH = "/partnerhub"
PLAIN_PATH = "/ws/partner"
#: A SignalR client must send its handshake this soon after the upgrade.
HANDSHAKE_TIMEOUT = 15.0
#: Our connection tokens are 22 characters; anything much longer is not one of them.
MAX_CONNECTION_TOKEN_LENGTH = 64


class TabletEndpoints:
    """aiohttp handlers sharing the hub, the token verifier and pending negotiations."""

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        verifier: TokenVerifier | None = None,
        *,
        locate: Locate,
        confirm_owner: ConfirmOwner,
    ) -> None:
        self.hub = hub
        self.settings = settings
        #: Ownership lookups, injected: they need the running Faust app (see web/placement.py).
        self.locate = locate
        self.confirm_owner = confirm_owner
        #: Shared with the operator views, so a worker keeps one cache of verified tokens.
        self.verifier = verifier or TokenVerifier(settings)
        self.cors = CorsPolicy(settings.cors_origins)
        self.negotiations = PendingNegotiations(
            ttl=settings.hub_negotiation_ttl,
            limit=settings.hub_max_negotiations,
            per_restaurant=settings.hub_max_negotiations_per_restaurant,
        )
        self.relay = Relay(settings.hub_max_message_bytes)
        self.expiries = TokenExpiries()

    def install(self, web_app: web.Application) -> None:
        router = web_app.router
        router.add_route("OPTIONS", f"{SIGNALR_PATH}/negotiate", self.negotiate_preflight)
        router.add_post(f"{SIGNALR_PATH}/negotiate", self.negotiate)
        # Partials rather than wrapper coroutines: a handler's frame lives as long as its socket.
        router.add_get(SIGNALR_PATH, partial(self.socket, protocol="signalr"))
        router.add_get(PLAIN_PATH, partial(self.socket, protocol="plain"))

    # -- checks shared by every endpoint ----------------------------------------------------

    def _authorize(self, request: web.Request, query: MultiDictProxy[str]) -> TabletIdentity:
        restaurant_id = query.get("restaurantId", "").strip()
        if not restaurant_id:
            raise AuthError(HTTPStatus.BAD_REQUEST, "the restaurantId query parameter is required")
        problem = restaurant_id_problem(restaurant_id)
        if problem is not None:
            raise AuthError(HTTPStatus.BAD_REQUEST, problem)
        return self.verifier.tablet(token_from_request(request, query), restaurant_id)

    def _refuse(self, status: HTTPStatus, reason: str, request: web.Request) -> web.Response:
        metrics.REFUSED.labels(status=str(int(status))).inc()
        return Refusal(status, reason).response(self.cors.headers(request))

    def _admission(self, request: web.Request) -> tuple[TabletIdentity, Owner, MultiDictProxy[str]] | web.Response:
        """Authenticate and locate the owner (LOCAL or REMOTE), or the refusal to answer with.

        Also returns the parsed query (:func:`_query`: not cached on the request, which a socket keeps).
        """
        query = _query(request)
        if not self.cors.allows(request):
            return self._refuse(HTTPStatus.FORBIDDEN, "origin not allowed (see PARTNER_STREAM_CORS_ORIGINS)", request)
        try:
            identity = self._authorize(request, query)
        except AuthError as exc:
            return self._refuse(exc.status, exc.reason, request)
        owner = self.locate(identity.restaurant_id)
        if owner.placement is Placement.UNAVAILABLE:
            return self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, owner.reason or "unavailable", request)
        if owner.placement is Placement.REMOTE and RELAYED_HEADER in request.headers:
            # The relaying worker's map and ours disagree: ownership is moving. Never bounce back.
            return self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "the restaurant is changing workers", request)
        return identity, owner, query

    # -- SignalR negotiate ------------------------------------------------------------------

    async def negotiate_preflight(self, request: web.Request) -> web.Response:
        return self.cors.preflight(request, "POST, OPTIONS")

    async def negotiate(self, request: web.Request) -> web.Response:
        admitted = self._admission(request)
        if isinstance(admitted, web.Response):
            return admitted
        identity, owner, query = admitted
        if owner.placement is Placement.REMOTE:
            # SignalR's redirect: the client re-negotiates at `url` with `accessToken` as its bearer.
            assert owner.url is not None
            try:
                base = await self.confirm_owner(owner.url, identity.restaurant_id)
            except OwnerUnreachable as exc:
                return self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, str(exc), request)
            forwarded = {k: v for k, v in query.items() if k not in {"negotiateVersion", "access_token"}}
            url = base.with_path(SIGNALR_PATH).with_query(forwarded)
            body = {"url": str(url), "accessToken": token_from_request(request, query)}
            return web.json_response(body, headers=self.cors.headers(request))
        try:
            connection_token = self.negotiations.open(identity.restaurant_id)
        except NegotiationRefused as refused:
            status = HTTPStatus.TOO_MANY_REQUESTS if refused.per_restaurant else HTTPStatus.SERVICE_UNAVAILABLE
            return self._refuse(status, refused.reason, request)
        body = {
            "connectionId": new_connection_id(),  # shown to the client for logging; not a secret
            "connectionToken": connection_token,
            "negotiateVersion": 1,
            "availableTransports": [{"transport": "WebSockets", "transferFormats": ["Text"]}],
        }
        return web.json_response(body, headers=self.cors.headers(request))

    # -- sockets -------------------------------------------------------------------------

    async def socket(self, request: web.Request, *, protocol: str) -> web.StreamResponse:
        """Serve a tablet socket here, relay it to the restaurant's owner, or refuse it before the upgrade.

        One coroutine from the upgrade to the close: a handler's frames live as long as its socket, so the
        serving and the read loop are written out here rather than awaited helpers (one frame each per
        idle tablet), and nothing here keeps what only the admission or one frame needed.
        """
        admitted = self._socket_admission(request, protocol)
        if isinstance(admitted, web.Response):
            return admitted
        identity, owner, codec = admitted
        if codec is None:
            try:
                return await self.relay.serve(request, owner.url, identity.restaurant_id)  # type: ignore[arg-type]
            except RelayRefused as refused:
                return self._refuse(HTTPStatus(refused.status), refused.reason, request)
        del admitted, owner
        ws = web.WebSocketResponse(max_msg_size=self.settings.hub_max_message_bytes, autoping=True)
        await ws.prepare(request)
        # Sent with the 101; the response would keep them for the socket's life.
        ws.headers.clear()
        release_http_machinery(request, ws)
        connection = Connection(
            ws,
            codec,
            restaurant_id=identity.restaurant_id,
            protocol=protocol,
            queue_size=self.settings.hub_queue_size,
            batch_records=protocol == "signalr",
            transport=request.transport,
        )
        del codec
        expiry: list[Any] | None = None
        try:
            if protocol == "signalr" and not await self._signalr_handshake(ws, connection):
                return ws
            if protocol == "signalr":
                # Ahead of everything queued, and kept by a disconnect; written with the snapshot.
                connection.send_first(HandshakeAccepted())
            # Ownership was checked before the upgrade; a rebalance may have finished since (a SignalR
            # client has 15 s to send its handshake). Attaching to a stale owner would mean no pushes ever.
            placement = self.locate(identity.restaurant_id).placement
            if placement is Placement.LOCAL:
                self.hub.attach(connection)
                expiry = self._close_when_token_expires(connection, identity)
            else:
                connection.disconnect(NOT_OWNER if placement is Placement.REMOTE else UNAVAILABLE)
            await self._drain(connection)  # records that arrived in the handshake's frame
            # Not `async for`: its __anext__ would be one more frame per idle tablet. Each message goes
            # straight to _feed, so this frame does not hold the last one until the next arrives.
            while self._feed(connection, await ws.receive()):
                await self._drain(connection)
        finally:
            if expiry is not None:
                self.expiries.cancel(expiry)
            self.hub.detach(connection)
            connection.peer_gone()
            await connection.wait_closed()
        return ws

    def _socket_admission(
        self, request: web.Request, protocol: str
    ) -> tuple[TabletIdentity, Owner, SignalRCodec | PlainCodec | None] | web.Response:
        """The refusal to answer, or the tablet, its owner and the codec to serve it with (None: relay it)."""
        admitted = self._admission(request)
        if isinstance(admitted, web.Response):
            return admitted
        identity, owner, query = admitted
        if owner.placement is Placement.REMOTE:
            return identity, owner, None
        if protocol == "plain":
            return identity, owner, PlainCodec()
        connection_token = query.get("id")
        # Absent for skipNegotiation clients. Bounded before the lookup: no token of ours is longer.
        if connection_token is not None and (
            len(connection_token) > MAX_CONNECTION_TOKEN_LENGTH
            or not self.negotiations.redeem(connection_token, identity.restaurant_id)
        ):
            return self._refuse(HTTPStatus.NOT_FOUND, "No Connection with that ID", request)
        return identity, owner, SignalRCodec()

    def _close_when_token_expires(self, connection: Connection, identity: TabletIdentity) -> list[Any] | None:
        """A token is checked at connect; an open socket must not outlive it.

        The close lets the client reconnect (as ASP.NET's ``CloseOnAuthenticationExpiration``): the SignalR
        client then calls its ``accessTokenFactory`` again, so a tablet with a renewable token carries on.
        A client whose token cannot be renewed is refused with 401 on that reconnect.
        """
        if identity.expires_at is None:
            return None
        # At the end of the verifier's leeway, not at ``exp``: a reconnect with the same token is then refused,
        # never accepted and closed again at once (a loop for a client that caches its token).
        delay = max(0.0, float(identity.expires_at) + LEEWAY_SECONDS - time.time())
        return self.expiries.add(delay, connection)

    async def _signalr_handshake(self, ws: web.WebSocketResponse, connection: Connection) -> bool:
        """Read the handshake record; on failure reply with the error and close. Nothing else goes first."""
        codec = connection.codec
        try:
            message = await ws.receive(timeout=HANDSHAKE_TIMEOUT)
        except TimeoutError:
            await ws.close(code=1002, message=b"handshake timeout")
            return False
        try:
            if message.type == WSMsgType.TEXT:
                codec.receive_text(message.data)
            elif message.type == WSMsgType.BINARY:
                codec.receive_binary(message.data)
            else:
                return False
            first = codec.next_event()
            if not isinstance(first, HandshakeRequested):
                raise RemoteProtocolError("expected the handshake", handshake_error="Expected a handshake request.")
        except RemoteProtocolError as exc:
            metrics.PROTOCOL_ERRORS.labels(protocol=connection.protocol).inc()
            await ws.send_str(codec.send(HandshakeRejected(exc.handshake_error or str(exc))))
            await ws.close(code=1002, message=b"handshake failed")
            return False
        connection.mark_received()
        return True

    def _feed(self, connection: Connection, message: WSMessage) -> bool:
        """Hand a received message to the codec; False once the socket is done (close, error, other types)."""
        if not connection.is_open:
            # Closing: data still arriving is dropped; close and error messages end the loop, as they end
            # aiohttp's iterator.
            return message.type in (WSMsgType.TEXT, WSMsgType.BINARY)
        connection.mark_received()
        try:
            if message.type == WSMsgType.TEXT:
                connection.codec.receive_text(message.data)
            elif message.type == WSMsgType.BINARY:
                connection.codec.receive_binary(message.data)
            else:
                return False
        except RemoteProtocolError as exc:
            metrics.PROTOCOL_ERRORS.labels(protocol=connection.protocol).inc()
            log.info("%r: protocol error: %s", connection, exc)
            connection.disconnect(exc.disconnect or BAD_REQUEST)  # the loop goes on until the close
        return True

    async def _drain(self, connection: Connection) -> None:
        while connection.is_open:
            event = connection.codec.next_event()
            if event is NEED_DATA:
                return
            await self.hub.handle(connection, event)


def _query(request: web.Request) -> MultiDictProxy[str]:
    """The request's query, parsed afresh rather than with ``request.query``.

    ``request.query`` caches the parsed pairs (the token among them, 1 KiB) on the request and its URL,
    which aiohttp keeps for as long as a socket is open. The same parser, on a URL nothing keeps.
    """
    return URL.build(query_string=request.rel_url.raw_query_string, encoded=True).query
