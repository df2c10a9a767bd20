"""The relay's refusals: raised before any upgrade, so the endpoint answers them like its own."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from partner_stream.dev.broker import free_port
from partner_stream_web.protocols.disconnects import NOT_OWNER, SHUTDOWN
from partner_stream_web.relay import Relay, RelayRefused


async def test_an_unreachable_owner_is_a_retryable_refusal() -> None:
    relay = Relay(max_message_bytes=65536)
    request = make_mocked_request("GET", "/ws/partner?restaurantId=r1", headers={"Authorization": "Bearer t"})
    try:
        with pytest.raises(RelayRefused) as refused:
            await relay.serve(request, URL(f"http://127.0.0.1:{free_port()}"), "r1")
    finally:
        await relay.close()
    assert refused.value.status == 503
    assert "unreachable" in refused.value.reason
    assert relay.active == 0


class FakeClientSocket:
    def __init__(self, hangs: bool = False) -> None:
        self.hangs = hangs
        self.closed_with: tuple[int, bytes] | None = None

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed_with = (code, message)
        if self.hangs:  # a tablet that never answers the close frame
            await asyncio.Event().wait()


async def test_shutdown_tells_every_relayed_tablet_to_reconnect_without_waiting_on_slow_ones() -> None:
    relay = Relay(max_message_bytes=65536)
    slow, quick = FakeClientSocket(hangs=True), FakeClientSocket()
    owner = URL("http://127.0.0.1:1")
    relay._clients.update({slow: ("r1", owner), quick: ("r2", owner)})  # type: ignore[dict-item]
    # A deadline, not a timing claim: closing one by one would wait on the silent tablet forever.
    await asyncio.wait_for(relay.close_all(timeout=0.2), timeout=30)
    assert slow.closed_with == quick.closed_with == (SHUTDOWN.code, SHUTDOWN.reason.encode())


async def test_only_tablets_whose_restaurant_changed_owner_are_closed_on_a_rebalance() -> None:
    relay = Relay(max_message_bytes=65536)
    moved, stayed = FakeClientSocket(), FakeClientSocket()
    old, new = URL("http://127.0.0.1:1"), URL("http://127.0.0.1:2")
    relay._clients.update({moved: ("r1", old), stayed: ("r2", new)})  # type: ignore[dict-item]
    owners = {"r1": new, "r2": new}
    closing = relay.close_where(lambda restaurant, owner: owners[restaurant] != owner, NOT_OWNER)
    await asyncio.gather(*closing)
    assert moved.closed_with == (NOT_OWNER.code, NOT_OWNER.reason.encode()) and stayed.closed_with is None


async def test_the_owners_close_code_and_reason_reach_the_tablet() -> None:
    """A handover closes the owner's socket with 4002 and a reason: the relayed tablet must see both."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    async def owner_socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type":"PendingOrders"}')
        await ws.close(code=NOT_OWNER.code, message=NOT_OWNER.reason.encode())
        return ws

    owner_app = web.Application()
    owner_app.router.add_get("/ws/partner", owner_socket)
    owner = TestServer(owner_app)
    await owner.start_server()
    relay = Relay(max_message_bytes=65536)

    async def relayed(request: web.Request) -> web.StreamResponse:
        return await relay.serve(request, URL(str(owner.make_url("/"))), "r1")

    front_app = web.Application()
    front_app.router.add_get("/ws/partner", relayed)
    front = TestClient(TestServer(front_app))
    await front.start_server()
    try:
        ws = await front.ws_connect("/ws/partner?restaurantId=r1")
        assert (await ws.receive_str(timeout=5)) == '{"type":"PendingOrders"}'
        closing = await ws.receive(timeout=5)
        assert closing.data == NOT_OWNER.code and closing.extra == NOT_OWNER.reason
    finally:
        await front.close()
        await relay.close()
        await owner.close()
