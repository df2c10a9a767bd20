"""A Kafka-aware TCP proxy in front of the embedded broker that can cut one client off, as a network partition would.

The broker advertises the proxy's address, so every client (workers, producers) reaches the broker through it.
Each connection is told apart by the ``client_id`` in its first Kafka request header (workers set theirs with
``PARTNER_STREAM_BROKER_CLIENT_ID``). :meth:`FaultProxy.cut` then partitions one client:

- ``reset``: its open connections are closed and new ones are closed at once (a refusing firewall);
- ``silent``: its bytes stop flowing both ways, sockets stay open (packets dropped). Healing lets the held
  bytes through, as TCP retransmission would.

It counts the bytes each client sent, so a test can check that all of a worker's traffic went through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import defaultdict
from dataclasses import dataclass, field

#: int32 size, int16 api_key, int16 api_version, int32 correlation_id, int16 client_id length.
_HEADER = struct.Struct(">ihhih")


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
        link.tasks = [
            asyncio.ensure_future(self._pump(client_reader, broker_writer, gate, client_id)),
            asyncio.ensure_future(self._pump(broker_reader, client_writer, gate, None)),
        ]
        await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        link.close()
        self._links.remove(link)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event, counted: str | None
    ) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            await gate.wait()  # a silent cut holds the bytes here until it heals
            if counted is not None:
                self.bytes_from[counted] += len(data)
            writer.write(data)
            await writer.drain()
