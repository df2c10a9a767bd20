"""Token expiry with the official @microsoft/signalr client: a renewing tablet carries on, a stale one is refused.

The server closes a socket at its token's ``exp`` + 5 s leeway with a SignalR Close message that has
``allowReconnect: true`` (disconnect 4006). The client then runs its automatic-reconnect loop, which
asks ``accessTokenFactory`` again: a factory that mints a fresh token gets back in (and a fresh
snapshot); a factory that returns the same token gets 401 on every retry instead of a connect/close loop.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import restaurant_id
from tests.integration.test_stream_core import created, publish
from tests.support.signalr_node import Event, NodeSignalRClient, ensure_node_modules, renewing_token_config
from tests.support.tablets import tablet_token
from tests.support.workers import TEST_JWT_SECRET, Worker

TTL_SECONDS = 3
# First close comes at exp + 5 s leeway (~8 s after the connect), then the first retry after 1 s.
EXPIRY_TIMEOUT = TTL_SECONDS + 5 + 10


@pytest.fixture(scope="session", autouse=True)
def node_modules() -> None:
    ensure_node_modules()


def hub_config(worker: Worker, restaurant: str, **extra: Any) -> dict[str, Any]:
    return {"url": f"{worker.base_url}/partnerhub", "restaurantId": restaurant, **extra}


def closed_for_token_expiry(event: Event) -> bool:
    return event.get("event") == "reconnecting" and "token expired" in (event.get("error") or "")


def index_of(client: NodeSignalRClient, event: Event) -> int:
    return next(i for i, ev in enumerate(client.events) if ev is event)


async def test_renewing_client_reconnects_at_token_expiry_and_keeps_receiving_orders(
    shared_worker: Worker, producer: AIOKafkaProducer
) -> None:
    restaurant = restaurant_id()
    client = await NodeSignalRClient.start(
        hub_config(shared_worker, restaurant, **renewing_token_config(TEST_JWT_SECRET, ttl_seconds=TTL_SECONDS))
    )
    try:
        await client.wait_for("PendingOrders")
        minted_for_first_connect = client.tokens_minted
        assert minted_for_first_connect >= 1

        # The client asks its retry policy first (with the server's reason), then fires onreconnecting.
        first_retry = await client.wait_for("retry", timeout=EXPIRY_TIMEOUT)
        assert first_retry["previousRetryCount"] == 0 and "token expired" in first_retry["reason"], first_retry
        mark = index_of(client, first_retry)
        await client.wait_for(closed_for_token_expiry, since=mark)
        await client.wait_for("reconnected", since=mark, timeout=15)
        assert client.tokens_minted > minted_for_first_connect  # the reconnect asked the factory again
        # Back in: a fresh snapshot (it may be handled before onreconnected fires, hence since=mark).
        snapshot = (await client.wait_for("PendingOrders", since=mark))["args"][0]
        assert snapshot["restaurantId"] == restaurant

        order = str(uuid.uuid4())
        await publish(producer, shared_worker.topics.created, created(restaurant, order))
        pushed = await client.wait_for(
            lambda e: e["event"] == "NewOrder" and e["args"][0]["orderId"] == order, since=mark
        )
        assert pushed["args"][0]["seq"] == snapshot["seq"] + 1
        assert client.events_named("closed") == []  # never gave up
        assert await client.stop() == 0
    finally:
        await client.close()


async def test_client_reusing_its_expired_token_is_refused_instead_of_looping(shared_worker: Worker) -> None:
    restaurant = restaurant_id()
    stale = tablet_token(restaurant, ttl=2)
    client = await NodeSignalRClient.start(
        hub_config(shared_worker, restaurant, token=stale, retryForever={"baseMs": 1000, "maxMs": 5000})
    )
    try:
        await client.wait_for("PendingOrders")
        expired = await client.wait_for(closed_for_token_expiry, timeout=EXPIRY_TIMEOUT)
        mark = index_of(client, expired)
        # Two refused retries in a row: the stale token gets 401, it is not let in to be closed again.
        for attempt in (1, 2):
            refused = await client.wait_for(
                lambda e, n=attempt: e["event"] == "retry" and e["previousRetryCount"] == n, since=mark, timeout=15
            )
            assert "401" in refused["reason"], refused
        assert client.events_named("reconnected") == []
        assert len(client.events_named("reconnecting")) == 1
        assert len(client.events_named("PendingOrders")) == 1
    finally:
        await client.close()
