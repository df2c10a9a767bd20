"""ASP.NET Core SignalR JSON hub protocol (version 1), server side, sans-I/O.

Only what the official ``@microsoft/signalr`` client needs to talk to our hub:

* Every record is a JSON object followed by ``\\x1e``. The client writes whole records
  per WebSocket frame and may batch several, so a frame not ending in ``\\x1e`` is a
  broken client, not a fragment to reassemble.
* The first record is the handshake ``{"protocol":"json","version":1}``. The client
  sends version 1 unless stateful reconnect was negotiated, which we never offer.
* Bad arguments or an unknown target are answered per invocation (Completion with
  ``error``) and keep the connection, like ASP.NET; malformed records end it.
* Record types we do not act on (client results 2/3, CancelInvocation 5, stateful
  reconnect 8/9, future types) are ignored, as ASP.NET ignores unknown types.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Final

import orjson

from partner_stream.events import order_id_problem
from partner_stream_web.protocols.disconnects import SIGNALR_WS_CLOSE_CODE, Disconnect
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
    HandshakeRequested,
    Inbound,
    InvalidInvocation,
    NeedData,
    Outbound,
    Push,
    Reply,
    ServerPing,
    Snapshot,
    SnapshotRequested,
    coerce_id,
)

RECORD_SEPARATOR: Final = "\x1e"
PROTOCOL_NAME: Final = "json"
PROTOCOL_VERSION: Final = 1
MAX_RECORDS_PER_FRAME: Final = 100
"""Bounds the work one frame can cause; the official client batches far fewer."""


# Message types of the SignalR hub protocol.
class MessageType(IntEnum):
    """The ``type`` of a hub protocol record (types 2, 5, 8 and 9 are never acted on)."""

    INVOCATION = 1
    COMPLETION = 3
    STREAM_INVOCATION = 4
    PING = 6
    CLOSE = 7


_HANDSHAKE_ACCEPTED: Final = "{}" + RECORD_SEPARATOR
_PING: Final = f'{{"type":{MessageType.PING.value}}}' + RECORD_SEPARATOR


class SignalRCodec:
    """One connection's SignalR state machine: text in, events out; messages in, text out.

    The caller owns the socket: it feeds every received frame to :meth:`receive_text`
    (or :meth:`receive_binary`), drains :meth:`next_event`, and writes whatever
    :meth:`send` returns as one text frame.
    """

    __slots__ = ("_events", "_handshake_received", "state")

    def __init__(self) -> None:
        self.state = CodecState.AWAITING_HANDSHAKE
        self._handshake_received = False
        # A list, not a deque: one or two events per frame, and an empty deque costs ~600 bytes per tablet.
        self._events: list[Inbound] = []

    # -- receiving ----------------------------------------------------------------

    def receive_text(self, text: str) -> None:
        """Parse one text frame and buffer its events.

        All-or-nothing: if any record is bad, nothing from the frame is buffered and
        :class:`RemoteProtocolError` is raised. Before the hub has accepted the
        handshake, the error's ``handshake_error`` is set, because ``HandshakeRejected``
        is then the only thing that may be sent. Frames arriving after we closed are
        discarded: nothing can be answered any more.
        """
        if self.state is CodecState.CLOSED:
            return
        try:
            events = self._parse_frame(text)
        except RemoteProtocolError as err:
            if self.state is CodecState.AWAITING_HANDSHAKE and err.handshake_error is None:
                err.handshake_error = str(err)
            raise
        self._events.extend(events)

    def receive_binary(self, data: bytes) -> None:
        """Always an error: the JSON protocol is text-only."""
        if self.state is CodecState.CLOSED:
            return
        message = "binary frames are not supported: the 'json' protocol uses text frames"
        handshake_error = None
        if self.state is CodecState.AWAITING_HANDSHAKE:
            handshake_error = message
            if not self._handshake_received:
                # A MessagePack client may send its handshake in a binary frame: name the real problem.
                try:
                    _parse_handshake(data.decode(errors="replace").split(RECORD_SEPARATOR, 1)[0])
                except RemoteProtocolError as err:
                    handshake_error = str(err)
        raise RemoteProtocolError(message, handshake_error=handshake_error)

    def next_event(self) -> Inbound | NeedData:
        """The next buffered event, or :data:`NEED_DATA`."""
        return self._events.pop(0) if self._events else NEED_DATA

    def _parse_frame(self, text: str) -> list[Inbound]:
        if not text.endswith(RECORD_SEPARATOR):
            raise RemoteProtocolError("partial record: frame does not end with the record separator 0x1E")
        count = text.count(RECORD_SEPARATOR)
        if count > MAX_RECORDS_PER_FRAME:
            raise RemoteProtocolError(f"{count} records in one frame; the limit is {MAX_RECORDS_PER_FRAME}")
        handshake_received = self._handshake_received
        events: list[Inbound] = []
        for record in text.split(RECORD_SEPARATOR)[:-1]:
            if not handshake_received:
                _parse_handshake(record)
                handshake_received = True
                events.append(HandshakeRequested())
            elif (event := _parse_message(record)) is not None:
                events.append(event)
        self._handshake_received = handshake_received
        return events

    # -- sending ------------------------------------------------------------------

    def send(self, message: Outbound) -> str:
        """Encode ``message`` as one text frame and advance the state.

        Raises :class:`LocalProtocolError` if the message is not allowed in the current
        state (nothing may precede the handshake reply; nothing may follow a Close).
        """
        name = type(message).__name__
        if self.state is CodecState.CLOSED:
            raise LocalProtocolError(f"cannot send {name}: the connection is closed")
        if self.state is CodecState.AWAITING_HANDSHAKE:
            return self._send_handshake_reply(message)
        match message:
            case Snapshot(restaurant_id=restaurant_id, seq=seq, orders=orders):
                payload = {"restaurantId": restaurant_id, "seq": seq, "orders": orders}
                frame = _record({"type": MessageType.INVOCATION, "target": "PendingOrders", "arguments": [payload]})
            case Push(name=push_name, data=data):
                if push_name not in PUSH_NAMES:
                    raise LocalProtocolError(f"unknown push name {push_name!r}")
                frame = _record({"type": MessageType.INVOCATION, "target": push_name, "arguments": [data]})
            case Reply(reply_to=reply_to, result=result, error=error):
                if error is not None:
                    # Never both: the client rejects on a truthy error and would drop the result.
                    require_error_text(error)
                    frame = _record({"type": MessageType.COMPLETION, "invocationId": reply_to, "error": error})
                else:
                    frame = _record({"type": MessageType.COMPLETION, "invocationId": reply_to, "result": result})
            case ServerPing():
                frame = _PING
            case Close(disconnect=disconnect):
                close: dict[str, Any] = {"type": MessageType.CLOSE, "error": disconnect.reason}
                if disconnect.reconnect:
                    close["allowReconnect"] = True
                frame = _record(close)
                self.state = CodecState.CLOSED
            case HandshakeAccepted() | HandshakeRejected():
                raise LocalProtocolError(f"cannot send {name}: the handshake was already answered")
            case _:
                raise LocalProtocolError(f"not an outbound message: {message!r}")
        return frame

    def _send_handshake_reply(self, message: Outbound) -> str:
        match message:
            case HandshakeAccepted():
                if not self._handshake_received:
                    raise LocalProtocolError("cannot accept a handshake that has not arrived")
                self.state = CodecState.OPEN
                return _HANDSHAKE_ACCEPTED
            case HandshakeRejected(error=error):
                require_error_text(error)
                frame = _record({"error": error})
                self.state = CodecState.CLOSED
                return frame
            case _:
                raise LocalProtocolError(
                    f"cannot send {type(message).__name__} before the handshake reply; nothing may precede it"
                )

    @staticmethod
    def websocket_close_code(disconnect: Disconnect) -> int:
        """Always 1000: the client reports any other code as an error, hiding our reason."""
        return SIGNALR_WS_CLOSE_CODE


# -- parsing helpers --------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _loads(record: str, what: str) -> object:
    try:
        return orjson.loads(record)
    except orjson.JSONDecodeError as err:
        raise RemoteProtocolError(f"{what} is not valid JSON: {err}") from None


def _parse_handshake(record: str) -> None:
    """Validate the handshake record; error texts follow ASP.NET so clients log familiar words."""
    request = _loads(record, "handshake request")
    if not isinstance(request, dict):
        raise RemoteProtocolError("handshake request is not a JSON object")
    if "type" in request and "protocol" not in request:
        raise RemoteProtocolError("expected the handshake request before any hub message")
    protocol, version = request.get("protocol"), request.get("version")
    if not isinstance(protocol, str):
        raise RemoteProtocolError("handshake request lacks a string 'protocol'")
    if not _is_int(version):
        raise RemoteProtocolError("handshake request lacks an integer 'version'")
    if protocol.lower() != PROTOCOL_NAME:  # ASP.NET resolves protocol names case-insensitively
        raise RemoteProtocolError(f"The protocol '{protocol}' is not supported.")
    if version != PROTOCOL_VERSION:
        error = f"The server does not support version {version} of the '{protocol}' protocol."
        raise RemoteProtocolError(error)


def _parse_message(record: str) -> Inbound | None:
    message = _loads(record, "record")
    if not isinstance(message, dict):
        raise RemoteProtocolError("record is not a JSON object")
    message_type = message.get("type")
    if not _is_int(message_type):
        raise RemoteProtocolError("record lacks an integer 'type'")
    match message_type:
        case MessageType.INVOCATION:
            return _parse_invocation(message, streaming=False)
        case MessageType.STREAM_INVOCATION:
            return _parse_invocation(message, streaming=True)
        case MessageType.PING:
            return ClientPing()
        case MessageType.CLOSE:
            error = message.get("error")
            return ClientClosed(error if isinstance(error, str) else None)
        case _:
            return None


def _parse_invocation(message: dict[str, Any], *, streaming: bool) -> Inbound:
    reply_to = message.get("invocationId")
    if reply_to is not None and not isinstance(reply_to, str):
        raise RemoteProtocolError("'invocationId' must be a string")
    if reply_to is not None and len(reply_to) > MAX_REQUEST_ID_CHARS:
        raise RemoteProtocolError(f"'invocationId' is over {MAX_REQUEST_ID_CHARS} characters")
    target, arguments = message.get("target"), message.get("arguments")
    if not isinstance(target, str) or not isinstance(arguments, list):
        problem = "invocation needs a string 'target' and a list 'arguments'"
        if reply_to is None:
            raise RemoteProtocolError(problem)
        return InvalidInvocation(reply_to, problem)
    if streaming:
        if reply_to is None:
            raise RemoteProtocolError("stream invocation lacks 'invocationId'")
        return InvalidInvocation(reply_to, f"Streaming is not supported: invoke '{target}' instead.")
    if message.get("streamIds"):
        return InvalidInvocation(reply_to, "Client-to-server streaming is not supported.")
    match target.lower():  # ASP.NET matches hub methods case-insensitively
        case "getpendingorders":
            if arguments:
                return InvalidInvocation(reply_to, _arity_error(len(arguments), 0))
            return SnapshotRequested(reply_to)
        case "acknowledge":
            if len(arguments) != 1:
                return InvalidInvocation(reply_to, _arity_error(len(arguments), 1))
            order_id = coerce_id(arguments[0])
            problem = "orderId must be a string or an integer" if order_id is None else order_id_problem(order_id)
            if problem is not None or order_id is None:
                return InvalidInvocation(reply_to, f"Acknowledge expects a valid orderId: {problem}.")
            return Acknowledge(order_id, reply_to)
        case _:
            return InvalidInvocation(reply_to, f"Unknown hub method '{target}'")


def _arity_error(given: int, expected: int) -> str:
    return f"Invocation provides {given} argument(s) but target expects {expected}."


# -- encoding helpers -------------------------------------------------------------


def _record(obj: object) -> str:
    return to_json(obj) + RECORD_SEPARATOR
