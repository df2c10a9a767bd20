"""Tablets on a real worker: the official SignalR client and the plain protocol get every order."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import restaurant_id
from tests.integration.test_stream_core import created, publish, wait_for_orders
from tests.support.polling import eventually
from tests.support.signalr_node import NodeSignalRClient, ensure_node_modules
from tests.support.tablets import PlainTablet, expired_token, tablet_token
from tests.support.workers import Worker


@pytest.fixture(scope="session", autouse=True)
def node_modules() -> None:
    ensure_node_modules()


def signalr_config(worker: Worker, restaurant: str, **extra: Any) -> dict[str, Any]:
    return {
        "url": f"{worker.base_url}/partnerhub",
        "restaurantId": restaurant,
        "token": tablet_token(restaurant),
        **extra,
    }


def order_ids(snapshot: dict[str, Any]) -> list[str]:
    return sorted(o["orderId"] for o in snapshot["orders"])


# -- the official @microsoft/signalr client ---------------------------------------------


async def test_signalr_client_receives_snapshot_then_new_order(
    shared_worker: Worker, producer: AIOKafkaProducer
) -> None:
    restaurant = restaurant_id()
    await publish(producer, shared_worker.topics.created, created(restaurant, "before"))
    await wait_for_orders(shared_worker, restaurant, ["before"])
    client = await NodeSignalRClient.start(signalr_config(shared_worker, restaurant))
    try:
        snapshot = (await client.wait_for(lambda e: e["event"] == "PendingOrders" and e["args"][0]["orders"]))["args"][
            0
        ]
        assert order_ids(snapshot) == ["before"] and snapshot["restaurantId"] == restaurant

        order = str(uuid.uuid4())
        await publish(producer, shared_worker.topics.created, created(restaurant, order))
        pushed = (await client.wait_for(lambda e: e["event"] == "NewOrder" and e["args"][0]["orderId"] == order))[
            "args"
        ][0]
        assert pushed["restaurantId"] == restaurant and pushed["customerName"] == "Ana"
        assert pushed["items"][0] == {"name": "Pad Thai", "quantity": 2, "unitPrice": 9.5, "notes": "no peanuts"}
        assert pushed["totalPrice"] == 19.0 and pushed["createdAt"] and pushed["seq"] == snapshot["seq"] + 1

        result = await client.invoke("GetPendingOrders")
        assert order_ids(result) == sorted(["before", order]) and result["seq"] == pushed["seq"]

        await publish(producer, shared_worker.topics.accepted, {"OrderId": order, "RestaurantId": restaurant})
        accepted = await client.wait_for("OrderAccepted")
        assert accepted["args"][0]["orderId"] == order and accepted["args"][0]["seq"] == pushed["seq"] + 1
        assert await client.stop() == 0
    finally:
        await client.close()


async def test_signalr_client_with_skip_negotiation(shared_worker: Worker, producer: AIOKafkaProducer) -> None:
    restaurant = restaurant_id()
    client = await NodeSignalRClient.start(signalr_config(shared_worker, restaurant, skipNegotiation=True))
    try:
        await client.wait_for("PendingOrders")
        await publish(producer, shared_worker.topics.created, created(restaurant, "skip-1"))
        pushed = await client.wait_for("NewOrder")
        assert pushed["args"][0]["orderId"] == "skip-1"
        await client.invoke("Acknowledge", "skip-1")
        seen = await client.wait_for("OrderAcknowledged")
        assert seen["args"][0]["orderId"] == "skip-1" and seen["args"][0]["acknowledgedAt"]
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("token_for", "expected"),
    [("other-restaurant", "403"), ("expired", "401"), ("garbage", "401")],
)
async def test_signalr_client_with_bad_token_is_refused(shared_worker: Worker, token_for: str, expected: str) -> None:
    restaurant = restaurant_id()
    token = {
        "other-restaurant": tablet_token("someone-else"),
        "expired": expired_token(restaurant),
        "garbage": "not-a-jwt",
    }[token_for]
    client = await NodeSignalRClient.start(
        {**signalr_config(shared_worker, restaurant), "token": token}, expect_success=False
    )
    try:
        assert client.start_error is not None and expected in client.start_error, client.start_error
    finally:
        await client.close()


# -- refusals before the upgrade, seen over plain HTTP ---------------------------------------


@pytest.mark.parametrize(
    ("query", "headers", "status", "message"),
    [
        ("restaurantId=r1", {}, 401, "missing token"),
        ("", {"Authorization": "Bearer x"}, 400, "restaurantId"),
        ("restaurantId=r1", {"Authorization": "Basic abc"}, 401, "Bearer"),
        ("restaurantId=r1&access_token=bad", {}, 401, "malformed token"),
    ],
)
async def test_refusals_have_status_and_reason(
    shared_worker: Worker, query: str, headers: dict[str, str], status: int, message: str
) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/ws/partner", "/partnerhub"):
            async with session.get(f"{shared_worker.base_url}{path}?{query}", headers=headers) as response:
                assert response.status == status
                assert message in (await response.json())["error"]


async def test_by_default_only_the_workers_own_origin_may_negotiate_or_open_a_socket(shared_worker: Worker) -> None:
    """Secure default: a page on another origin is refused, the board's own origin gets credentialed CORS."""
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,x-requested-with,x-signalr-user-agent",
    }
    negotiate = f"{shared_worker.base_url}/partnerhub/negotiate?restaurantId=1"
    async with aiohttp.ClientSession() as session:
        async with session.options(negotiate, headers={"Origin": shared_worker.base_url, **preflight}) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == shared_worker.base_url
            assert response.headers["Access-Control-Allow-Credentials"] == "true"
            assert "x-signalr-user-agent" in response.headers["Access-Control-Allow-Headers"]
        async with session.options(negotiate, headers={"Origin": "http://evil.example", **preflight}) as response:
            assert response.status == 403 and "origin not allowed" in (await response.json())["error"]
            assert "Access-Control-Allow-Origin" not in response.headers
        token = tablet_token("1")
        socket = f"{shared_worker.base_url}/ws/partner?restaurantId=1&access_token={token}"
        async with session.get(socket, headers={"Origin": "http://evil.example"}) as response:
            assert response.status == 403


