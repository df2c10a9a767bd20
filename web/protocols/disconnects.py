"""Why the hub ends a WebSocket, and whether the tablet should come back.

Centrifuge-style: the code alone tells a client what to do, so a tablet never has to
parse a human-readable reason to decide whether to reconnect.

* ``4000-4499`` -- transient: reconnect (with back-off) and resubscribe.
* ``4500-4999`` -- terminal: do **not** reconnect; a retry would fail the same way.

What reaches the wire depends on the protocol:

* plain JSON: the socket is closed with ``disconnect.code`` and the ``close`` message
  repeats code, reason and the reconnect flag.
* SignalR: the socket is always closed with :data:`SIGNALR_WS_CLOSE_CODE` (1000). The
  official client turns any other close code into an error string and ignores the
  server's intent; the Close message (``error`` + ``allowReconnect``) carries it instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

RECONNECT_CODES: Final = range(4000, 4500)
TERMINAL_CODES: Final = range(4500, 5000)

SIGNALR_WS_CLOSE_CODE: Final = 1000
"""WebSocket close code for every SignalR disconnect (normal closure)."""

_MAX_CLOSE_REASON_BYTES: Final = 123  # RFC 6455 5.5: control payload 125 bytes minus the 2-byte code


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A close code, a short reason, and whether the client should reconnect.

    Validated on construction so a code can never contradict its reconnect flag and the
    reason always fits in a WebSocket close frame.
    """

    code: int
    reason: str
    reconnect: bool

    def __post_init__(self) -> None:
        expected = RECONNECT_CODES if self.reconnect else TERMINAL_CODES
        if self.code not in expected:
            raise ValueError(
                f"disconnect code {self.code} is outside {expected.start}-{expected.stop - 1} "
                f"required for reconnect={self.reconnect}"
            )
        if len(self.reason.encode()) > _MAX_CLOSE_REASON_BYTES:
            raise ValueError(f"reason over {_MAX_CLOSE_REASON_BYTES} bytes: {self.reason!r}")


# Reconnect: the server side is the reason; the same client will succeed later.
SHUTDOWN: Final = Disconnect(4000, "server shutting down", True)
RESYNC: Final = Disconnect(4001, "client too slow; reconnect for a fresh snapshot", True)
NOT_OWNER: Final = Disconnect(4002, "restaurant moved to another worker", True)
UNAVAILABLE: Final = Disconnect(4003, "restaurant's partition is recovering", True)
CLIENT_TIMEOUT: Final = Disconnect(4004, "no message from the client within the server's client timeout", True)
INTERNAL_ERROR: Final = Disconnect(4005, "internal server error", True)
#: The token the socket was opened with expired: reconnect with a fresh one (a stale one gets 401 then).
TOKEN_EXPIRED: Final = Disconnect(4006, "token expired; reconnect with a fresh token", True)
#: The client kept sending requests past its budget even after refusals: come back after a back-off.
TOO_MANY_REQUESTS: Final = Disconnect(4007, "too many requests; reconnect after a back-off", True)

# Terminal: the client itself is wrong; reconnecting unchanged would loop.
BAD_REQUEST: Final = Disconnect(4500, "bad request", False)
UNAUTHORIZED: Final = Disconnect(4501, "unauthorized", False)
MESSAGE_TOO_BIG: Final = Disconnect(4502, "message too big", False)
