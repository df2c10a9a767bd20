"""Does one restaurant with thousands of pending orders slow down the others?

On ff17dc6 a restaurant's whole state was one value re-serialised on every event: with 2,000 pending orders in
one restaurant, every restaurant's events slowed to ~100/s with a 19 s p99. This drains the same mixed
backlog through a real worker twice, before and after one restaurant is given 2,000 long pending orders and
500 remembered resolutions, and compares the worker's CPU per event and the drain rate.

    python -m bench.busy_restaurant [--events 3000] [--out docs/bench-results/busy-restaurant.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from . import procs
from .drain import worker_applied as applied

RESTAURANTS = 100
BUSY = "busy-restaurant"


def created(restaurant: str, order: str, name: str = "Ana") -> bytes:
    body = {
        "OrderId": order,
        "RestaurantId": restaurant,
        "CustomerName": name,
        "Items": [{"Name": "Pad Thai", "Quantity": 2, "UnitPrice": 9.5}],
        "TotalPrice": 19.0,
    }
    return orjson.dumps(body)


async def drain(producer: Any, worker: procs.Server, events: list[tuple[str, bytes, bytes]]) -> dict[str, float]:
    """Publish a backlog, then time the worker until it has applied all of it."""
    before = await applied(worker.base_url)
    meter = procs.CpuMeter({"worker": worker.pid})
    meter.start()
    started = time.monotonic()
    for topic, key, value in events:
        await producer.send(topic, value, key=key)
    await producer.flush()
    while await applied(worker.base_url) < before + len(events):  # noqa: ASYNC110 (another process's progress)
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    meter.stop()
    return {
        "events": len(events),
        "seconds": round(elapsed, 2),
        "events_per_s": round(len(events) / elapsed, 1),
        "worker_cpu_us_per_event": round(meter.seconds["worker"] / len(events) * 1e6, 1),
    }


def busy_history(pending: int, resolved: int = 500) -> list[tuple[str, bytes, bytes]]:
    """``pending`` orders with 200-character names and ``resolved`` remembered resolutions, for one restaurant."""
    key = BUSY.encode()
    events = [(procs.TOPIC_CREATED, key, created(BUSY, f"open-{n}", "n" * 200)) for n in range(pending)]
    accepted = [orjson.dumps({"OrderId": f"gone-{n}", "RestaurantId": BUSY}) for n in range(resolved)]
    return events + [(procs.TOPIC_ACCEPTED, key, value) for value in accepted]


def backlog(tag: str, count: int) -> list[tuple[str, bytes, bytes]]:
    """Orders for the other restaurants, one in ten for the busy one, keyed by restaurant."""
    events = []
    for n in range(count):
        restaurant = BUSY if n % 10 == 0 else f"r{n % RESTAURANTS}"
        events.append((procs.TOPIC_CREATED, restaurant.encode(), created(restaurant, f"{tag}-{n}")))
    return events


async def run(events: int, log_dir: Path, busy_orders: int = 2000) -> dict[str, Any]:
    broker = procs.start_broker(log_dir)
    worker = procs.worker(broker, log_dir)
    producer = None
    try:
        await procs.create_upstream_topics(broker.bootstrap, 8)
        worker.start()
        await worker.wait_ready()
        producer = await procs.new_producer(broker.bootstrap, linger_ms=5)
        await drain(producer, worker, backlog("warm", 500))
        quiet = await drain(producer, worker, backlog("before", events))
        await drain(producer, worker, busy_history(busy_orders))
        busy = await drain(producer, worker, backlog("after", events))
    finally:
        if producer is not None:
            await producer.stop()
        worker.stop()
        broker.stop()
    return {
        "before": quiet,
        "with_busy_restaurant": busy,
        "cpu_ratio": round(busy["worker_cpu_us_per_event"] / quiet["worker_cpu_us_per_event"], 2),
        "rate_ratio": round(busy["events_per_s"] / quiet["events_per_s"], 2),
        "busy_orders": busy_orders,
        "machine": procs.machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--busy-orders", type=int, default=2000, help="pending orders of the busy restaurant")
    parser.add_argument("--out", type=Path, default=Path("docs/bench-results/busy-restaurant.json"))
    args = parser.parse_args()
    runs = []
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="bench-busy-") as tmp:
            result = asyncio.run(run(args.events, Path(tmp), args.busy_orders))
        print(json.dumps({"rep": rep, **{k: v for k, v in result.items() if k != "machine"}}))
        runs.append(result)
    args.out.write_text(json.dumps({"runs": runs}, indent=1))


if __name__ == "__main__":
    main()
