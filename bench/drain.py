"""Catch-up after an outage: how fast a worker drains a backlog, and what each event costs, against Faust's own floor.

The operator's question: "the workers were down for N minutes; how long until the kitchens are current again?"
A backlog of mixed .NET-style events (500 restaurants, at most 8 open orders each: creates, then accepts and
rejects, keyed by restaurant as the OrderService does) is produced while the server is idle; then the bench
measures the server's CPU (all threads) and wall time until it has consumed all of it. No tablets: nothing
competes with the stream for the two cores.

The floor, measured in the same run on the same broker: a bare Faust agent that writes one table key per event
(bench/bare_faust.py). partner-stream's goal is a CPU per event at or under the floor's.

    python -m bench.drain [--events 20000] [--reps 2] [--out docs/bench-results/drain.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from partner_stream.dev.broker import EmbeddedBroker

from . import procs

RESTAURANTS = 500
MAX_OPEN = 8
#: A run is not valid when processes the bench did not start used more than this share of the box.
OTHERS_LIMIT_PERCENT = 20.0

Event = tuple[str, bytes, bytes]  # (topic, key, value)


def backlog(count: int, seed: int = 7) -> list[Event]:
    """``count`` events: a restaurant with fewer than 8 open orders gets a new one 60 % of the time, else one is
    resolved (4 in 5 accepted)."""
    rng = random.Random(seed)
    open_orders: dict[str, list[str]] = {f"r{n:03d}": [] for n in range(RESTAURANTS)}
    restaurants = list(open_orders)
    events: list[Event] = []
    for n in range(count):
        restaurant = rng.choice(restaurants)
        orders = open_orders[restaurant]
        key = restaurant.encode()
        if not orders or (len(orders) < MAX_OPEN and rng.random() < 0.6):
            order = f"{restaurant}-{n:06d}-7c9e6679-7425-40de-944b"
            orders.append(order)
            body = {
                "OrderId": order,
                "RestaurantId": restaurant,
                "CustomerName": "Ana María Fernández",
                "Items": [
                    {"Name": "Pad Thai", "Quantity": 2, "UnitPrice": 9.5, "Notes": "no peanuts"},
                    {"Name": "Spring rolls", "Quantity": 1, "UnitPrice": 4.25, "Notes": None},
                ],
                "TotalPrice": 23.25,
                "CreatedAt": "2026-12-05T19:00:00.0000000Z",
            }
            events.append((procs.TOPIC_CREATED, key, orjson.dumps(body)))
        else:
            order = orders.pop(rng.randrange(len(orders)))
            if rng.random() < 0.8:
                body = {"OrderId": order, "RestaurantId": restaurant, "AcceptedAt": "2026-12-05T19:01:00Z"}
                events.append((procs.TOPIC_ACCEPTED, key, orjson.dumps(body)))
            else:
                body = {"OrderId": order, "RestaurantId": restaurant, "Reason": "out of rice"}
                events.append((procs.TOPIC_REJECTED, key, orjson.dumps(body)))
    return events


#: Seconds between progress polls: a worker's /metrics costs it ~1 ms of CPU, so not much more often.
POLL_SECONDS = 0.25


async def wait_until(probe: Callable[[], Awaitable[float]], at_least: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await probe() < at_least:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not drained after {timeout:.0f} s")
        await asyncio.sleep(POLL_SECONDS)


async def drain(
    server: procs.Server,
    producer: Any,
    events: list[Event],
    progress: Callable[[], Awaitable[float]],
    profile: Path | None = None,
) -> dict[str, Any]:
    """Produce the backlog (the server idle), then measure until the server consumed all of it.

    With ``profile``, py-spy samples the server meanwhile and writes collapsed stacks there (it costs the
    server a little CPU: compare profiled runs with each other only)."""
    before = await progress()
    spy = await start_profiler(server.pid, profile) if profile else None
    box = procs.BoxMeter(procs.CpuMeter({"server": server.pid}))
    box.start()
    started = time.monotonic()
    for topic, key, value in events:
        await producer.send(topic, value, key=key)
    await producer.flush()
    produced = time.monotonic() - started
    await wait_until(progress, before + len(events), timeout=600)
    elapsed = time.monotonic() - started
    cpu = box.stop()
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
    seconds = cpu["cpu_seconds"]["server"]
    return {
        "events": len(events),
        "seconds": round(elapsed, 2),
        "produce_seconds": round(produced, 2),
        "events_per_s": round(len(events) / elapsed, 1),
        "cpu_us_per_event": round(seconds / len(events) * 1e6, 1),
        "cpu_percent_of_core": round(100.0 * seconds / elapsed, 1),
        "other_processes_percent_of_core": cpu["other_processes_percent_of_core"],
        "valid": cpu["other_processes_percent_of_core"] <= OTHERS_LIMIT_PERCENT * 2,  # % of a core; box = 2 cores
    }


async def start_profiler(pid: int, out: Path) -> asyncio.subprocess.Process:
    """py-spy (a bench dependency) recording ``pid``, every thread, as collapsed stacks."""
    command = [
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--output",
        str(out),
        "--rate",
        "200",
    ]
    quiet = asyncio.subprocess.DEVNULL
    spy = await asyncio.create_subprocess_exec(*command, stdout=quiet, stderr=quiet)
    await asyncio.sleep(1.0)  # py-spy attaches
    return spy


async def measure(
    make: Callable[[EmbeddedBroker, Path], procs.Server],
    events: list[Event],
    log_dir: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One server on a fresh broker: warm it with a small drain, then drain the backlog."""
    broker = procs.start_broker(log_dir)
    server = make(broker, log_dir)
    producer = None
    try:
        await procs.create_upstream_topics(broker.bootstrap, 8)
        server.start()
        await server.wait_ready()
        producer = await procs.new_producer(broker.bootstrap, linger_ms=5)
        progress = lambda: procs.consumed(server)  # noqa: E731
        await drain(server, producer, backlog(500, seed=1), progress)
        await procs.wait_for_quiet(30.0, max_wait=10.0)
        return await drain(server, producer, events, progress, profile)
    finally:
        if producer is not None:
            await producer.stop()
        server.stop()
        broker.stop()


