"""Several workers, one truth: tablets reach their restaurant's owner through any address,
and keep every pending order across a crash, a scale-out and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from partner_stream.dev.broker import EmbeddedBroker
from tests.conftest import new_worker, restaurant_id
from tests.integration.test_hub import node_modules, signalr_config  # noqa: F401  (fixture)
from tests.integration.test_stream_core import created, publish
from tests.support.polling import eventually
from tests.support.signalr_node import NodeSignalRClient
from tests.support.tablets import LiveBoard, PlainTablet, tablet_token
from tests.support.workers import Worker


class Cluster:
    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers

    def add(self, worker: Worker) -> Worker:
        self.workers.append(worker)
        return worker

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.process is not None and w.process.poll() is None]

    async def settled(self, timeout: float = 90.0) -> dict[str, Any]:
        """Wait until every live worker is ready and together they own every partition exactly once."""
        entry = self.live()[0]

        async def status() -> dict[str, Any]:
            code, body = await entry.get_json("/api/cluster")
            assert code == 200, body
            return body

        def complete(body: dict[str, Any]) -> bool:
            workers = body["workers"]
            if len(workers) != len(self.live()) or any(not w.get("ready") for w in workers):
                return False
            active = sorted(p for w in workers for p in w["activePartitions"])
            return active == list(range(entry.partitions))

        return await eventually(status, complete, timeout=timeout, interval=0.5, what="a settled cluster")

    async def owner_of(self, restaurant: str) -> str:
        code, body = await self.live()[0].get_json(f"/api/restaurants/{restaurant}/endpoint")
        assert code == 200, body
        return body["worker"]


#: The routing probe below negotiates ten times a second per restaurant and never opens the sockets: lift the
#: per-restaurant cap of unused negotiations (tests/integration/test_hostile_clients.py tests the cap itself).
PROBE_ENV = {"PARTNER_STREAM_HUB_MAX_NEGOTIATIONS_PER_RESTAURANT": "100000"}


async def start_pair(
    broker: EmbeddedBroker, base: Path, artifacts_dir: Path, name: str, extra_env: dict[str, str]
) -> Cluster:
    """Two workers of one app (group, topics), each with its own data dir, started and settled."""
    first = new_worker(broker, base, artifacts_dir, f"{name}-a", extra_env=extra_env)
    second = Worker(
        broker_url=broker.url,
        app_id=first.app_id,
        topics=first.topics,
        data_dir=base / f"{name}-b-data",
        log_path=artifacts_dir / f"worker-{first.app_id}-b.log",
        extra_env=dict(extra_env),
    )
    await asyncio.gather(first.start(), second.start())
    cluster = Cluster([first, second])
    await cluster.settled()
    return cluster


@pytest.fixture(scope="module")
async def cluster(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> AsyncIterator[Cluster]:
    cluster = await start_pair(broker, tmp_path_factory.mktemp("cluster"), artifacts_dir, "cluster", PROBE_ENV)
    yield cluster
    for worker in cluster.live():
        await worker.stop()


def sibling(cluster: Cluster, name: str) -> Worker:
    first = cluster.workers[0]
    return first.sibling(name, first.data_dir.parent / f"{name}-data", extra_env=PROBE_ENV)


async def restaurants_on_every_worker(cluster: Cluster, count: int = 8) -> dict[str, str]:
    """Restaurant IDs whose owners cover every live worker: {restaurant: owner public URL}."""
    owners: dict[str, str] = {}
    for _ in range(200):
        restaurant = restaurant_id()
        owners[restaurant] = await cluster.owner_of(restaurant)
        if len(owners) >= count and len(set(owners.values())) == len(cluster.live()):
            return owners
    raise AssertionError(f"could not spread restaurants over the workers: {owners}")


def restaurants_on_every_partition(partitions: int, per_partition: int = 2) -> dict[str, str]:
    """Restaurant IDs covering every partition, placed by the producer's partitioner (murmur2, like Java's)."""
    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    chosen: dict[int, list[str]] = {p: [] for p in every}
    while any(len(ids) < per_partition for ids in chosen.values()):
        restaurant = restaurant_id()
        partition = partitioner(restaurant.encode(), every, every)
        if len(chosen[partition]) < per_partition:
            chosen[partition].append(restaurant)
    return {r: f"partition {p}" for p, ids in chosen.items() for r in ids}


async def test_tablets_reach_their_owner_through_one_address(cluster: Cluster, producer: AIOKafkaProducer) -> None:
    entry = cluster.workers[0]
    owners = await restaurants_on_every_worker(cluster, count=4)
    clients: list[tuple[str, Any]] = []
    try:
        for restaurant in owners:
            negotiated = await NodeSignalRClient.start(signalr_config(entry, restaurant))
            skipping = await NodeSignalRClient.start(signalr_config(entry, restaurant, skipNegotiation=True))
            plain = await PlainTablet.connect(entry, restaurant)
            clients += [(restaurant, negotiated), (restaurant, skipping), (restaurant, plain)]
        for _, client in clients:
            await client.wait_for("PendingOrders")
        for restaurant in owners:
            await publish(producer, entry.topics.created, created(restaurant, f"for-{restaurant}"))
        for restaurant, client in clients:
            if isinstance(client, PlainTablet):
                pushed = (await client.wait_for("NewOrder"))["data"]
            else:
                pushed = (await client.wait_for("NewOrder"))["args"][0]
            assert pushed["orderId"] == f"for-{restaurant}"

        # The negotiated SignalR clients of remote restaurants were redirected to their owner's own address.
        # Every worker answers the fan-out (a worker busy past its 5 s timeout is reported, not counted).
        _, status = await eventually(
            lambda: entry.get_json("/api/cluster"),
            lambda answer: answer[0] == 200 and all("relayedConnections" in w for w in answer[1]["workers"]),
            what="every worker's status",
        )
        relayed = {w["internalUrl"]: w["relayedConnections"] for w in status["workers"]}
        remote = [r for r, owner in owners.items() if owner.rstrip("/") != entry.base_url]
        assert remote, "some restaurant must live on the other worker"
        assert sum(relayed.values()) >= 2 * len(remote)  # skipNegotiation + plain sockets are relayed
    finally:
        for _, client in clients:
            await client.close()


async def test_operator_api_answers_from_any_worker_and_refuses_tablet_tokens(
    cluster: Cluster, producer: AIOKafkaProducer
) -> None:
    owners = await restaurants_on_every_worker(cluster, count=2)
    for restaurant in owners:
        await publish(producer, cluster.workers[0].topics.created, created(restaurant, "op-1"))
    for worker, restaurant in itertools.product(cluster.live(), owners):
        snapshot = await eventually(
            lambda w=worker, r=restaurant: w.get_json(f"/api/restaurants/{r}/pending-orders"),
            lambda answer: answer[0] == 200 and [o["orderId"] for o in answer[1]["orders"]] == ["op-1"],
            what="pending orders from any worker",
        )
        assert snapshot[1]["restaurantId"] == restaurant

    worker = cluster.live()[0]
    restaurant = next(iter(owners))
    for path in (
        f"/api/restaurants/{restaurant}/pending-orders",
        f"/api/restaurants/{restaurant}/connections",
        "/api/cluster",
        "/api/orders/unseen?older_than=0s",
    ):
        assert (await worker.get_json(path, token=""))[0] == 401, path
        assert (await worker.get_json(path, token=tablet_token(restaurant)))[0] == 403, path
    code, unseen = await eventually(
        lambda: worker.get_json("/api/orders/unseen?older_than=0s"),
        lambda answer: answer[0] == 200,  # 206 while a worker's answer is missing
        what="unseen orders from every worker",
    )
    assert {o["orderId"] for o in unseen["orders"] if o["restaurantId"] in owners} == {"op-1"}
    code, body = await worker.get_json("/api/orders/unseen?older_than=soon")
    assert code == 400 and "duration" in body["error"]

    async with aiohttp.ClientSession() as session, session.get(f"{worker.base_url}/metrics") as response:
        text = await response.text()
    for metric in (
        "partner_stream_connections",
        "partner_stream_pushes_total",
        "partner_stream_push_latency_seconds_bucket",
        "partner_stream_events_applied_total",
        "partner_stream_dead_letters_total",
        "partner_stream_consumer_lag",
        "partner_stream_rebalances_total",
        "partner_stream_http_connections",
        "partner_stream_tablet_requests_refused_total",
    ):
        assert metric in text, metric
    lag_lines = [line for line in text.splitlines() if line.startswith("partner_stream_consumer_lag{")]
    assert lag_lines and not [line for line in lag_lines if "changelog" in line]  # their "lag" is our own writes


class OrderFlow:
    """Orders keep flowing to a set of restaurants while the cluster changes; tablets reconcile themselves."""

    def __init__(self, entry: Worker, producer: AIOKafkaProducer, owners: dict[str, str]) -> None:
        self.entry, self.producer, self.owners = entry, producer, owners
        self.boards = {r: LiveBoard(entry.base_url, r).start() for r in owners}
        self.published: dict[str, set[str]] = {r: set() for r in owners}
        self.negotiations: list[str] = []
        self.flowing = True
        self._counter = itertools.count()
        self._tasks = [asyncio.create_task(self._order()), asyncio.create_task(self._negotiate())]

    async def _order(self) -> None:
        while self.flowing:
            for restaurant in self.owners:
                order = f"o{next(self._counter)}"
                await publish(self.producer, self.entry.topics.created, created(restaurant, order))
                self.published[restaurant].add(order)
            await asyncio.sleep(0.2)  # a steady trickle of orders, not a wait for a condition

    async def _negotiate(self) -> None:
        """Negotiate through the entry worker all along; follow every redirect once."""
        async with aiohttp.ClientSession() as session:
            while self.flowing:
                for restaurant in self.owners:
                    self.negotiations.append(await negotiate_outcome(session, self.entry.base_url, restaurant))
                await asyncio.sleep(0.1)  # probe pacing

    async def boards_caught_up(self, exact: bool = False) -> None:
        for restaurant, board in self.boards.items():
            await board.wait_for_orders(set(self.published[restaurant]), exact=exact, timeout=90)

    async def finish(self) -> None:
        """Stop the flow, then: every order is in the table (the truth) and on every board, exactly."""
        self.flowing = False
        await asyncio.gather(*self._tasks)
        for restaurant in self.owners:
            await eventually(
                lambda r=restaurant: self.entry.get_json(f"/api/restaurants/{r}/pending-orders"),
                lambda answer, r=restaurant: (
                    answer[0] == 200 and {o["orderId"] for o in answer[1]["orders"]} == self.published[r]
                ),
                timeout=60,
                what=f"every published order in {restaurant}'s table",
            )
        await self.boards_caught_up(exact=True)
        # Negotiate never sent a tablet to a worker that was not (yet) the owner: each redirect was
        # confirmed by its target before it was given, and during handovers the answer was 503.
        assert "stale-redirect" not in self.negotiations, self.negotiations

    async def close(self) -> None:
        self.flowing = False
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await task
        for board in self.boards.values():
            await board.stop()


async def test_no_order_is_lost_across_scale_out_and_a_graceful_stop(
    cluster: Cluster, producer: AIOKafkaProducer
) -> None:
    owners = restaurants_on_every_partition(cluster.workers[0].partitions)
    flow = OrderFlow(cluster.workers[0], producer, owners)
    try:
        await flow.boards_caught_up()
        # Scale out: a third worker joins (Faust's sticky assignor may keep it on standby only).
        newcomer = cluster.add(sibling(cluster, f"c{len(cluster.workers)}"))
        await newcomer.start()
        await cluster.settled(timeout=120)
        await flow.boards_caught_up()
        # Graceful stop of an owner: its partitions move to the others, and so do its tablets.
        leaving = next(w for w in cluster.live() if w is not cluster.workers[0] and w is not newcomer)
        await leaving.stop()
        await cluster.settled(timeout=120)
        await flow.finish()
        moved = [r for r, board in flow.boards.items() if board.connects > 1]
        assert moved, "the stopped worker's tablets must have reconnected elsewhere"
        assert all(4000 in flow.boards[r].close_codes or 4002 in flow.boards[r].close_codes for r in moved)
        assert {"local", "redirect-confirmed"} <= set(flow.negotiations), set(flow.negotiations)
    finally:
        await flow.close()


async def test_no_order_is_lost_when_an_owner_is_killed(cluster: Cluster, producer: AIOKafkaProducer) -> None:
    owners = restaurants_on_every_partition(cluster.workers[0].partitions)
    flow = OrderFlow(cluster.workers[0], producer, owners)
    try:
        await flow.boards_caught_up()
        victim = cluster.live()[-1]
        assert victim is not cluster.workers[0]
        await victim.kill()
        await cluster.settled(timeout=120)
        await flow.finish()
    finally:
        await flow.close()
        # Leave two workers for whatever runs next in this module.
        if len(cluster.live()) < 2:
            replacement = cluster.add(sibling(cluster, f"r{len(cluster.workers)}"))
            await replacement.start()
            await cluster.settled(timeout=120)


async def negotiate_outcome(session: aiohttp.ClientSession, base_url: str, restaurant: str) -> str:
    """How a negotiate through ``base_url`` ends, following a redirect once.

    local | unavailable (503) | redirect-confirmed (the target serves it) | moved-meanwhile (the target
    stopped or handed the restaurant on between the redirect and our follow-up: a real client then simply
    negotiates again) | throttled (429: this probe never opens the sockets it negotiates, so it runs into the
    per-restaurant cap of unused negotiations) | stale-redirect (the target answered something no owner would: a bug).
    """
    url = f"{base_url}/partnerhub/negotiate?restaurantId={restaurant}&negotiateVersion=1"
    headers = {"Authorization": f"Bearer {tablet_token(restaurant)}"}
    async with session.post(url, headers=headers) as response:
        if response.status == 503:
            assert response.headers.get("Retry-After")
            return "unavailable"
        if response.status == 429:
            assert response.headers.get("Retry-After")
            return "throttled"
        assert response.status == 200, await response.text()
        body = await response.json()
    if "connectionToken" in body:
        return "local"
    target = body["url"].replace("/partnerhub?", "/partnerhub/negotiate?") + "&negotiateVersion=1"
    try:
        async with session.post(target, headers={"Authorization": f"Bearer {body['accessToken']}"}) as response:
            answer = await response.json(content_type=None) if response.status in (200, 503) else {}
            if response.status == 429:
                return "throttled"
            if response.status == 503:
                return "moved-meanwhile"
            if response.status == 200 and "connectionToken" in answer:
                return "redirect-confirmed"
            if response.status == 200 and "url" in answer:
                return "moved-meanwhile"
    except aiohttp.ClientError:
        return "moved-meanwhile"
    return "stale-redirect"
