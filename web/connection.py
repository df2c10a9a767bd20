"""One tablet socket: its codec, a bounded outbound queue and the single writer that drains it.

The hub never awaits a socket. It calls :meth:`Connection.offer`, which only appends
to a queue and makes sure a writer task is draining it; at most one writer runs per
connection, so sends are serialised and records never interleave. The writer exits
once the queue is empty and the queue is dropped: an idle tablet (most of them, most
of the time) holds no task, event or buffer, which is most of a socket's memory here.
A tablet that falls ``queue_size`` messages behind is closed with ``RESYNC``: it
reconnects and gets a fresh snapshot, which is cheaper and safer than buffering
without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import secrets
import time
from collections import deque
from typing import Any

from aiohttp import web

from partner_stream_web.budget import TokenBucket
from partner_stream_web.protocols import Codec, LocalProtocolError
from partner_stream_web.protocols.disconnects import RESYNC, Disconnect
from partner_stream_web.protocols.messages import Close, Outbound

log = logging.getLogger(__name__)

#: How long a closing connection may take to flush its Close message before we cut it.
CLOSE_GRACE_SECONDS = 5.0
#: Most text one write gathers from the queue (SignalR batches records into one frame).
BATCH_BYTES = 64 * 1024


#: Connection ids are for logs and the operator API, not secrets: a per-process random prefix keeps them
#: unique across workers without a system call per connection (which showed in reconnect storms).
_ID_PREFIX = secrets.token_urlsafe(6)
_id_counter = itertools.count(1)


def new_connection_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):x}"


class ConnectionStatus(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Connection:
    """A tablet's socket on this worker; created after authentication, registered with the hub."""

    # Thousands per worker: no per-instance __dict__.
    __slots__ = (
        "_batch_records",
        "_preamble",
        "_queue",
        "_queue_size",
        "_queued_snapshot",
        "_transport",
        "_writer",
        "ack_budget",
        "close_reason",
        "codec",
        "connected_at",
        "id",
        "last_ack",
        "last_received",
        "last_sent",
        "protocol",
        "refusal_budget",
        "request_budget",
        "restaurant_id",
        "status",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        codec: Codec,
        *,
        restaurant_id: str,
        protocol: str,
        queue_size: int,
        batch_records: bool,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self.id = new_connection_id()
        self.ws = ws
        self.codec = codec
        self.restaurant_id = restaurant_id
        #: "signalr" or "plain", for metrics and the operator API.
        self.protocol = protocol
        #: Wall-clock connect time, for the operator API.
        self.connected_at = time.time()
        #: Monotonic time of the last frame from the client (any frame proves it is alive).
        self.last_received = time.monotonic()
        #: Monotonic time a message was last queued for the client (a push doubles as a keep-alive).
        self.last_sent = self.last_received
        #: Last order this tablet acknowledged, and when.
        self.last_ack: tuple[str, float] | None = None
        self.status = ConnectionStatus.OPEN
        self.close_reason: Disconnect | None = None
        #: Created by the first message of a burst, dropped when the writer drained it.
        self._queue: deque[Outbound] | None = None
        #: The requested snapshot (or snapshot reply) queued and not yet encoded: one at a time per socket.
        self._queued_snapshot: Outbound | None = None
        #: What the next write starts with, ahead of the queue, and what no disconnect drops (SignalR's handshake
        #: reply: a client reads nothing, a Close included, before it).
        self._preamble: Outbound | None = None
        #: Token buckets of this socket's requests and acknowledgements, created by the hub on first use.
        self.request_budget: TokenBucket | None = None
        self.ack_budget: TokenBucket | None = None
        self.refusal_budget: TokenBucket | None = None
        self._queue_size = queue_size
        #: SignalR allows several records per frame: one write per burst instead of one per message.
        self._batch_records = batch_records
        #: The running writer, if anything is queued or being sent.
        self._writer: asyncio.Task[None] | None = None
        #: The TCP transport, to abort a socket whose peer stopped reading.
        self._transport = transport

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.protocol} restaurant={self.restaurant_id} {self.status.value}>"

    @property
    def is_open(self) -> bool:
        return self.status is ConnectionStatus.OPEN

    def offer(self, message: Outbound) -> bool:
        """Queue a message without waiting; False if the connection is closing or fell behind."""
        if self.status is not ConnectionStatus.OPEN:
            return False
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self._queue_size:
            self.disconnect(RESYNC)
            return False
        queue.append(message)
        self.last_sent = time.monotonic()
        self._ensure_writer()
        return True

    def send_first(self, message: Outbound) -> None:
        """Send ``message`` before anything queued, in the same write as what gets queued next unless that is a
        Close (SignalR's handshake reply rides in the snapshot's frame: one write and one client message fewer
        per connect)."""
        self._preamble = message
        self._ensure_writer()

    def offer_snapshot(self, message: Outbound) -> bool:
        """Queue a snapshot (or a reply carrying one) unless one is already waiting to be sent.

        A snapshot can be megabytes for a busy restaurant: a client asking again before the last one
        left must not multiply that. The one queued is as good: every change after it is queued too.
        """
        if self._queued_snapshot is not None or not self.offer(message):
            return False
        self._queued_snapshot = message
        return True

    @property
    def snapshot_queued(self) -> bool:
        return self._queued_snapshot is not None

    def disconnect(self, reason: Disconnect) -> None:
        """Tell the client why, then close; pending messages are dropped (the client will resync)."""
        if self.status is not ConnectionStatus.OPEN:
            return
        self.status = ConnectionStatus.CLOSING
        self.close_reason = reason
        # Queued messages are dropped; the Close goes next, even if a write is in flight.
        self._queue = deque([Close(reason)])
        self._queued_snapshot = None
        self._ensure_writer()  # the preamble, if not sent yet, still goes first
        # A tablet that does not read can block the writer forever: cut it after a grace period.
        asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, self._abort_if_stuck)

    def peer_gone(self) -> None:
        """Call when the read side ended (client closed or vanished): stop the writer."""
        if self.status is ConnectionStatus.OPEN:
            self._finish()

    def mark_received(self) -> None:
        self.last_received = time.monotonic()

    async def wait_closed(self) -> None:
        """Wait for the writer, if one runs (after :meth:`disconnect`: until the Close went out)."""
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._writer)

    @property
    def writing(self) -> bool:
        return self._writer is not None

    def _abort_if_stuck(self) -> None:
        if self.status is ConnectionStatus.CLOSED:
            return
        log.info("aborting %r: close did not complete in %.0f s", self, CLOSE_GRACE_SECONDS)
        self._finish()
        if self._writer is not None:
            self._writer.cancel()
        if self._transport is not None:
            self._transport.abort()

    def _finish(self) -> None:
        self.status = ConnectionStatus.CLOSED
        self._queue = None
        self._queued_snapshot = None

    def _ensure_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Send until the queue is empty (then exit: the next offer starts a new writer) or closed."""
        try:
            while (self._queue or self._preamble is not None) and self.status is not ConnectionStatus.CLOSED:
                if not await self._flush_once():
                    self._finish()
                    return
            self._queue = None
        except (ConnectionError, RuntimeError) as exc:
            # The peer went away mid-send (aiohttp raises a ConnectionResetError subclass, or RuntimeError
            # once the transport is closing); the reader notices and unregisters. Routine: no traceback.
            log.debug("%r: send failed: %s", self, exc)
            self._finish()
        except asyncio.CancelledError:
            self._finish()  # what was taken off the queue is lost: the connection must not look healthy
            raise
        except Exception:
            # A bug, not the peer: messages were lost, so cut the socket; the tablet reconnects and resyncs.
            log.exception("%r: writer failed; closing the connection", self)
            self._finish()
            if self._transport is not None:
                self._transport.abort()
        finally:
            self._writer = None

    async def _flush_once(self) -> bool:
        """Send what is queued; False once the Close message went out (the socket is then closed)."""
        closing: Close | None = None
        frames: list[str] = []
        size = 0
        if self._preamble is not None:
            preamble = self.codec.send(self._preamble)
            self._preamble = None
            if self._batch_records and self.status is ConnectionStatus.OPEN:
                frames.append(preamble)
            else:
                # Alone when a Close is queued: in the reply's frame it would make the official client's start()
                # fail, where a started connection closes with the reason and reconnects.
                await self.ws.send_str(preamble)
        queue = self._queue if self._queue is not None else deque()  # after the await: a disconnect replaces it
        # One write per burst, but never more than BATCH_BYTES in one (bar a single large message): a
        # batch is one string in memory, and the next one is only encoded once this one was written.
        while queue and size < BATCH_BYTES:
            message = queue.popleft()
            if message is self._queued_snapshot:
                self._queued_snapshot = None
            try:
                frame = self.codec.send(message)
            except LocalProtocolError as exc:
                log.error("%r: cannot encode %s: %s", self, type(message).__name__, exc)
                continue
            frames.append(frame)
            size += len(frame)
            if isinstance(message, Close):
                closing = message
                break
            if not self._batch_records:
                break
        if frames:
            await self.ws.send_str("".join(frames) if self._batch_records else frames[0])
        if closing is not None:
            code = self.codec.websocket_close_code(closing.disconnect)
            await self.ws.close(code=code, message=closing.disconnect.reason.encode())
            return False
        return True

    def describe(self) -> dict[str, Any]:
        """What the operator API shows about this tablet."""
        return {
            "connectionId": self.id,
            "protocol": self.protocol,
            "connectedAt": self.connected_at,
            "lastAck": {"orderId": self.last_ack[0], "at": self.last_ack[1]} if self.last_ack else None,
            "status": self.status.value,
        }
