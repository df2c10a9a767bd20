"""Tablets come back after a worker restart with every pending order; a stuck tablet harms nobody."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from partner_stream.dev.broker import EmbeddedBroker
from tests.conftest import new_worker, restaurant_id
from tests.integration.test_hub import node_modules, signalr_config  # noqa: F401  (fixture)
from tests.integration.test_stream_core import created, publish, wait_for_orders
from tests.support.polling import eventually
from tests.support.signalr_node import NodeSignalRClient
from tests.support.tablets import PlainTablet, tablet_token
from tests.support.workers import Worker


@pytest.fixture(scope="module")
async def worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> AsyncIterator[Worker]:
    worker = new_worker(
        broker,
        tmp_path_factory.mktemp("resume"),
        artifacts_dir,
        "resume",
        extra_env={
            "PARTNER_STREAM_HUB_QUEUE_SIZE": "16",
            # Long enough that only falling behind (RESYNC) can end the stuck socket in this test.
            "PARTNER_STREAM_HUB_CLIENT_TIMEOUT": "600",
        },
    )
    await worker.start()
    yield worker
    await worker.stop()


def board_after(events: list[dict], mark: int) -> tuple[list[str], int] | None:
    """What a SignalR tablet shows from ``events[mark:]``: its last snapshot, then the pushes after it.

    A restarted worker serves tablets as soon as it has recovered its table, which can be before it
    has caught up with what was published while it was down; the rest then arrives as pushes.
    """
    shown: set[str] | None = None
    seq = 0
    for event in events[mark:]:
        name = event.get("event")
        if name == "PendingOrders":
            shown, seq = {o["orderId"] for o in event["args"][0]["orders"]}, event["args"][0]["seq"]
        elif shown is not None and name in ("NewOrder", "OrderAccepted", "OrderRejected"):
            change = event["args"][0]
            if change["seq"] > seq:
                (shown.add if name == "NewOrder" else shown.discard)(change["orderId"])
                seq = change["seq"]
    return None if shown is None else (sorted(shown), seq)


async def test_signalr_client_reconnects_after_restart_with_orders_published_while_away(
    worker: Worker, producer: AIOKafkaProducer
) -> None:
    restaurant = restaurant_id()
    client = await NodeSignalRClient.start(signalr_config(worker, restaurant))
    plain = await PlainTablet.connect(worker, restaurant)
    try:
        await client.wait_for("PendingOrders")
        await publish(producer, worker.topics.created, created(restaurant, "kept"))
        await publish(producer, worker.topics.created, created(restaurant, "accepted-while-away"))
        await client.wait_for(lambda e: e["event"] == "NewOrder" and e["args"][0]["orderId"] == "accepted-while-away")

        await worker.stop()  # graceful: tablets are told to reconnect
        await client.wait_for("reconnecting")
        assert (await plain.wait_closed())[0] == 4000  # SHUTDOWN: reconnect
        await publish(producer, worker.topics.created, created(restaurant, "created-while-away"))
        await publish(producer, worker.topics.accepted, {"OrderId": "accepted-while-away", "RestaurantId": restaurant})
        mark = len(client.events)
        await worker.start()

        await client.wait_for("reconnected", since=mark, timeout=60)
        expected = ["created-while-away", "kept"]

        async def board() -> tuple[list[str], int] | None:
            return board_after(client.events, mark)

        _, seq = await eventually(board, lambda shown: shown is not None and shown[0] == expected, timeout=30)
        assert seq >= 4

        again = await PlainTablet.connect(worker, restaurant)
        try:
            first = await again.wait_for("PendingOrders")
            assert sorted(o["orderId"] for o in first["data"]["orders"]) == expected
        finally:
            await again.close()
    finally:
        await client.close()
        await plain.session.close()


def open_unread_socket(worker: Worker, restaurant: str) -> socket.socket:
    """A WebSocket client that completes the upgrade and then never reads again (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", worker.web_port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws/partner?restaurantId={restaurant}&access_token={tablet_token(restaurant)} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{worker.web_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81, 0x80 | len(payload)]) if len(payload) < 126 else b""
    assert header, "keep control messages short"
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_tablet_that_never_reads_does_not_delay_others_and_is_told_to_resync(
    worker: Worker, producer: AIOKafkaProducer
) -> None:
    restaurant = restaurant_id()
    for i in range(30):
        body = created(restaurant, f"big-{i}")
        body["Items"][0]["Notes"] = "x" * 2000  # makes every snapshot ~70 KB
        await publish(producer, worker.topics.created, body)
    await wait_for_orders(worker, restaurant, [f"big-{i}" for i in range(30)])

    healthy = await PlainTablet.connect(worker, restaurant)
    stuck = open_unread_socket(worker, restaurant)
    try:
        # The stuck tablet asks for snapshot after snapshot and reads none of them.
        request = masked_text_frame('{"type":"getPendingOrders"}')
        for _ in range(200):
            stuck.sendall(request)
        await publish(producer, worker.topics.created, created(restaurant, "during-stall"))
        assert (await healthy.wait_for("NewOrder"))["data"]["orderId"] == "during-stall"

        other = restaurant_id()
        await publish(producer, worker.topics.created, created(other, "agent-not-blocked"))
        await wait_for_orders(worker, other, ["agent-not-blocked"])

        # The server gives up on the stuck socket: reading it now ends in EOF or a reset.
        stuck.setblocking(False)
        loop = asyncio.get_running_loop()

        async def drain() -> None:
            while True:
                try:
                    chunk = await loop.sock_recv(stuck, 65536)
                except ConnectionResetError:
                    return
                if not chunk:
                    return

        await asyncio.wait_for(drain(), 60)
    finally:
        stuck.close()
        await healthy.close()
