"""A full disk under a running worker: it pauses, says so, carries on when space returns, and loses nothing.

The worker's data dir is a real 16 MiB tmpfs, filled by a file while orders flow and freed later, so RocksDB
fails exactly as it does in production (``IO error: No space left on device``). Mounting needs root or
CAP_SYS_ADMIN; where the test may not mount it is skipped (the injected-refusal tests in tests/test_agents.py
still run everywhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from partner_stream.dev.broker import EmbeddedBroker
from tests.conftest import new_worker
from tests.integration.test_stream_core import created, order_ids, pending, wait_for_orders
from tests.support.polling import eventually
from tests.support.workers import Worker

RESTAURANTS = 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'not permitted'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem refuses (ENOSPC); return it."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return filler


async def orders_at_ten_per_second(
    producer: AIOKafkaProducer, topic: str, published: dict[str, list[str]], stop: asyncio.Event
) -> None:
    """New orders for ``published``'s restaurants in turn, keyed by restaurant, each recorded once the broker has
    it, until ``stop``."""
    restaurants = list(published)
    n = 0
    while not stop.is_set():
        restaurant = restaurants[n % len(restaurants)]
        order = f"o{n}"
        await producer.send_and_wait(topic, orjson.dumps(created(restaurant, order)), key=restaurant.encode())
        published[restaurant].append(order)
        n += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def readiness(worker: Worker) -> tuple[int, dict]:
    return await worker.get_json("/readyz", token="")


@pytest.fixture
async def worker_on_small_disk(broker: EmbeddedBroker, small_disk: Path, artifacts_dir: Path) -> AsyncIterator[Worker]:
    worker = new_worker(broker, small_disk, artifacts_dir, "diskfull")
    await worker.start()
    yield worker
    await worker.stop()


@pytest.mark.parametrize("while_full", ["wait", "sigkill"])
async def test_a_full_disk_pauses_processing_and_loses_no_order(
    worker_on_small_disk: Worker, producer: AIOKafkaProducer, small_disk: Path, while_full: str
) -> None:
    """``wait``: space returns under the running worker. ``sigkill``: the worker dies while the disk is full
    (an operator restarting a stuck pod) and starts again once space is back."""
    worker = worker_on_small_disk
    restaurants = [f"disk-{worker.app_id}-{n}" for n in range(RESTAURANTS)]
    published: dict[str, list[str]] = {r: [] for r in restaurants}
    stop = asyncio.Event()
    flow = asyncio.ensure_future(orders_at_ten_per_second(producer, worker.topics.created, published, stop))
    try:
        await eventually(lambda: pending(worker, restaurants[0]), lambda s: bool(s["orders"]), what="first orders")
        filler = fill(small_disk)

        _, body = await eventually(
            lambda: readiness(worker), lambda answer: answer[0] == 503, timeout=60, what="/readyz 503"
        )
        assert "disk full" in body["reason"] and body["storageFailure"]
        assert await gauge(worker, "partner_stream_storage_write_failing") == 1.0
        assert "STORAGE WRITE FAILED" in worker.log_path.read_text()
        # Keep the disk full while 30 more orders arrive (they wait in Kafka), then free it.
        published_when_full = sum(map(len, published.values()))

        async def published_since() -> int:
            return sum(map(len, published.values())) - published_when_full

        await eventually(published_since, lambda count: count >= 30, what="orders published onto a full disk")
        if while_full == "sigkill":
            await worker.kill()
        os.remove(filler)
        if while_full == "sigkill":
            await worker.start()

        await eventually(lambda: readiness(worker), lambda answer: answer[0] == 200, timeout=60, what="/readyz 200")
    finally:
        stop.set()
        await flow

    for restaurant in restaurants:
        await wait_for_orders(worker, restaurant, published[restaurant], timeout=60)
    await worker.stop()
    await worker.start()
    for restaurant in restaurants:
        assert sorted(order_ids(await pending(worker, restaurant))) == sorted(published[restaurant]), restaurant
    log = worker.log_path.read_text()
    assert "STORAGE WRITE FAILED" in log
    assert while_full == "sigkill" or "storage write succeeded after" in log


async def gauge(worker: Worker, name: str) -> float | None:
    samples = await worker.metric_samples(name)
    return samples[0].value if samples else None


async def test_a_disk_that_fills_while_a_second_worker_joins_loses_no_order(
    broker: EmbeddedBroker, small_disk: Path, tmp_path: Path, artifacts_dir: Path, producer: AIOKafkaProducer
) -> None:
    """A worker holds an event its full disk refused when a second worker joins the group.

    Faust's revoke waits for every event in flight to finish, and the held one cannot until the disk has room: the
    group's rebalance waits with it (the joining worker keeps re-joining, nothing is applied anywhere). Once
    space returns the held write goes through, the rebalance completes, and every order is pending where the
    API finds it, and again after both workers restart.
    """
    full = new_worker(broker, small_disk, artifacts_dir, "diskjoin")
    joining = full.sibling("joining", tmp_path / "joining-data")
    restaurants = [f"join-{full.app_id}-{n}" for n in range(RESTAURANTS)]
    published: dict[str, list[str]] = {r: [] for r in restaurants}
    stop = asyncio.Event()

    async def log_of(worker: Worker) -> str:
        return worker.log_path.read_text() if worker.log_path.exists() else ""

    await full.start()
    flow = asyncio.ensure_future(orders_at_ten_per_second(producer, full.topics.created, published, stop))
    try:
        await eventually(lambda: pending(full, restaurants[0]), lambda s: bool(s["orders"]), what="first orders")
        filler = fill(small_disk)
        await eventually(lambda: readiness(full), lambda answer: answer[0] == 503, timeout=60, what="/readyz 503")
        joined = asyncio.ensure_future(joining.start(timeout=180))
        # The rebalance has begun on both sides while the full worker's agent still holds its event.
        await eventually(
            lambda: log_of(full),
            lambda text: "because it is rebalancing" in text,
            timeout=60,
            what="the full worker in the rebalance",
        )
        await eventually(lambda: log_of(joining), lambda text: "Joined group" in text, what="the second joined")
        os.remove(filler)
        await joined
        for worker in (full, joining):
            await eventually(lambda w=worker: readiness(w), lambda a: a[0] == 200, timeout=90, what="/readyz 200")
        stop.set()
        await flow

        for restaurant in restaurants:
            await wait_for_orders(joining, restaurant, published[restaurant], timeout=90)
        await asyncio.gather(full.stop(), joining.stop())
        # One after the other, as a rolling restart: two members re-joining at once can leave the embedded
        # broker's group re-joining without end (seen once in 8 runs).
        await full.start(timeout=120)
        await joining.start(timeout=120)
        for restaurant in restaurants:
            await wait_for_orders(full, restaurant, published[restaurant], timeout=60)
    finally:
        stop.set()
        await asyncio.gather(flow, return_exceptions=True)
        # Always, or a worker left behind by a failure keeps polling its broker after the test.
        await asyncio.gather(full.stop(), joining.stop(), return_exceptions=True)
    log = await log_of(full)
    assert "STORAGE WRITE FAILED" in log and "storage write succeeded after" in log
