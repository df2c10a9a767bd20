"""Plain JSON-over-WebSocket protocol, server side, sans-I/O.

For clients that do not want the SignalR library: exactly one JSON object per text
frame, dispatched on a string ``type``. There is no handshake, so the codec starts
OPEN. Unlike SignalR, a malformed request is a connection error (BAD_REQUEST): the
protocol is ours, and a client that gets it wrong should fail loudly during
development rather than limp along.

Requests may carry an ``"id"`` (string or integer); it becomes ``reply_to`` and comes
back as ``{"type":"reply","id":...}``.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from partner_stream.events import order_id_problem
from partner_stream_web.protocols.disconnects import Disconnect
from partner_stream_web.protocols.encoding import require_error_text, to_json
from partner_stream_web.protocols.errors import LocalProtocolError, RemoteProtocolError
from partner_stream_web.protocols.messages import (
    MAX_REQUEST_ID_CHARS,
    NEED_DATA,
    PUSH_NAMES,
    Acknowledge,
    ClientClosed,
    ClientPing,
    Close,
    CodecState,
    HandshakeAccepted,
    HandshakeRejected,
    Inbound,
    NeedData,
    Outbound,
    Push,
    Reply,
    Resume,
    ServerPing,
    Snapshot,
    SnapshotRequested,
    coerce_id,
)

REQUEST_TYPES: Final = ("ping", "ack", "resume", "getPendingOrders", "close")
_EXPECTED: Final = ", ".join(REQUEST_TYPES)
_PING: Final = '{"type":"ping"}'


class PlainCodec:
    """One connection's plain-JSON state machine, with the same interface as SignalRCodec."""

    __slots__ = ("_events", "state")

    def __init__(self) -> None:
        self.state = CodecState.OPEN
        # A list, not a deque: one or two events per frame, and an empty deque costs ~600 bytes per tablet.
        self._events: list[Inbound] = []

    # -- receiving ----------------------------------------------------------------

    def receive_text(self, text: str) -> None:
        """Parse one frame into one event; raises :class:`RemoteProtocolError` if malformed.

        Frames arriving after we closed are discarded: nothing can be answered any more.
        """
        if self.state is CodecState.CLOSED:
            return
        self._events.append(_parse(text))

    def receive_binary(self, data: bytes) -> None:
        """Always an error: the protocol is text-only."""
        if self.state is CodecState.CLOSED:
            return
        raise RemoteProtocolError("binary frames are not supported: send JSON in text frames")

    def next_event(self) -> Inbound | NeedData:
        """The next buffered event, or :data:`NEED_DATA`."""
        return self._events.pop(0) if self._events else NEED_DATA

    # -- sending ------------------------------------------------------------------

    def send(self, message: Outbound) -> str:
        """Encode ``message`` as one text frame; after a Close nothing more may be sent."""
        name = type(message).__name__
        if self.state is CodecState.CLOSED:
            raise LocalProtocolError(f"cannot send {name}: the connection is closed")
        match message:
            case Snapshot(restaurant_id=restaurant_id, seq=seq, orders=orders):
                payload = {"restaurantId": restaurant_id, "orders": orders}
                frame = to_json({"type": "PendingOrders", "seq": seq, "data": payload})
            case Push(name=push_name, seq=seq, data=data):
                if push_name not in PUSH_NAMES:
                    raise LocalProtocolError(f"unknown push name {push_name!r}")
                frame = to_json({"type": push_name, "seq": seq, "data": data})
            case Reply(reply_to=reply_to, result=result, error=error):
                if error is not None:
                    require_error_text(error)
                    frame = to_json({"type": "reply", "id": reply_to, "error": error})
                else:
                    frame = to_json({"type": "reply", "id": reply_to, "result": result})
            case ServerPing():
                frame = _PING
            case Close(disconnect=d):
                close = {"type": "close", "code": d.code, "reason": d.reason, "reconnect": d.reconnect}
                frame = to_json(close)
                self.state = CodecState.CLOSED
            case HandshakeAccepted() | HandshakeRejected():
                raise LocalProtocolError(f"cannot send {name}: the plain protocol has no handshake")
            case _:
                raise LocalProtocolError(f"not an outbound message: {message!r}")
        return frame

    @staticmethod
    def websocket_close_code(disconnect: Disconnect) -> int:
        """The disconnect code itself: plain clients read the close code directly."""
        return disconnect.code


def _parse(text: str) -> Inbound:
    try:
        request = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise RemoteProtocolError(f"frame is not a single valid JSON value: {err}") from None
    if not isinstance(request, dict):
        raise RemoteProtocolError("frame must be a JSON object")
    request_type = request.get("type")
    if not isinstance(request_type, str):
        raise RemoteProtocolError(f"message lacks a string 'type'; expected one of: {_EXPECTED}")
    match request_type:
        case "ping":
            return ClientPing()
        case "ack":
            order_id = coerce_id(request.get("orderId"))
            problem = "orderId must be a string or an integer" if order_id is None else order_id_problem(order_id)
            if problem is not None or order_id is None:
                raise RemoteProtocolError(f"'ack' needs a valid 'orderId': {problem}")
            return Acknowledge(order_id, _reply_to(request))
        case "resume":
            seq = request.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise RemoteProtocolError("'resume' needs 'seq': a non-negative integer")
            return Resume(seq)
        case "getPendingOrders":
            return SnapshotRequested(_reply_to(request))
        case "close":
            reason = request.get("reason")
            return ClientClosed(reason if isinstance(reason, str) else None)
        case _:
            raise RemoteProtocolError(f"unknown message type {request_type!r}; expected one of: {_EXPECTED}")


def _reply_to(request: dict[str, Any]) -> str | None:
    raw = request.get("id")
    if raw is None:
        return None
    reply_to = coerce_id(raw)
    if reply_to is None:
        raise RemoteProtocolError("'id' must be a string or an integer")
    if len(reply_to) > MAX_REQUEST_ID_CHARS:
        raise RemoteProtocolError(f"'id' is over {MAX_REQUEST_ID_CHARS} characters")
    return reply_to