# -- the plain protocol ---------------------------------------------------------------------


async def test_plain_tablet_gets_snapshot_pushes_replies_and_resumes(
    shared_worker: Worker, producer: AIOKafkaProducer
) -> None:
    restaurant = restaurant_id()
    await publish(producer, shared_worker.topics.created, created(restaurant, "p-0"))
    await wait_for_orders(shared_worker, restaurant, ["p-0"])
    tablet = await PlainTablet.connect(shared_worker, restaurant)
    try:
        first = await tablet.wait_for(lambda m: m["type"] == "PendingOrders" and m["data"]["orders"])
        assert tablet.messages[0]["type"] == "PendingOrders"  # the snapshot comes first, always
        seq = first["seq"]

        await publish(producer, shared_worker.topics.created, created(restaurant, "p-1"))
        pushed = await tablet.wait_for("NewOrder")
        assert pushed["seq"] == seq + 1 and pushed["data"]["orderId"] == "p-1"

        await tablet.send({"type": "ack", "orderId": "p-1", "id": 7})
        reply = await tablet.wait_for("reply")
        assert reply["id"] == "7" and "error" not in reply
        seen = await tablet.wait_for("OrderAcknowledged")
        assert seen["seq"] == seq + 2

        mark = len(tablet.messages)
        await tablet.send({"type": "resume", "seq": seq})  # behind: gets a fresh snapshot
        snapshot = await tablet.wait_for("PendingOrders", since=mark)
        assert snapshot["seq"] == seq + 2 and sorted(o["orderId"] for o in snapshot["data"]["orders"]) == [
            "p-0",
            "p-1",
        ]
        acknowledged = {o["orderId"]: o["acknowledgedAt"] for o in snapshot["data"]["orders"]}
        assert acknowledged["p-1"] and acknowledged["p-0"] is None

        await tablet.send({"type": "getPendingOrders", "id": "q"})
        answer = await tablet.wait_for(lambda m: m["type"] == "reply" and m["id"] == "q")
        assert answer["result"]["seq"] == seq + 2
    finally:
        await tablet.close()


