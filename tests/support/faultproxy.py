"""A Kafka-aware TCP proxy in front of the embedded broker that can cut one client off, as a network partition would.

The broker advertises the proxy's address, so every client (workers, producers) reaches the broker through it.
Each connection is told apart by the ``client_id`` in its first Kafka request header (workers set theirs with
``PARTNER_STREAM_BROKER_CLIENT_ID``). :meth:`FaultProxy.cut` then partitions one client:

- ``reset``: its open connections are closed and new ones are closed at once (a refusing firewall);
- ``silent``: its bytes stop flowing both ways, sockets stay open (packets dropped). Healing lets the held
  bytes through, as TCP retransmission would.

It counts the bytes each client sent, so a test can check that all of a worker's traffic went through it.

:meth:`FaultProxy.hold_produce` stops one client's Produce requests to one topic where they are, and everything
behind them on that connection, as a request still in flight when the client crashes: the broker never gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import defaultdict
from dataclasses import dataclass, field

#: int32 size, int16 api_key, int16 api_version, int32 correlation_id, int16 client_id length.
_HEADER = struct.Struct(">ihhih")
_SIZE = struct.Struct(">i")
_PRODUCE = 0


@dataclass
class _Link:
    client_id: str
    writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]
    tasks: list[asyncio.Task] = field(default_factory=list)

    def close(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    def __init__(self, listen_port: int, broker_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.listen_port = listen_port
        self.broker_port = broker_port
        self.bytes_from: dict[str, int] = defaultdict(int)
        self._cuts: dict[str, str] = {}
        #: client_id -> topic whose Produce requests are held (and what follows them on their connection).
        self._holds: dict[str, bytes] = {}
        #: How many Produce requests were held, by client.
        self.held: dict[str, int] = defaultdict(int)
        self._open: dict[str, asyncio.Event] = defaultdict(self._new_open_gate)
        self._links: list[_Link] = []
        self._server: asyncio.base_events.Server | None = None

    @staticmethod
    def _new_open_gate() -> asyncio.Event:
        gate = asyncio.Event()
        gate.set()
        return gate

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.listen_port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            link.close()
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self, client_id: str, mode: str = "reset") -> None:
        assert mode in ("reset", "silent")
        self._cuts[client_id] = mode
        self._open[client_id].clear()
        if mode == "reset":
            for link in [link for link in self._links if link.client_id == client_id]:
                link.close()

    def hold_produce(self, client_id: str, topic: str) -> None:
        """From now on, hold the client's Produce requests that carry ``topic``: never forwarded."""
        self._holds[client_id] = topic.encode()

    def release(self, client_id: str) -> None:
        """New connections of the client pass again (held requests are gone with their connections)."""
        self._holds.pop(client_id, None)

    def heal(self, client_id: str) -> None:
        self._cuts.pop(client_id, None)
        self._open[client_id].set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            first = await client_reader.readexactly(_HEADER.size)
            _, _, _, _, id_length = _HEADER.unpack(first)
            client_id = (await client_reader.readexactly(max(id_length, 0))).decode(errors="replace")
        except (asyncio.IncompleteReadError, ConnectionError):
            client_writer.close()
            return
        head = first + client_id.encode()
        if self._cuts.get(client_id) == "reset":
            client_writer.transport.abort()
            return
        try:
            broker_reader, broker_writer = await asyncio.open_connection(self.host, self.broker_port)
        except OSError:
            client_writer.transport.abort()
            return
        link = _Link(client_id, (client_writer, broker_writer))
        self._links.append(link)
        gate = self._open[client_id]
        self.bytes_from[client_id] += len(head)
        await gate.wait()
        broker_writer.write(head)
        first_rest = _HEADER.unpack(first)[0] + _SIZE.size - len(head)  # the first request's bytes not read yet
        link.tasks = [
            asyncio.ensure_future(self._pump_requests(client_reader, broker_writer, gate, client_id, first_rest)),
            asyncio.ensure_future(self._pump_responses(broker_reader, client_writer, gate)),
        ]
        await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        link.close()
        self._links.remove(link)

    async def _pump_requests(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gate: asyncio.Event,
        client_id: str,
        first_rest: int,
    ) -> None:
        """Client to broker, a request at a time (so a Produce request can be held whole)."""
        try:
            await self._forward(writer, gate, client_id, await reader.readexactly(first_rest))
            while True:
                size = await reader.readexactly(_SIZE.size)
                request = size + await reader.readexactly(_SIZE.unpack(size)[0])
                api_key = int.from_bytes(request[4:6], "big")
                held_topic = self._holds.get(client_id)
                if api_key == _PRODUCE and held_topic is not None and held_topic in request:
                    self.held[client_id] += 1
                    while await reader.read(65536):  # in flight until the connection dies: nothing more goes through
                        pass
                    return
                await self._forward(writer, gate, client_id, request)
        except (asyncio.IncompleteReadError, ConnectionError):  # the client went away (a SIGKILL resets)
            return

    async def _forward(self, writer: asyncio.StreamWriter, gate: asyncio.Event, client_id: str, data: bytes) -> None:
        await gate.wait()  # a silent cut holds the bytes here until it heals
        self.bytes_from[client_id] += len(data)
        writer.write(data)
        await writer.drain()

    @staticmethod
    async def _pump_responses(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            await gate.wait()  # a silent cut holds the bytes here until it heals
            writer.write(data)
            await writer.drain()
