"""What hostile and careless clients cost a real worker: requests refused, 5xx, bypasses, memory before and after.

Replays, against a real worker on the embedded broker, each abuse a probe of ff17dc6 found (issue #12):
bad credentials on every endpoint, snapshot amplification by tablets that do not read, 8 KB restaurant
IDs, idle / half-sent connections under a 1,024 open-file limit, negotiation and acknowledgement floods.
For each it records what was tried, how it was answered, and the worker's RSS before and after.

    python -m bench.abuse [--out docs/bench-results/abuse.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson

from partner_stream_web.auth import mint_operator_token, mint_tablet_token

from . import procs

SECRET = procs.BENCH_JWT_SECRET
MiB = 1024 * 1024


def created(restaurant: str, order: str) -> bytes:
    items = [{"Name": f"dish {n} " + "x" * 100, "Quantity": 1, "UnitPrice": 9.5} for n in range(10)]
    body = {"OrderId": order, "RestaurantId": restaurant, "CustomerName": "Ana", "Items": items, "TotalPrice": 95.0}
    return orjson.dumps(body)


class Tally:
    """How a batch of requests that should all be refused was answered."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()

    def add(self, status: int) -> None:
        self.statuses[status] += 1

    def summary(self, *, allowed: set[int] | None = None) -> dict[str, Any]:
        tried = sum(self.statuses.values())
        bypasses = sum(n for s, n in self.statuses.items() if s < 400 and (allowed is None or s not in allowed))
        return {
            "tried": tried,
            "refused_4xx": sum(n for s, n in self.statuses.items() if 400 <= s < 500),
            "5xx": sum(n for s, n in self.statuses.items() if s >= 500),
            "bypasses": bypasses,
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
        }


async def measured(worker: procs.Server, name: str, abuse: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    before = worker.rss()
    started = time.monotonic()
    result = await abuse()
    result["seconds"] = round(time.monotonic() - started, 1)
    result["rss_before_mib"] = round(before / MiB, 1)
    result["rss_after_mib"] = round(worker.rss() / MiB, 1)
    print(json.dumps({name: result}), flush=True)
    return result


# -- the abuses ---------------------------------------------------------------------------------------


def bad_credentials(restaurant: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"restaurantId": restaurant, "sub": "t", "iat": now, "exp": now + 600}
    return {
        "garbage": "not-a-jwt",
        "alg-none": jwt.encode(claims, None, algorithm="none"),
        "wrong-secret": jwt.encode(claims, "another-secret-that-is-long-enough-0123456789", algorithm="HS256"),
        "expired": mint_tablet_token(restaurant, SECRET, ttl_seconds=-3600),
        "not-yet-valid": jwt.encode({**claims, "nbf": now + 3600}, SECRET, algorithm="HS256"),
        "es256-header": forged(claims, {"alg": "ES256", "typ": "JWT"}),
        "other-restaurant": mint_tablet_token("someone-else", SECRET),
        "tablet-as-operator": mint_tablet_token(restaurant, SECRET),
        "operator-expired": mint_operator_token(SECRET, ttl_seconds=-3600),
    }


def forged(claims: dict[str, Any], header: dict[str, str]) -> str:
    """A token whose header names an algorithm it was not signed with (the probe's unauthenticated 500)."""

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}.{base64.urlsafe_b64encode(b'x' * 64).rstrip(b'=').decode()}"


async def credential_matrix(worker: procs.Server, restaurant: str) -> dict[str, Any]:
    """Every endpoint x every bad credential x header and query: all must be 4xx."""
    base = worker.base_url
    endpoints = [
        ("POST", f"/partnerhub/negotiate?negotiateVersion=1&restaurantId={restaurant}"),
        ("GET", f"/partnerhub?restaurantId={restaurant}"),
        ("GET", f"/ws/partner?restaurantId={restaurant}"),
        ("GET", f"/api/restaurants/{restaurant}/pending-orders"),
        ("GET", f"/api/restaurants/{restaurant}/connections"),
        ("GET", f"/api/restaurants/{restaurant}/endpoint"),
        ("GET", "/api/cluster"),
        ("GET", "/api/orders/unseen"),
        ("GET", "/api/worker/status"),
        ("GET", "/api/worker/unseen"),
    ]
    tally = Tally()
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            for method, path in endpoints:
                for name, token in bad_credentials(restaurant).items():
                    if name == "tablet-as-operator" and ("/partnerhub" in path or "/ws/" in path or "endpoint" in path):
                        continue  # a tablet token is the right credential there
                    for place in ("header", "query"):
                        url = base + path
                        headers = {}
                        if place == "header":
                            headers["Authorization"] = f"Bearer {token}"
                        else:
                            url += ("&" if "?" in url else "?") + f"access_token={token}"
                        async with session.request(method, url, headers=headers) as response:
                            tally.add(response.status)
    return tally.summary()


