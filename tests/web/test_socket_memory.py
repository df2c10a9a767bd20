"""What an idle tablet socket keeps on the server (issue #14, goal 5), over a real aiohttp server.

After the upgrade the socket must not keep aiohttp's HTTP parser, its request queue, the sent
response headers, the parsed query (the token) or its last received message; its token expiry
is one entry in a shared heap rather than a timer of its own. And it must still work as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from importlib.metadata import version
from types import FrameType
from typing import Any

import pytest
from aiohttp import WSMessage, WSMsgType
from aiohttp.base_protocol import BaseProtocol
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application
from aiohttp.web_protocol import RequestHandler
from multidict import MultiDictProxy

from partner_stream.settings import Settings
from partner_stream_tables.model import RestaurantOrders
from partner_stream_web import aiohttp_patches
from partner_stream_web.auth import mint_tablet_token
from partner_stream_web.connection import Connection
from partner_stream_web.endpoints import TabletEndpoints
from partner_stream_web.hub import Hub
from partner_stream_web.placement import Owner, Placement
from partner_stream_web.protocols.disconnects import TOKEN_EXPIRED
from partner_stream_web.token_expiry import TokenExpiries

SECRET = "socket-memory-test-secret-that-is-long-enough-0123456789"
RS = "\x1e"


async def no_ack(restaurant_id: str, order_id: str) -> None:
    raise AssertionError("no acknowledgement expected")


class Served:
    def __init__(self, client: TestClient, hub: Hub, endpoints: TabletEndpoints) -> None:
        self.client, self.hub, self.endpoints = client, hub, endpoints

    async def plain(self, restaurant: str, **token: Any) -> Any:
        ws = await self.client.ws_connect(
            f"/ws/partner?restaurantId={restaurant}&access_token={mint_tablet_token(restaurant, SECRET, **token)}"
        )
        assert (await ws.receive_json(timeout=10))["type"] == "PendingOrders"
        return ws

    async def signalr(self, restaurant: str) -> Any:
        token = mint_tablet_token(restaurant, SECRET)
        negotiated = await self.client.post(
            f"/partnerhub/negotiate?negotiateVersion=1&restaurantId={restaurant}&access_token={token}"
        )
        connection_token = (await negotiated.json())["connectionToken"]
        ws = await self.client.ws_connect(
            f"/partnerhub?restaurantId={restaurant}&id={connection_token}&access_token={token}"
        )
        await ws.send_str('{"protocol":"json","version":1}' + RS)
        received = ""
        while "PendingOrders" not in received:
            received += await ws.receive_str(timeout=10)
        assert received.startswith("{}" + RS)
        return ws

    def connection(self, restaurant: str) -> Connection:
        (connection,) = self.hub.connections(restaurant)
        return connection


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    hub = Hub(read_snapshot=RestaurantOrders.empty, read_version=lambda r: None, submit_ack=no_ack, owns=lambda r: True)
    settings = Settings(jwt_secret=SECRET, jwt_public_key=None, cors_origins=["*"])
    endpoints = TabletEndpoints(
        hub,
        settings,
        locate=lambda r: Owner(Placement.LOCAL, url=None),
        confirm_owner=None,  # type: ignore[arg-type]
    )
    app = Application()
    endpoints.install(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield Served(client, hub, endpoints)
    await client.close()


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def socket_frames() -> list[FrameType]:
    """The suspended frames of every running ``TabletEndpoints.socket``."""
    frames = []
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        while coro is not None:
            if getattr(coro, "cr_code", None) is TabletEndpoints.socket.__code__:
                frames.append(coro.cr_frame)
            coro = getattr(coro, "cr_await", None)
    return frames


# -- the version check ---------------------------------------------------------------------------


def test_the_installed_aiohttp_is_the_one_the_releases_were_written_for() -> None:
    assert {name: version(name) for name in aiohttp_patches.WRITTEN_FOR} == aiohttp_patches.WRITTEN_FOR
    assert aiohttp_patches.version_problem() is None


def test_another_version_turns_the_releases_off_and_says_where_to_look() -> None:
    problem = aiohttp_patches.version_problem({"aiohttp": "3.15.0"})
    assert problem is not None and "aiohttp 3.15.0 (written for 3.14.5)" in problem
    assert "web/aiohttp_patches.py" in problem


def test_the_private_attributes_the_release_touches_still_exist() -> None:
    assert {"_parser", "_upgraded"} <= set(BaseProtocol.__slots__)
    assert {"_messages", "_payload_parser"} <= set(RequestHandler.__slots__)


# -- what an idle socket keeps -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["plain", "signalr"])
async def test_an_idle_socket_keeps_no_http_state(served: Served, protocol: str) -> None:
    ws = await (served.plain("m1") if protocol == "plain" else served.signalr("m1"))
    connection = served.connection("m1")
    before = connection.last_received
    await asyncio.sleep(0.01)
    await ws.send_str('{"type":"ping"}' if protocol == "plain" else '{"type":6}' + RS)  # one keep-alive
    await until(lambda: connection.last_received > before)
    server_ws = connection.ws
    request: Any = server_ws._req
    handler: Any = request.protocol
    assert handler._parser is None  # the HTTP parser and its lists of the request's headers
    assert handler._messages == ()  # the pipelined-request deque
    assert server_ws._writer.get_random_bits is aiohttp_patches._SHARED_RANDOM_BITS
    assert len(server_ws.headers) == 0  # sent with the 101
    assert "query" not in request._cache and "query" not in request.rel_url._cache  # the token, parsed
    await ws.close()
    await until(lambda: not served.hub.connections())


async def test_the_socket_handler_frame_keeps_no_message_query_or_admission(served: Served) -> None:
    ws = await served.plain("m2")
    await ws.send_str('{"type":"ping"}')
    await ws.send_str('{"type":"getPendingOrders","id":"1"}')
    assert (await ws.receive_json(timeout=10))["type"] == "reply"
    (frame,) = socket_frames()
    kept = frame.f_locals
    assert not {"admitted", "owner", "codec", "query", "message"} & kept.keys()
    assert not any(isinstance(value, (WSMessage, MultiDictProxy, tuple)) for value in kept.values())
    await ws.close()


async def test_a_released_socket_still_pings_answers_and_closes(served: Served) -> None:
    plain, signalr = await served.plain("m3"), await served.signalr("m3")
    served.hub.ping_all()
    assert (await plain.receive_json(timeout=10)) == {"type": "ping"}
    assert (await signalr.receive_str(timeout=10)) == '{"type":6}' + RS
    await plain.send_str('{"type":"getPendingOrders","id":"7"}')
    reply = await plain.receive_json(timeout=10)
    assert reply["type"] == "reply" and reply["id"] == "7"
    await plain.close()
    await signalr.close()
    await until(lambda: not served.hub.connections())
    assert len(served.endpoints.expiries) == 0


async def test_with_another_aiohttp_nothing_is_released_and_sockets_work(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(aiohttp_patches, "_PROBLEM", "aiohttp 9.9 (written for 3.14.5): review")
    monkeypatch.setattr(aiohttp_patches, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=aiohttp_patches.__name__):
        first, second = await served.plain("m4"), await served.plain("m4")
    handler: Any = served.hub.connections("m4")[0].ws._req.protocol
    assert handler._parser is not None and handler._messages == type(handler._messages)()
    assert [r.getMessage() for r in caplog.records] == ["aiohttp 9.9 (written for 3.14.5): review"]  # once
    served.hub.ping_all()
    assert (await first.receive_json(timeout=10)) == {"type": "ping"}
    await first.close()
    await second.close()


async def test_a_socket_is_closed_when_its_token_expires(served: Served) -> None:
    # exp 4 s ago: still inside the verifier's 5 s leeway, so accepted and closed at its end, within a second.
    ws = await served.plain("m5", ttl_seconds=-4)
    assert len(served.endpoints.expiries) == 1
    frames = []
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            frames.append(message.json())
    assert frames[-1]["type"] == "close" and frames[-1]["code"] == TOKEN_EXPIRED.code
    assert ws.close_code == TOKEN_EXPIRED.code
    await until(lambda: not served.hub.connections())
    assert len(served.endpoints.expiries) == 0


# -- the shared expiry timer ---------------------------------------------------------------------


class Tablet:
    def __init__(self) -> None:
        self.closed_at: float | None = None

    def disconnect(self, reason: object) -> None:
        assert reason is TOKEN_EXPIRED and self.closed_at is None
        self.closed_at = asyncio.get_running_loop().time()


async def test_expiries_close_each_socket_at_its_own_deadline() -> None:
    expiries = TokenExpiries()
    loop = asyncio.get_running_loop()
    start = loop.time()
    late, early, never = Tablet(), Tablet(), Tablet()
    expiries.add(0.2, late)  # type: ignore[arg-type]
    expiries.add(0.05, early)  # type: ignore[arg-type]  # earlier than the armed timer: re-armed
    expiries.add(3600, never)  # type: ignore[arg-type]
    await asyncio.sleep(0.12)
    assert early.closed_at is not None and late.closed_at is None
    await asyncio.sleep(0.15)
    assert late.closed_at is not None and never.closed_at is None
    assert early.closed_at - start >= 0.05 - TokenExpiries.SLACK
    assert late.closed_at - start >= 0.2 - TokenExpiries.SLACK
    assert len(expiries) == 1


async def test_a_cancelled_expiry_lets_go_of_its_socket_and_never_fires() -> None:
    expiries = TokenExpiries()
    gone, stays = Tablet(), Tablet()
    entry = expiries.add(0.02, gone)  # type: ignore[arg-type]
    expiries.add(0.05, stays)  # type: ignore[arg-type]
    expiries.cancel(entry)
    expiries.cancel(entry)  # twice is harmless
    assert gone not in entry and len(expiries) == 1
    await asyncio.sleep(0.1)
    assert gone.closed_at is None and stays.closed_at is not None
    assert len(expiries) == 0


async def test_cancelled_entries_are_swept_and_the_timer_stops_when_none_is_left() -> None:
    expiries = TokenExpiries()
    entries = [expiries.add(3600 + i, Tablet()) for i in range(10)]  # type: ignore[arg-type]
    for entry in entries[:6]:
        expiries.cancel(entry)
    assert len(expiries._heap) <= 5 and len(expiries) == 4  # rebuilt once most were cancelled
    for entry in entries[6:]:
        expiries.cancel(entry)
    assert expiries._heap == [] and expiries._timer is None