async def run(count: int, log_dir: Path, worker_env: dict[str, str], profile: bool = False) -> dict[str, Any]:
    events = backlog(count)
    floor_profile = log_dir / "bare-faust.stacks" if profile else None
    floor = await measure(procs.bare_faust, events, log_dir, floor_profile)
    worker = await measure(
        lambda broker, logs: procs.worker(broker, logs, extra_env=worker_env),
        events,
        log_dir,
        log_dir / "worker.stacks" if profile else None,
    )
    return {
        "bare_faust": floor,
        "partner_stream": worker,
        "cpu_ratio_to_floor": round(worker["cpu_us_per_event"] / floor["cpu_us_per_event"], 2),
        "rate_ratio_to_floor": round(worker["events_per_s"] / floor["events_per_s"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/bench-results/drain.json"))
    parser.add_argument("--label", default="", help="what this run measures (kept in the results)")
    parser.add_argument(
        "--worker-env", default="{}", help='extra worker environment as JSON, e.g. \'{"PARTNER_STREAM_X": "1"}\''
    )
    parser.add_argument("--logs", type=Path, help="keep the servers' logs and data here (default: a temp dir)")
    parser.add_argument("--profile", action="store_true", help="py-spy both servers; stacks go to --logs")
    args = parser.parse_args()
    runs = []
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
            log_dir = args.logs / f"rep-{rep}" if args.logs else Path(tmp)
            log_dir.mkdir(parents=True, exist_ok=True)
            result = asyncio.run(run(args.events, log_dir, json.loads(args.worker_env), args.profile))
        print(json.dumps({"rep": rep, **result}), flush=True)
        runs.append(result)
    document = {"label": args.label, "events": args.events, "runs": runs, "machine": procs.machine_info()}
    args.out.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
