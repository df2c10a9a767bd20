"""Protocol errors, split h11-style by who broke the rules.

Each error carries a :class:`~web.protocols.disconnects.Disconnect` hint so the I/O
layer can close the socket without knowing which rule was broken.
"""

from __future__ import annotations

from partner_stream_web.protocols.disconnects import BAD_REQUEST, INTERNAL_ERROR, Disconnect


class ProtocolError(Exception):
    """Base class: the conversation cannot continue. ``str(err)`` says why."""

    disconnect: Disconnect

    def __init__(self, message: str, disconnect: Disconnect) -> None:
        super().__init__(message)
        self.disconnect = disconnect


class RemoteProtocolError(ProtocolError):
    """The client sent something the protocol forbids; close the connection.

    ``handshake_error`` is set when the error happened before the hub accepted the
    SignalR handshake: at that point the only thing that may be written is
    ``HandshakeRejected(handshake_error)``, followed by closing the socket.
    """

    handshake_error: str | None

    def __init__(
        self, message: str, disconnect: Disconnect = BAD_REQUEST, *, handshake_error: str | None = None
    ) -> None:
        super().__init__(message, disconnect)
        self.handshake_error = handshake_error


class LocalProtocolError(ProtocolError):
    """The hub misused a codec (wrong state, unencodable message): a bug on our side."""

    def __init__(self, message: str, disconnect: Disconnect = INTERNAL_ERROR) -> None:
        super().__init__(message, disconnect)
