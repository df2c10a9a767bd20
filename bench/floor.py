"""The raw floor: the least a Kafka -> WebSocket bridge can do, as in the measurement note.

One process, one aiokafka consumer (``getmany``, fetch max wait 5 ms, no group, no commits) on the upstream
topics; per record one ``json.loads`` + one ``json.dumps`` of a plain-protocol frame, then ``put_nowait`` on a
bounded queue per socket of that restaurant; one writer task per socket does ``send_str``, so the consumer never
awaits a socket. No table, no Faust, no auth. Each socket first gets an empty ``PendingOrders`` frame so clients
can time their connect the same way for both systems.

``python -m bench.floor --bootstrap HOST:PORT --port WEB_PORT [--loop uvloop|asyncio]``; ``GET /readyz`` answers
200 once the consumer has its partitions. The loop follows partner-stream's (uvloop by default), so the
comparison is of the two bridges, not of two event loops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections import defaultdict

from aiohttp import WSMsgType, web
from aiokafka import AIOKafkaConsumer, TopicPartition

#: The same as partner-stream's web server (web/site.py); the floor stays free of partner-stream imports.
LISTEN_BACKLOG = 4096

QUEUE_SIZE = 256
FRAME_NAMES = {"order-created": "NewOrder", "order-accepted": "OrderAccepted", "order-rejected": "OrderRejected"}

log = logging.getLogger("floor")


class Floor:
    def __init__(self, bootstrap: str, topics: list[str], fetch_max_wait_ms: int) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.sockets: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)
        self.ready = False
        self.seq = 0
        self.dropped = 0
        #: Records consumed, for the bench's cost per event.
        self.consumed = 0

    async def consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            partitions = []
            for topic in self.topics:
                for _ in range(100):
                    found = consumer.partitions_for_topic(topic)
                    if found:
                        break
                    await consumer._client.force_metadata_update()
                    await asyncio.sleep(0.1)
                partitions += [TopicPartition(topic, p) for p in sorted(found or ())]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self.ready = True
            names = {topic: FRAME_NAMES.get(topic, "NewOrder") for topic in self.topics}
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, records in batches.items():
                    name = names[tp.topic]
                    self.consumed += len(records)
                    for record in records:
                        event = json.loads(record.value)
                        self.seq += 1
                        frame = json.dumps({"type": name, "seq": self.seq, "data": event})
                        for queue in self.sockets.get(str(event.get("RestaurantId")), ()):
                            try:
                                queue.put_nowait(frame)
                            except asyncio.QueueFull:
                                self.dropped += 1
        finally:
            await consumer.stop()

    async def socket(self, request: web.Request) -> web.StreamResponse:
        restaurant = request.query.get("restaurantId", "")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        queue.put_nowait(
            json.dumps({"type": "PendingOrders", "seq": 0, "data": {"restaurantId": restaurant, "orders": []}})
        )
        self.sockets[restaurant].add(queue)
        writer = asyncio.get_running_loop().create_task(self._write(ws, queue))
        try:
            async for message in ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
        finally:
            self.sockets[restaurant].discard(queue)
            if not self.sockets[restaurant]:
                del self.sockets[restaurant]
            writer.cancel()
        return ws

    @staticmethod
    async def _write(ws: web.WebSocketResponse, queue: asyncio.Queue[str]) -> None:
        try:
            while True:
                await ws.send_str(await queue.get())
        except (ConnectionResetError, RuntimeError):
            pass

    async def readyz(self, request: web.Request) -> web.Response:
        body = {"ready": self.ready, "dropped": self.dropped, "consumed": self.consumed}
        return web.json_response(body, status=200 if self.ready else 503)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=5)
    parser.add_argument("--topics", default="order-created,order-accepted,order-rejected")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    floor = Floor(args.bootstrap, args.topics.split(","), args.fetch_max_wait_ms)
    app = web.Application()
    app.router.add_get("/ws/partner", floor.socket)
    app.router.add_get("/readyz", floor.readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # partner-stream's listen backlog (web/site.py), so a storm compares the bridges, not their listen
    # queues: with aiohttp's default 128, 5,000 reconnects at once overflowed it and the dropped SYNs
    # waited out TCP's retransmit back-off (floor p99 10-17 s, 297-498 reconnects/s).
    await web.TCPSite(runner, "127.0.0.1", args.port, backlog=LISTEN_BACKLOG).start()
    await floor.consume()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main(arguments))
