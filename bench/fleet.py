"""A process full of tablets: thousands of WebSocket clients, driven by the harness over JSON lines.

Tablets speak partner-stream's plain protocol (``/ws/partner``), its SignalR JSON hub protocol (negotiate,
``/partnerhub``, handshake; ``signalr-direct``: without the negotiate, as the official client with
``skipNegotiation``) or the floor's plain frames, with raw aiohttp sockets. Each keeps the pending-order
view a real tablet would (snapshot, then pushes, ``seq`` checked) and times every push from the producer's send
time carried in the event (``CustomerName = "bench <unix time>"``, ``AcceptedAt`` = send time) to its parse here.

Protocol: one JSON object per line on stdin (``{"op": ..., ...}``), one JSON reply per line on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
import traceback
from collections import defaultdict
from datetime import datetime
from typing import Any

import aiohttp
import jwt
import orjson

RS = "\x1e"
SIGNALR_HANDSHAKE = '{"protocol":"json","version":1}' + RS
SIGNALR_PING = '{"type":6}' + RS
PLAIN_PING = '{"type":"ping"}'
#: How often each tablet pings (the official SignalR client's keep-alive interval).
PING_INTERVAL = 15.0
MARKER = "bench "


def mint_tablet_token(restaurant_id: str, secret: str, ttl_seconds: int = 12 * 3600) -> str:
    """The token ``web.auth.mint_tablet_token`` makes (same claims), without importing the app package."""
    now = int(time.time())
    payload = {"restaurantId": restaurant_id, "sub": f"tablet:{restaurant_id}", "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(payload, secret, algorithm="HS256")


class Refused(Exception):
    def __init__(self, status: int, body: str = "") -> None:
        super().__init__(f"HTTP {status} {body[:200]}")
        self.status = status


def _sent_time(kind: str, data: dict[str, Any]) -> float | None:
    if kind == "NewOrder":
        name = data.get("customerName") or data.get("CustomerName")
        if isinstance(name, str) and name.startswith(MARKER):
            return float(name[len(MARKER) :])
    elif kind in ("OrderAccepted", "OrderRejected"):
        at = data.get("acceptedAt") or data.get("AcceptedAt")
        if isinstance(at, str):
            return datetime.fromisoformat(at).timestamp()
    return None


def _order_id(data: dict[str, Any]) -> str | None:
    value = data.get("orderId") or data.get("OrderId")
    return None if value is None else str(value)


class Tablet:
    __slots__ = (
        "base",
        "closes",
        "connect_started",
        "dropped_at",
        "fleet",
        "gaps",
        "index",
        "negotiates",
        "pending",
        "protocol",
        "reader",
        "reconnected_at",
        "restaurant",
        "seq",
        "snapshot_at",
        "snapshot_event",
        "snapshots",
        "ws",
    )

    def __init__(self, fleet: Fleet, index: int, restaurant: str, protocol: str, base: str) -> None:
        self.fleet = fleet
        self.index = index
        self.restaurant = restaurant
        #: SignalR's negotiate request before the socket (the official client's default; skipNegotiation: none).
        self.negotiates = protocol == "signalr"
        self.protocol = "signalr" if protocol == "signalr-direct" else protocol  # "plain", "signalr" or "floor"
        self.base = base.rstrip("/")
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.pending: set[str] = set()
        self.seq = 0
        self.gaps = 0
        self.snapshots = 0
        self.closes = 0
        self.snapshot_event = asyncio.Event()
        self.snapshot_at = 0.0
        self.connect_started = 0.0
        self.dropped_at = 0.0
        self.reconnected_at = 0.0

    # -- connecting ------------------------------------------------------------------------

    async def open(self, base: str | None = None, timeout: float = 60.0) -> float:
        """Connect (negotiate + auth + upgrade + handshake) and wait for the snapshot; return the seconds taken."""
        if base is not None:
            self.base = base.rstrip("/")
        fleet = self.fleet
        self.snapshot_event = asyncio.Event()
        self.connect_started = time.time()
        token = fleet.token(self.restaurant)
        ws_base = "ws" + self.base[4:]
        session = fleet.session
        assert session is not None
        if self.protocol == "signalr" and not self.negotiates:
            url = f"{ws_base}/partnerhub?restaurantId={self.restaurant}&access_token={token}"
        elif self.protocol == "signalr":
            url = f"{self.base}/partnerhub/negotiate?negotiateVersion=1&restaurantId={self.restaurant}"
            async with session.post(url, headers={"Authorization": f"Bearer {token}"}) as response:
                if response.status != 200:
                    raise Refused(response.status, await response.text())
                negotiation = await response.json()
            connection_token = negotiation["connectionToken"]
            url = f"{ws_base}/partnerhub?restaurantId={self.restaurant}&id={connection_token}&access_token={token}"
        elif self.protocol == "plain":
            url = f"{ws_base}/ws/partner?restaurantId={self.restaurant}&access_token={token}"
        else:
            url = f"{ws_base}/ws/partner?restaurantId={self.restaurant}"
        try:
            ws = await session.ws_connect(
                url, autoping=True, heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise Refused(exc.status) from None
        self.ws = ws
        if self.protocol == "signalr":
            await ws.send_str(SIGNALR_HANDSHAKE)
        self.reader = asyncio.get_running_loop().create_task(self._read(ws))
        await asyncio.wait_for(self.snapshot_event.wait(), timeout)
        return self.snapshot_at - self.connect_started

    def abort(self) -> None:
        """Drop the socket as a network failure would: no close frame."""
        ws = self.ws
        if ws is None:
            return
        conn = ws._conn  # aiohttp keeps the upgraded connection here
        transport = conn.transport if conn is not None else None
        if transport is not None:
            transport.abort()

    async def ping(self) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            return
        with contextlib.suppress(Exception):
            await ws.send_str(SIGNALR_PING if self.protocol == "signalr" else PLAIN_PING)

    # -- receiving -------------------------------------------------------------------------

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                now = time.time()
                if self.protocol == "signalr":
                    for record in message.data.split(RS):
                        if record:
                            self._signalr_record(orjson.loads(record), now)
                else:
                    self._plain_frame(orjson.loads(message.data), now)
        except Exception:
            self.fleet.errors.append(traceback.format_exc(limit=3))
        finally:
            self.closes += 1
            if self.ws is ws:
                self.fleet.on_closed(self)

    def _plain_frame(self, frame: dict[str, Any], now: float) -> None:
        kind = frame.get("type")
        if kind == "PendingOrders":
            self._snapshot(frame["data"]["orders"], frame.get("seq", 0), now)
        elif kind in ("NewOrder", "OrderAccepted", "OrderRejected", "OrderAcknowledged"):
            self._push(kind, frame.get("seq"), frame["data"], now)
        elif kind == "close":
            self.fleet.server_closes[str(frame.get("code"))] += 1

    def _signalr_record(self, record: dict[str, Any], now: float) -> None:
        kind = record.get("type")
        if kind == 1:
            target = record.get("target")
            argument = record["arguments"][0]
            if target == "PendingOrders":
                self._snapshot(argument["orders"], argument.get("seq", 0), now)
            else:
                self._push(target, argument.get("seq"), argument, now)
        elif kind == 7:
            self.fleet.server_closes[str(record.get("error"))] += 1

    def _snapshot(self, orders: list[dict[str, Any]], seq: int, now: float) -> None:
        self.pending = {oid for o in orders if (oid := _order_id(o)) is not None}
        self.seq = seq
        self.snapshots += 1
        self.snapshot_at = now
        if self.dropped_at and not self.reconnected_at:
            self.reconnected_at = now
        self.snapshot_event.set()

    def _push(self, kind: str, seq: int | None, data: dict[str, Any], now: float) -> None:
        fleet = self.fleet
        if self.protocol != "floor" and seq is not None:
            if seq != self.seq + 1:
                self.gaps += 1
            self.seq = seq
        order_id = _order_id(data)
        if order_id is not None:
            if kind == "NewOrder":
                self.pending.add(order_id)
            elif kind in ("OrderAccepted", "OrderRejected"):
                self.pending.discard(order_id)
        fleet.frames[kind] += 1
        if fleet.recording:
            sent = _sent_time(kind, data)
            if sent is not None:
                fleet.samples[self.protocol].append((sent, (now - sent) * 1000.0))


class Fleet:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.tablets: list[Tablet] = []
        self.secret = ""
        self._tokens: dict[str, str] = {}
        self.recording = False
        self.samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.frames: dict[str, int] = defaultdict(int)
        self.server_closes: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        self.reconnect_to: list[str] = []
        self.reconnect_interval = 0.1
        self.reconnect_deadline = 120.0
        self.closing = False
        self._pinger: asyncio.Task[None] | None = None
        self._reconnects: set[asyncio.Task[None]] = set()

    def token(self, restaurant: str) -> str:
        token = self._tokens.get(restaurant)
        if token is None:
            token = self._tokens[restaurant] = mint_tablet_token(restaurant, self.secret)
        return token

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, enable_cleanup_closed=False)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))
        self._pinger = asyncio.get_running_loop().create_task(self._ping_loop())

    async def _ping_loop(self) -> None:
        """Every tablet pings once per PING_INTERVAL, spread evenly (the server drops silent tablets)."""
        step = 0.25
        slot = 0
        slots = int(PING_INTERVAL / step)
        while True:
            await asyncio.sleep(step)
            chunk = [t for t in self.tablets[slot::slots] if t.ws is not None and not t.ws.closed]
            slot = (slot + 1) % slots
            if chunk:
                await asyncio.gather(*(t.ping() for t in chunk))

    def on_closed(self, tablet: Tablet) -> None:
        if self.closing or not self.reconnect_to:
            return
        tablet.dropped_at = time.time()
        tablet.reconnected_at = 0.0
        task = asyncio.get_running_loop().create_task(self._reconnect(tablet))
        self._reconnects.add(task)
        task.add_done_callback(self._reconnects.discard)

    async def _reconnect(self, tablet: Tablet) -> None:
        deadline = time.monotonic() + self.reconnect_deadline
        attempt = 0
        while time.monotonic() < deadline and not self.closing:
            base = self.reconnect_to[attempt % len(self.reconnect_to)]
            attempt += 1
            try:
                await tablet.open(base, timeout=30)
                return
            except (Refused, aiohttp.ClientError, OSError, TimeoutError):
                await asyncio.sleep(self.reconnect_interval)
        self.errors.append(f"tablet {tablet.index} ({tablet.restaurant}) never reconnected")

    # -- operations --------------------------------------------------------------------------

    async def op_hello(self) -> dict[str, Any]:
        return {"pid": __import__("os").getpid()}

    async def op_connect(
        self,
        tablets: list[list[str]],
        secret: str = "",
        concurrency: int = 64,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Open tablets ``[[restaurant, protocol, base_url], ...]`` and wait for their snapshots."""
        self.secret = secret or self.secret
        start = len(self.tablets)
        new = [Tablet(self, start + i, r, p, u) for i, (r, p, u) in enumerate(tablets)]
        self.tablets.extend(new)
        semaphore = asyncio.Semaphore(concurrency)
        failures: dict[str, int] = defaultdict(int)

        async def one(tablet: Tablet) -> float | None:
            async with semaphore:
                try:
                    return await tablet.open(timeout=timeout)
                except Exception as exc:
                    failures[type(exc).__name__ + (f" {exc.status}" if isinstance(exc, Refused) else "")] += 1
                    return None

        t0 = time.monotonic()
        times = await asyncio.gather(*(one(t) for t in new))
        seconds = time.monotonic() - t0
        ok = [t for t in times if t is not None]
        failed = [t for t, took in zip(new, times, strict=True) if took is None]
        for tablet in failed:
            self.tablets.remove(tablet)
        return {
            "connected": len(ok),
            "failed": len(failed),
            "failures": dict(failures),
            "seconds": seconds,
            "total": len(self.tablets),
        }

    async def op_record(self, on: bool = True) -> dict[str, Any]:
        self.recording = on
        return {}

    async def op_reset(self) -> dict[str, Any]:
        self.samples.clear()
        self.frames.clear()
        self.server_closes.clear()
        for tablet in self.tablets:
            tablet.gaps = 0
        return {}

    async def op_count(self) -> dict[str, Any]:
        return {"frames": sum(self.frames.values()), "samples": sum(len(s) for s in self.samples.values())}

    async def op_stats(self, series: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = {"protocols": {}}
        everything: list[tuple[float, float]] = []
        for protocol, samples in self.samples.items():
            result["protocols"][protocol] = summarize(samples, series=series)
            everything += samples
        result["all"] = summarize(everything, series=series)
        result["frames"] = dict(self.frames)
        result["gaps"] = sum(t.gaps for t in self.tablets)
        result["server_closes"] = dict(self.server_closes)
        result["open"] = sum(1 for t in self.tablets if t.ws is not None and not t.ws.closed)
        result["errors"] = self.errors[:5]
        return result

    async def op_storm(
        self, concurrency: int = 0, timeout: float = 120.0, start_at: float | None = None
    ) -> dict[str, Any]:
        """Drop every socket at once, then reconnect all of them at once (negotiate + auth + snapshot).

        ``start_at`` (wall clock) lets several fleet processes drop their tablets at the same moment;
        ``times`` are the seconds from then to each tablet's snapshot.
        """
        self.reconnect_to = []
        tablets = list(self.tablets)
        late_by = 0.0
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            late_by = max(0.0, time.time() - start_at)
        # Every fleet times from the agreed moment, so a fleet that started late does not look fast.
        t0 = start_at if start_at is not None else time.time()
        for tablet in tablets:
            tablet.abort()
        semaphore = asyncio.Semaphore(concurrency) if concurrency else None
        failures: dict[str, int] = defaultdict(int)

        async def one(tablet: Tablet) -> float | None:
            for _attempt in range(50):
                try:
                    if semaphore is None:
                        await tablet.open(timeout=timeout)
                    else:
                        async with semaphore:
                            await tablet.open(timeout=timeout)
                    return tablet.snapshot_at - t0
                except Exception as exc:
                    failures[type(exc).__name__ + (f" {exc.status}" if isinstance(exc, Refused) else "")] += 1
                    await asyncio.sleep(0.05)
            return None

        times = await asyncio.gather(*(one(t) for t in tablets))
        # Raw times only: the caller merges every fleet's into one storm.
        return {"failures": dict(failures), "times": [t for t in times if t is not None], "late_by": late_by}

    async def op_follow(self, bases: list[str], interval: float = 0.1, deadline: float = 120.0) -> dict[str, Any]:
        """From now on, a tablet whose socket closes reconnects to ``bases`` (in turn) until it has a snapshot."""
        self.reconnect_to = bases
        self.reconnect_interval = interval
        self.reconnect_deadline = deadline
        for tablet in self.tablets:
            tablet.dropped_at = 0.0
            tablet.reconnected_at = 0.0
        return {}

    async def op_follow_status(self) -> dict[str, Any]:
        dropped = [t for t in self.tablets if t.dropped_at]
        back = [t for t in dropped if t.reconnected_at]
        return {
            "dropped": len(dropped),
            "reconnected": len(back),
            "first_drop": min((t.dropped_at for t in dropped), default=None),
            "last_snapshot": max((t.reconnected_at for t in back), default=None),
            "gap_seconds": summarize_values(sorted(t.reconnected_at - t.dropped_at for t in back)),
        }

    async def op_views(self) -> dict[str, Any]:
        views: dict[str, list[list[str]]] = defaultdict(list)
        for tablet in self.tablets:
            views[tablet.restaurant].append(sorted(tablet.pending))
        return {"views": views, "open": sum(1 for t in self.tablets if t.ws is not None and not t.ws.closed)}

    async def op_snapshots(self, tablets: list[list[str]], secret: str = "") -> dict[str, Any]:
        """Open a throw-away tablet per spec, take its snapshot, close it: what a new tablet would see now."""
        self.secret = secret or self.secret
        found: dict[str, list[str]] = {}
        failures: dict[str, int] = defaultdict(int)

        async def one(spec: list[str]) -> None:
            tablet = Tablet(self, -1, spec[0], spec[1], spec[2])
            for _attempt in range(50):
                try:
                    await tablet.open(timeout=30)
                    found[tablet.restaurant] = sorted(tablet.pending)
                    break
                except Exception as exc:
                    failures[type(exc).__name__] += 1
                    await asyncio.sleep(0.2)
            await _discard(tablet)

        semaphore = asyncio.Semaphore(200)

        async def limited(spec: list[str]) -> None:
            async with semaphore:
                await one(spec)

        await asyncio.gather(*(limited(spec) for spec in tablets))
        return {"snapshots": found, "failures": dict(failures)}

    async def op_close_all(self) -> dict[str, Any]:
        self.closing = True
        for task in list(self._reconnects):
            task.cancel()
        await asyncio.gather(*(_close(t) for t in self.tablets), return_exceptions=True)
        self.tablets.clear()
        self.closing = False
        return {}

    async def op_quit(self) -> dict[str, Any]:
        await self.op_close_all()
        if self._pinger:
            self._pinger.cancel()
        if self.session:
            await self.session.close()
        return {"bye": True}


async def _close(tablet: Tablet) -> None:
    if tablet.ws is not None and not tablet.ws.closed:
        tablet.abort()
    if tablet.reader is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(tablet.reader, 5)


async def _discard(tablet: Tablet) -> None:
    """Close a throw-away tablet's socket without the fleet treating it as a drop."""
    ws = tablet.ws
    tablet.ws = None
    if ws is not None and ws._conn is not None and ws._conn.transport is not None:
        ws._conn.transport.abort()
    reader = tablet.reader
    if reader is not None:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    position = q * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summarize_values(values: list[float]) -> dict[str, Any]:
    """Count, p50/p90/p99/max and mean of sorted values (seconds or ms, whatever came in)."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50": _quantile(values, 0.50),
        "p90": _quantile(values, 0.90),
        "p99": _quantile(values, 0.99),
        "max": values[-1],
        "mean": sum(values) / len(values),
    }


def summarize(samples: list[tuple[float, float]], *, series: bool) -> dict[str, Any]:
    """Latency (ms) summary, a 200-point CDF and a per-second series (by send time)."""
    latencies = sorted(latency for _, latency in samples)
    result = summarize_values(latencies)
    if not latencies:
        return result
    result["cdf"] = [round(_quantile(latencies, i / 200), 3) for i in range(201)]
    if series:
        start = min(sent for sent, _ in samples)
        buckets: dict[int, list[float]] = defaultdict(list)
        for sent, latency in samples:
            buckets[int(sent - start)].append(latency)
        result["series"] = [
            [second, len(values), round(_quantile(sorted(values), 0.5), 2), round(_quantile(sorted(values), 0.99), 2)]
            for second, values in sorted(buckets.items())
        ]
    return result


async def main() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fleet = Fleet()
    await fleet.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    while True:
        line = await reader.readline()
        if not line:
            break
        request = orjson.loads(line)
        op = request.pop("op")
        try:
            reply = await getattr(fleet, f"op_{op}")(**request)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=5)}
        out.write(orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        out.flush()
        if op == "quit":
            break


if __name__ == "__main__":
    asyncio.run(main())
