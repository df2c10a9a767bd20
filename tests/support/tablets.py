"""Tablet-side helpers: tokens, and a plain-protocol WebSocket client built on aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt

from tests.support.workers import TEST_JWT_SECRET, Worker


def tablet_token(restaurant: str, *, ttl: int = 3600, secret: str = TEST_JWT_SECRET) -> str:
    now = int(time.time())
    return jwt.encode({"restaurantId": restaurant, "iat": now, "exp": now + ttl}, secret, algorithm="HS256")


def expired_token(restaurant: str) -> str:
    now = int(time.time())
    return jwt.encode({"restaurantId": restaurant, "iat": now - 7200, "exp": now - 3600}, TEST_JWT_SECRET, "HS256")


class PlainTablet:
    """A tablet speaking the plain protocol; collects every message it receives."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str] | None = None
        self._changed = asyncio.Condition()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, worker: Worker, restaurant: str, token: str | None = None) -> PlainTablet:
        session = aiohttp.ClientSession()
        token = token or tablet_token(restaurant)
        url = f"{worker.base_url.replace('http', 'ws')}/ws/partner?restaurantId={restaurant}&access_token={token}"
        try:
            ws = await session.ws_connect(url, heartbeat=None)
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                async with self._changed:
                    self.messages.append(message.json())
                    self._changed.notify_all()
        async with self._changed:
            self.closed = (self.ws.close_code, "")
            self._changed.notify_all()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool] | str, *, timeout: float = 30.0, since: int = 0
    ) -> dict[str, Any]:
        check = (lambda m: m.get("type") == predicate) if isinstance(predicate, str) else predicate

        def found() -> dict[str, Any] | None:
            return next((m for m in self.messages[since:] if check(m)), None)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None or self.closed), timeout)
            except TimeoutError:
                raise AssertionError(f"no matching message in {timeout} s; got {self.messages[since:]}") from None
            match = found()
            if match is None:
                raise AssertionError(f"socket closed {self.closed} before a match; got {self.messages[since:]}")
            return match

    async def wait_closed(self, timeout: float = 30.0) -> tuple[int | None, str]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.closed is not None), timeout)
            assert self.closed is not None
            return self.closed

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self._reader, 10)
        await self.session.close()


class LiveBoard:
    """A plain-protocol tablet that reconnects forever through one address and keeps its own order list.

    It applies the protocol's contract: a snapshot replaces everything, a change with seq n+1
    is applied, any other seq jump asks for a snapshot. Its ``orders`` are what a kitchen sees.
    """

    def __init__(self, base_url: str, restaurant: str, *, retry_delay: float = 0.25) -> None:
        self.url = f"{base_url.replace('http', 'ws')}/ws/partner?restaurantId={restaurant}"
        self.restaurant = restaurant
        self.retry_delay = retry_delay
        self.orders: dict[str, dict[str, Any]] = {}
        self.seq = -1
        self.connects = 0
        self.close_codes: list[int | None] = []
        #: (connection number, type, seq, order id or snapshot size, resume sent) of every message, for diagnosis.
        self.history: list[tuple[Any, ...]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> LiveBoard:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    token = tablet_token(self.restaurant)
                    async with session.ws_connect(f"{self.url}&access_token={token}", heartbeat=None) as ws:
                        self.connects += 1
                        async for message in ws:
                            if message.type == aiohttp.WSMsgType.TEXT:
                                await self._apply(ws, message.json())
                        self.close_codes.append(ws.close_code)
                except (aiohttp.ClientError, OSError):
                    pass
                # Reconnect pacing, as a real tablet's back-off would do.
                await asyncio.sleep(self.retry_delay)

    async def _apply(self, ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> None:
        kind, seq = message.get("type"), message.get("seq")
        if kind == "ping":
            await ws.send_json({"type": "ping"})  # keeps the server's client timeout from firing
            return
        data = message.get("data") or {}
        self.history.append((self.connects, kind, seq, data.get("orderId", len(data.get("orders", [])))))
        async with self._changed:
            if kind == "PendingOrders":
                self.orders = {o["orderId"]: o for o in message["data"]["orders"]}
                self.seq = seq
            elif kind in {"NewOrder", "OrderAccepted", "OrderRejected", "OrderAcknowledged"}:
                if seq != self.seq + 1:
                    self.history.append((self.connects, "resume-sent", self.seq))
                    await ws.send_json({"type": "resume", "seq": self.seq})  # gap: ask for a snapshot
                    return
                self.seq = seq
                order_id = message["data"]["orderId"]
                if kind == "NewOrder":
                    self.orders[order_id] = message["data"]
                elif kind in {"OrderAccepted", "OrderRejected"}:
                    self.orders.pop(order_id, None)
            self._changed.notify_all()

    async def wait_for_orders(self, expected: set[str], *, exact: bool = True, timeout: float = 60.0) -> None:
        """Wait until the board shows exactly ``expected`` (or at least it, while orders still flow)."""

        def shown() -> bool:
            return set(self.orders) == expected if exact else expected <= set(self.orders)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(shown), timeout)
            except TimeoutError:
                missing, extra = expected - set(self.orders), set(self.orders) - expected
                story = [h for h in self.history if h[1] != "NewOrder" or h[3] in missing or h[1] == "resume-sent"]
                raise AssertionError(
                    f"{self.restaurant}: missing {sorted(missing)}, unexpected {sorted(extra)[:20]} "
                    f"(connects={self.connects}, closes={self.close_codes}); history: {story[:60]}"
                ) from None
