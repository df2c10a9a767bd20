"""The socket endpoint over real HTTP (aiohttp test server): what a tablet sees when ownership moves mid-handshake."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application

from partner_stream.settings import Settings
from partner_stream_tables.model import RestaurantOrders
from partner_stream_web import negotiations as negotiations_module
from partner_stream_web.auth import mint_tablet_token
from partner_stream_web.endpoints import TabletEndpoints
from partner_stream_web.hub import Hub
from partner_stream_web.placement import Owner, Placement
from partner_stream_web.protocols.disconnects import NOT_OWNER

SECRET = "endpoint-test-secret-that-is-long-enough-0123456789"


async def no_ack(restaurant_id: str, order_id: str) -> None:
    raise AssertionError("no acknowledgement expected")


@pytest.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[TestClient, Hub, list[Placement]]]:
    """A test server with the tablet endpoints; ``answers`` are what successive ownership lookups return."""
    answers: list[Placement] = []

    def locate(restaurant_id: str) -> Owner:
        placement = answers.pop(0) if answers else Placement.LOCAL
        return Owner(placement, url=None) if placement is not Placement.UNAVAILABLE else Owner(placement, reason="x")

    async def confirm_owner(url: object, restaurant_id: str) -> object:
        raise AssertionError("no redirect expected")

    hub = Hub(read_snapshot=RestaurantOrders.empty, read_version=lambda r: None, submit_ack=no_ack, owns=lambda r: True)
    settings = Settings(jwt_secret=SECRET, jwt_public_key=None, cors_origins=["*"])
    app = Application()
    TabletEndpoints(hub, settings, locate=locate, confirm_owner=confirm_owner).install(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, hub, answers
    await client.close()


async def test_a_socket_whose_restaurant_moved_during_the_handshake_is_sent_to_reconnect(
    served: tuple[TestClient, Hub, list[Placement]],
) -> None:
    client, hub, answers = served
    answers.extend([Placement.LOCAL, Placement.REMOTE])  # owner at admission, not any more at attach
    token = mint_tablet_token("r1", SECRET)
    ws = await client.ws_connect(f"/ws/partner?restaurantId=r1&access_token={token}")
    frames: list[Any] = []

    async def read_until_closed() -> None:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                frames.append(message.json())

    with contextlib.suppress(TimeoutError):  # a deadline: without the re-check the socket stays open
        await asyncio.wait_for(read_until_closed(), timeout=20)
    assert frames[-1]["type"] == "close" and frames[-1]["code"] == NOT_OWNER.code and frames[-1]["reconnect"]
    assert not any(f["type"] == "PendingOrders" for f in frames)  # never served a snapshot it would not keep fresh
    assert ws.close_code == NOT_OWNER.code
    assert hub.connections() == []


async def test_a_signalr_socket_whose_restaurant_moved_during_the_handshake_is_started_then_closed(
    served: tuple[TestClient, Hub, list[Placement]],
) -> None:
    """The handshake reply goes alone, then the Close: in one frame the official client's start() would fail."""
    client, hub, answers = served
    answers.extend([Placement.LOCAL, Placement.REMOTE])  # owner at admission, not any more after the handshake
    token = mint_tablet_token("r1", SECRET)
    ws = await client.ws_connect(f"/partnerhub?restaurantId=r1&access_token={token}")
    await ws.send_str('{"protocol":"json","version":1}\x1e')
    assert (await ws.receive_str(timeout=10)) == "{}\x1e"
    close = await ws.receive_str(timeout=10)
    assert close.startswith('{"type":7') and close.count("\x1e") == 1 and '"allowReconnect":true' in close
    assert (await ws.receive(timeout=10)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert hub.connections() == []


async def test_a_socket_on_the_owner_gets_its_snapshot(served: tuple[TestClient, Hub, list[Placement]]) -> None:
    client, hub, _ = served
    token = mint_tablet_token("r2", SECRET)
    ws = await client.ws_connect(f"/ws/partner?restaurantId=r2&access_token={token}")
    first = await ws.receive_json(timeout=10)
    assert first["type"] == "PendingOrders" and first["data"]["restaurantId"] == "r2"
    assert [c.restaurant_id for c in hub.connections()] == ["r2"]
    await ws.close()


async def test_a_negotiation_expires_after_its_ttl_and_newer_ones_still_connect(
    served: tuple[TestClient, Hub, list[Placement]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection token is good for the negotiation TTL; expiring old ones never drops a newer one."""
    client, _, _ = served
    token = mint_tablet_token("r3", SECRET)
    clock = [1000.0]
    monkeypatch.setattr(negotiations_module.time, "monotonic", lambda: clock[0])
    ttl = Settings(jwt_secret=SECRET).hub_negotiation_ttl

    async def negotiate() -> str:
        response = await client.post(f"/partnerhub/negotiate?negotiateVersion=1&restaurantId=r3&access_token={token}")
        assert response.status == 200
        return (await response.json())["connectionToken"]

    oldest = await negotiate()
    old = await negotiate()
    clock[0] += ttl / 2
    fresh = await negotiate()
    clock[0] += ttl / 2 + 1  # oldest and old are past their TTL, fresh is not

    # Refused when used late, whether or not a newer negotiation has swept it away yet.
    expired = await client.get(f"/partnerhub?restaurantId=r3&id={oldest}&access_token={token}")
    assert expired.status == 404 and "No Connection with that ID" in await expired.text()
    await negotiate()  # sweeps the expired ones
    expired = await client.get(f"/partnerhub?restaurantId=r3&id={old}&access_token={token}")
    assert expired.status == 404 and "No Connection with that ID" in await expired.text()
    ws = await client.ws_connect(f"/partnerhub?restaurantId=r3&id={fresh}&access_token={token}")
    await ws.send_str('{"protocol":"json","version":1}\x1e')
    reply, snapshot, rest = (await ws.receive_str(timeout=10)).split("\x1e")  # one frame: the reply, then the snapshot
    assert reply == "{}" and '"target":"PendingOrders"' in snapshot and rest == ""
    await ws.close()


@pytest.mark.parametrize("restaurant", ["r" * 129, "a%2Fb", "r%00"])
@pytest.mark.parametrize("path", ["/ws/partner", "/partnerhub", "/partnerhub/negotiate"])
async def test_a_restaurant_id_no_restaurant_can_have_is_refused_before_anything_else(
    served: tuple[TestClient, Hub, list[Placement]], restaurant: str, path: str
) -> None:
    """It never reaches the token check, the ownership lookup or its cache: a clean 400 with the rule."""
    client, _, answers = served
    answers.append(Placement.UNAVAILABLE)  # would be 503 if the lookup ran
    method = client.post if path.endswith("negotiate") else client.get
    response = await method(f"{path}?restaurantId={restaurant}&access_token=whatever")
    assert response.status == 400
    assert "restaurantId" in (await response.json())["error"]