async def amplification(worker: procs.Server, restaurant: str, tablets: int = 10, rounds: int = 3) -> dict[str, Any]:
    """Tablets that never read, each sending frames of 100 GetPendingOrders on a 300-order restaurant."""
    token = mint_tablet_token(restaurant, SECRET)
    url = f"{worker.base_url}/partnerhub?restaurantId={restaurant}&access_token={token}"
    frame = "".join(
        json.dumps({"type": 1, "invocationId": str(n), "target": "GetPendingOrders", "arguments": []}) + "\x1e"
        for n in range(100)
    )
    session = aiohttp.ClientSession()
    sockets = []
    peak = 0
    try:
        for _ in range(tablets):
            ws = await session.ws_connect(url, max_msg_size=0)
            await ws.send_str('{"protocol":"json","version":1}\x1e')
            sockets.append(ws)
        for _ in range(rounds):
            for ws in sockets:
                await ws.send_str(frame)
            await asyncio.sleep(1.0)  # let the worker queue what it will; the tablets still do not read
            peak = max(peak, worker.rss())
        # Now read everything that was sent: how many snapshots did the worker actually produce?
        results = errors = received = 0
        closes: Counter[str] = Counter()
        for ws in sockets:
            deadline = time.monotonic() + 20
            answered = 0
            while answered < 100 * rounds and time.monotonic() < deadline:
                message = await ws.receive(timeout=10)
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                received += len(message.data)
                for record in message.data.split("\x1e")[:-1]:
                    parsed = json.loads(record)
                    if parsed.get("type") == 3:
                        answered += 1
                        results += "result" in parsed
                        errors += "error" in parsed
                    elif parsed.get("type") == 7:
                        closes[parsed.get("error", "")] += 1
    finally:
        for ws in sockets:
            await ws.close()
        await session.close()
    return {
        "tablets": tablets,
        "requests": tablets * rounds * 100,
        "snapshot_replies": results,
        "refused_replies": errors,
        "mb_sent_to_tablets": round(received / 1e6, 1),
        "closed_by_worker": dict(closes),
        "rss_peak_mib": round(peak / MiB, 1),
    }


async def long_ids(worker: procs.Server, count: int = 70_000) -> dict[str, Any]:
    """Distinct 8 KB restaurant IDs on the unauthenticated lookup (once pinned in an LRU cache)."""
    tally = Tally()
    log_before = worker.log_path.stat().st_size
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(n: int) -> None:
            async with session.get(f"{worker.base_url}/api/worker?restaurantId={n:08}{'x' * 8192}") as response:
                tally.add(response.status)

        for start in range(0, count, 500):
            await asyncio.gather(*(one(n) for n in range(start, min(count, start + 500))))
    return {**tally.summary(), "log_mb_written": round((worker.log_path.stat().st_size - log_before) / 1e6, 1)}


async def healthz_status(base_url: str) -> int:
    try:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(f"{base_url}/healthz") as response:
            return response.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        return 0


async def idle_flood(worker: procs.Server, count: int = 1100) -> dict[str, Any]:
    """``count`` idle TCP connections and 200 slowloris ones at a worker limited to 1,024 open files."""
    writers = []
    refused_at_once = 0
    for _ in range(count):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", worker.web_port)
            writers.append((reader, writer))
        except OSError:
            refused_at_once += 1
    slow = []
    for _ in range(200):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", worker.web_port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            slow.append((reader, writer))
        except OSError:
            refused_at_once += 1
    started = time.monotonic()
    healthz_during = await healthz_status(worker.base_url)

    async def closed(reader: asyncio.StreamReader) -> float:
        try:
            while await reader.read(1024):
                pass
        except OSError:
            pass
        return time.monotonic() - started

    async def trickle() -> None:
        while time.monotonic() - started < 60:
            for _, writer in slow:
                if not writer.is_closing():
                    with contextlib.suppress(OSError):
                        writer.write(b"X")
            await asyncio.sleep(1)

    trickler = asyncio.create_task(trickle())
    times = await asyncio.gather(*(closed(reader) for reader, _ in writers + slow))
    trickler.cancel()
    healthy_after = time.monotonic()
    while await healthz_status(worker.base_url) != 200 and time.monotonic() - healthy_after < 60:  # noqa: ASYNC110
        await asyncio.sleep(0.2)  # another process's state: poll it
    for _, writer in writers + slow:
        writer.close()
    log = worker.log_path.read_text(errors="replace")
    return {
        "idle_connections": count,
        "slowloris_connections": 200,
        "healthz_during_flood": healthz_during,
        "all_closed_by_worker_after_s": round(max(times), 1),
        "healthz_ok_after_s": round(time.monotonic() - started, 1),
        "limit_warning_logged": "connection limit reached" in log,
        "start_line": next((line.split("] ", 2)[-1] for line in log.splitlines() if "open-file limit" in line), ""),
    }


