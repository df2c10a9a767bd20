"""Tablet-side helpers: tokens, and a plain-protocol WebSocket client built on aiohttp."""

from __future__ import annotations

import asyncio
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
