"""Protocol-neutral messages exchanged between the hub and a codec.

The hub reasons only in these types; :mod:`web.protocols.signalr` and
:mod:`web.protocols.plain` map them to and from wire text. Keeping the hub ignorant
of the wire format is what lets one hub serve both kinds of tablet client.

All messages are frozen, slotted dataclasses: cheap, hashable where their fields are,
and impossible to mutate after the hub has decided what to send.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from partner_stream_web.protocols.disconnects import Disconnect


class CodecState(enum.Enum):
    """Where a codec is in its connection's life (our side, as in h11)."""

    AWAITING_HANDSHAKE = "AWAITING_HANDSHAKE"
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class NeedData(enum.Enum):
    """Type of the :data:`NEED_DATA` sentinel returned by ``next_event()``."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA
"""Nothing buffered: read another frame and feed it to ``receive_text``."""


PUSH_NAMES: Final = frozenset({"NewOrder", "OrderAccepted", "OrderRejected", "OrderAcknowledged"})
"""Event names a :class:`Push` may carry; clients register handlers by these names."""


# -- inbound: client -> hub ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeRequested:
    """SignalR only: a valid handshake record arrived; reply with ``HandshakeAccepted``."""


@dataclass(frozen=True, slots=True)
class SnapshotRequested:
    """The client wants the pending orders. ``reply_to`` is None when no reply is expected."""

    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """The tablet has shown ``order_id`` to staff. Ids sent as numbers arrive as str."""

    order_id: str
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Resume:
    """Plain only: the client last saw ``seq`` and asks to continue from there."""

    seq: int


@dataclass(frozen=True, slots=True)
class ClientPing:
    """Keep-alive from the client; resets its inactivity timer, needs no answer."""


@dataclass(frozen=True, slots=True)
class ClientClosed:
    """The client announced it is closing, optionally with an error of its own."""

    error: str | None = None


@dataclass(frozen=True, slots=True)
class InvalidInvocation:
    """SignalR: a well-formed record asking for something the hub cannot do.

    Not a connection error (ASP.NET keeps the connection open): the hub answers with
    ``Reply(reply_to, error=error)``, or drops it when ``reply_to`` is None.
    """

    reply_to: str | None
    error: str


Inbound = HandshakeRequested | SnapshotRequested | Acknowledge | Resume | ClientPing | ClientClosed | InvalidInvocation


# -- outbound: hub -> client --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeAccepted:
    """SignalR only: the handshake succeeded; must be the first thing we send."""


@dataclass(frozen=True, slots=True)
class HandshakeRejected:
    """SignalR only: refuse the handshake; the socket is closed right after."""

    error: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every pending order of a restaurant as of ``seq``."""

    restaurant_id: str
    seq: int
    orders: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Push:
    """One order event; ``name`` is one of :data:`PUSH_NAMES`.

    ``data`` is already the client-facing camelCase payload (it includes ``seq``); the
    codecs pass it through untouched.
    """

    name: str
    seq: int
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a request that carried an id. ``error`` wins over ``result``."""

    reply_to: str
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ServerPing:
    """Keep-alive from the hub, so the client's server-timeout does not fire."""


@dataclass(frozen=True, slots=True)
class Close:
    """Tell the client why we are closing; the codec is CLOSED once this is sent."""

    disconnect: Disconnect


Outbound = HandshakeAccepted | HandshakeRejected | Snapshot | Push | Reply | ServerPing | Close


def coerce_id(value: object) -> str | None:
    """Normalise an order id or request id: str as is, int (not bool) to str, else None.

    JavaScript clients routinely send numeric ids; the hub keys everything by str.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


#: Characters of a request id a client picks (SignalR ``invocationId``, plain ``id``): echoed in the reply.
MAX_REQUEST_ID_CHARS: Final = 128