async def negotiation_flood(worker: procs.Server, restaurant: str, count: int = 20_000) -> dict[str, Any]:
    tally = Tally()
    token = mint_tablet_token(restaurant, SECRET)
    url = f"{worker.base_url}/partnerhub/negotiate?negotiateVersion=1&restaurantId={restaurant}"
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {token}"}) as session:

        async def one() -> None:
            async with session.post(url) as response:
                tally.add(response.status)

        for start in range(0, count, 500):
            await asyncio.gather(*(one() for _ in range(min(500, count - start))))
    return tally.summary(allowed={200})


async def ack_flood(worker: procs.Server, restaurant: str, frames: int = 20) -> dict[str, Any]:
    """One tablet sending frames of 100 distinct acknowledgements: how many become Kafka writes?"""
    token = mint_tablet_token(restaurant, SECRET)
    url = f"{worker.base_url}/partnerhub?restaurantId={restaurant}&access_token={token}"
    accepted = refused = 0
    closed_with = None
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str('{"protocol":"json","version":1}\x1e')
        for f in range(frames):
            frame = "".join(
                json.dumps({"type": 1, "invocationId": f"{f}-{n}", "target": "Acknowledge", "arguments": [f"o{f}-{n}"]})
                + "\x1e"
                for n in range(100)
            )
            await ws.send_str(frame)
        deadline = time.monotonic() + 30
        while accepted + refused < frames * 100 and time.monotonic() < deadline:
            message = await ws.receive(timeout=10)
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            for record in message.data.split("\x1e")[:-1]:
                parsed = json.loads(record)
                if parsed.get("type") == 3:
                    accepted += "error" not in parsed
                    refused += "error" in parsed
                elif parsed.get("type") == 7:
                    closed_with = parsed.get("error")
    return {
        "acknowledgements_sent": frames * 100,
        "ok_replies_received": accepted,
        "refused_with_a_reply": refused,
        "closed_by_worker": closed_with,
    }


# -- the run ------------------------------------------------------------------------------------------


async def run(log_dir: Path) -> dict[str, Any]:
    procs.raise_fd_limit()
    broker = procs.start_broker(log_dir)
    worker = procs.worker(broker, log_dir)
    # The probe's setting: the usual 1,024 open-file limit (prlimit execs the worker, so the pid is the same).
    small = procs.worker(broker, log_dir, name="small-fd", app_id="bench-small")
    small.command = ["prlimit", "--nofile=1024:1024", "--", *small.command]
    producer = None
    results: dict[str, Any] = {}
    try:
        await procs.create_upstream_topics(broker.bootstrap, 8)
        worker.start()
        small.start()
        await worker.wait_ready()
        await small.wait_ready()
        producer = await procs.new_producer(broker.bootstrap, linger_ms=5)
        for n in range(300):
            await producer.send(procs.TOPIC_CREATED, created("busy", f"o{n}"), key=b"busy")
        await producer.flush()
        await wait_for_pending(worker.base_url, "busy", 300)
        results["credentials"] = await measured(worker, "credentials", lambda: credential_matrix(worker, "busy"))
        results["amplification"] = await measured(worker, "amplification", lambda: amplification(worker, "busy"))
        results["long_ids"] = await measured(worker, "long_ids", lambda: long_ids(worker))
        results["negotiations"] = await measured(worker, "negotiations", lambda: negotiation_flood(worker, "busy"))
        results["acknowledgements"] = await measured(worker, "acknowledgements", lambda: ack_flood(worker, "acks"))
        results["idle_flood_1024_fds"] = await measured(small, "idle_flood", lambda: idle_flood(small))
    finally:
        if producer is not None:
            await producer.stop()
        worker.stop()
        small.stop()
        broker.stop()
    results["machine"] = procs.machine_info()
    return results


async def wait_for_pending(base_url: str, restaurant: str, count: int) -> None:
    headers = {"Authorization": f"Bearer {mint_operator_token(SECRET)}"}
    deadline = time.monotonic() + 120
    async with aiohttp.ClientSession(headers=headers) as session:
        while time.monotonic() < deadline:
            async with session.get(f"{base_url}/api/restaurants/{restaurant}/pending-orders") as response:
                if response.status == 200 and len((await response.json())["orders"]) >= count:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{restaurant} never reached {count} pending orders")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/bench-results/abuse.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-abuse-") as tmp:
        results = asyncio.run(run(Path(tmp)))
    args.out.write_text(json.dumps(results, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
