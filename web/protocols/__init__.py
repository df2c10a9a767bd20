"""Sans-I/O wire protocols for the tablet hub, in the style of h11.

Nothing here touches a socket, an event loop or aiohttp: a codec turns received text
into :mod:`~web.protocols.messages` events and outbound messages into text, and the
I/O layer does the reading and writing. That keeps every protocol rule testable with
plain strings. Two codecs share one interface (:class:`Codec`): :class:`SignalRCodec`
for the official SignalR client and :class:`PlainCodec` for bare WebSocket clients.
"""

from __future__ import annotations

from typing import Protocol

from partner_stream_web.protocols.disconnects import Disconnect
from partner_stream_web.protocols.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from partner_stream_web.protocols.messages import NEED_DATA, CodecState, Inbound, NeedData, Outbound
from partner_stream_web.protocols.plain import PlainCodec
from partner_stream_web.protocols.signalr import SignalRCodec


class Codec(Protocol):
    """What the hub needs from a wire protocol; both codecs satisfy it."""

    state: CodecState

    def receive_text(self, text: str) -> None: ...
    def receive_binary(self, data: bytes) -> None: ...
    def next_event(self) -> Inbound | NeedData: ...
    def send(self, message: Outbound) -> str: ...
    def websocket_close_code(self, disconnect: Disconnect) -> int: ...


__all__ = [
    "NEED_DATA",
    "Codec",
    "CodecState",
    "LocalProtocolError",
    "PlainCodec",
    "ProtocolError",
    "RemoteProtocolError",
    "SignalRCodec",
]
