"""This worker's identity, and the public URLs of the others (learned from them, cached).

Kafka's assignor knows every worker by its internal URL (Faust ``canonical_url``).
Tablets need the *public* one, which differs behind proxies and in containers, so
a worker asks the owner for it once (``GET /api/worker``) and caches the answer.
"""

from __future__ import annotations

import logging
import time

import aiohttp
from yarl import URL

from partner_stream.app import app, settings

log = logging.getLogger(__name__)

#: Short, so a dead worker stops being advertised soon after it stops answering.
PUBLIC_URL_TTL = 10.0


class OwnerUnreachable(Exception):
    """The owner did not answer: do not send tablets to it."""


def internal_url() -> URL:
    return URL(str(app.conf.canonical_url))


def public_url() -> URL:
    return URL(settings.public_url) if settings.public_url else internal_url()


def same_worker(a: URL, b: URL) -> bool:
    return (a.host, a.port) == (b.host, b.port)


class PublicUrls:
    """Maps other workers' internal URLs to their public ones."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[URL, float]] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        return self._session

    async def resolve(self, internal: URL) -> URL:
        if same_worker(internal, internal_url()):
            return public_url()
        key = f"{internal.host}:{internal.port}"
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[1] < PUBLIC_URL_TTL:
            return cached[0]
        try:
            async with self.session.get(internal.with_path("/api/worker")) as response:
                response.raise_for_status()
                public = URL((await response.json())["publicUrl"])
        except (TimeoutError, aiohttp.ClientError, KeyError, ValueError) as exc:
            self._cache.pop(key, None)
            raise OwnerUnreachable(f"worker {internal} did not answer: {exc or type(exc).__name__}") from None
        self._cache[key] = (public, time.monotonic())
        return public

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


public_urls = PublicUrls()