async def test_two_tablets_of_a_restaurant_both_receive_and_others_receive_nothing(
    shared_worker: Worker, producer: AIOKafkaProducer
) -> None:
    restaurant, other = restaurant_id(), restaurant_id()
    first = await PlainTablet.connect(shared_worker, restaurant)
    second = await PlainTablet.connect(shared_worker, restaurant)
    bystander = await PlainTablet.connect(shared_worker, other)
    try:
        for tablet in (first, second, bystander):
            await tablet.wait_for("PendingOrders")
        await publish(producer, shared_worker.topics.created, created(restaurant, "both"))
        await publish(producer, shared_worker.topics.created, created(other, "theirs"))
        for tablet in (first, second):
            assert (await tablet.wait_for("NewOrder"))["data"]["orderId"] == "both"
        assert (await bystander.wait_for("NewOrder"))["data"]["orderId"] == "theirs"
        assert [m["data"]["orderId"] for m in first.of_type("NewOrder")] == ["both"]
        assert [m["data"]["orderId"] for m in bystander.of_type("NewOrder")] == ["theirs"]
    finally:
        for tablet in (first, second, bystander):
            await tablet.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("this is not json", 4500),
        ('{"type": "subscribe"}', 4500),
        (b"\x00\x01binary", 4500),
        ("x" * 70_000, 1009),
    ],
    ids=["not-json", "unknown-type", "binary", "oversized"],
)
async def test_bad_plain_frames_close_only_that_socket(
    shared_worker: Worker, producer: AIOKafkaProducer, frame: str | bytes, code: int
) -> None:
    restaurant = restaurant_id()
    healthy = await PlainTablet.connect(shared_worker, restaurant)
    broken = await PlainTablet.connect(shared_worker, restaurant)
    try:
        await broken.wait_for("PendingOrders")
        if isinstance(frame, bytes):
            await broken.ws.send_bytes(frame)
        else:
            await broken.ws.send_str(frame)
        close_code, _ = await broken.wait_closed()
        assert close_code == code
        if code != 1009:
            error = broken.of_type("close")[-1]
            assert error["code"] == code and error["reconnect"] is False and error["reason"]

        await publish(producer, shared_worker.topics.created, created(restaurant, "still-flowing"))
        assert (await healthy.wait_for("NewOrder"))["data"]["orderId"] == "still-flowing"
    finally:
        await healthy.close()
        await broken.session.close()


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        (['{"protocol":"json","version":1}\x1e', '{"type":1,"target":"GetPendingOrders"'], None),
        (['{"protocol":"messagepack","version":1}\x1e'], "messagepack"),
        (['{"type":6}\x1e'], "handshake"),
    ],
    ids=["partial-record", "wrong-protocol", "no-handshake"],
)
async def test_bad_signalr_frames_get_a_protocol_error(
    shared_worker: Worker, frames: list[str], error: str | None
) -> None:
    restaurant = restaurant_id()
    url = f"{shared_worker.base_url.replace('http', 'ws')}/partnerhub?restaurantId={restaurant}"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"Authorization": f"Bearer {tablet_token(restaurant)}"}) as ws,
    ):
        received: list[str] = []
        for frame in frames:
            await ws.send_str(frame)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                received.append(message.data)
        text = "".join(received)
        if error is None:
            assert text.startswith("{}\x1e")  # handshake accepted first
            assert '"type":7' in text  # then a Close message for the broken record
        else:
            assert text.startswith('{"error":') and error in text.lower()


async def test_tokens_never_appear_in_the_worker_log(shared_worker: Worker) -> None:
    restaurant = restaurant_id()
    token = tablet_token(restaurant)
    tablet = await PlainTablet.connect(shared_worker, restaurant, token=token)
    try:
        await tablet.wait_for("PendingOrders")
    finally:
        await tablet.close()
    # Accepted handshakes are logged at DEBUG; a refused one (token for another restaurant) at INFO.
    other = restaurant_id()
    url = f"{shared_worker.base_url}/ws/partner?restaurantId={other}&access_token={token}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 403
    expected = f"GET /ws/partner?restaurantId={other}&access_token=[redacted] 403"

    async def worker_log() -> str:
        return shared_worker.log_path.read_text(errors="replace")

    log_text = await eventually(worker_log, lambda text: expected in text, what="the access log line")
    assert token not in log_text


async def test_socket_is_closed_when_its_token_expires_and_only_a_fresh_token_gets_back_in(
    shared_worker: Worker,
) -> None:
    """The close says "reconnect" (so a client renews its token, as with ASP.NET); the stale token gets 401."""
    restaurant = restaurant_id()
    stale = tablet_token(restaurant, ttl=2)
    tablet = await PlainTablet.connect(shared_worker, restaurant, token=stale)
    try:
        await tablet.wait_for("PendingOrders")
        code, _ = await tablet.wait_closed(timeout=30)
        assert code == 4006
        assert tablet.of_type("close")[-1]["reconnect"] is True
    finally:
        await tablet.session.close()
    url = f"{shared_worker.base_url}/ws/partner?restaurantId={restaurant}&access_token={stale}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 401 and "expired" in (await response.json())["error"]
    renewed = await PlainTablet.connect(shared_worker, restaurant, token=tablet_token(restaurant))
    try:
        await renewed.wait_for("PendingOrders")
    finally:
        await renewed.close()
