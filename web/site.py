"""Faust's aiohttp web driver: a listen backlog sized for reconnect storms, an access log, and bounds.

Faust starts its site with aiohttp's default backlog of 128. When a worker restarts, thousands of
tablets reconnect within a second; connections beyond the backlog have their SYNs dropped and the
clients wait out TCP's 1-3-7-15 s retransmit back-off (a 5,000-tablet storm had a 66 s p99 because of
it). The kernel caps the value at ``net.core.somaxconn``. Faust also builds its runner with no
access log; this one logs each request through :class:`web.access_log.RedactingAccessLogger`.

Bounds: aiohttp keeps an idle keep-alive connection for an hour by default, and one that
never finishes its headers (slowloris) or lingers after a refusal just as long. Here the
keep-alive timer, which aiohttp also arms at connect, is ``PARTNER_STREAM_HTTP_IDLE_TIMEOUT``,
and :mod:`web.capacity` caps open connections under the open-file limit.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.web import AppRunner, BaseSite, TCPSite
from faust.types import AppT
from faust.web.drivers import DRIVERS
from faust.web.drivers.aiohttp import Web

from . import capacity
from .access_log import RedactingAccessLogger, quiet_client_errors
from .access_log import log as access_log
from .capacity import ConnectionCap

SCHEME = "partner-aiohttp"
LISTEN_BACKLOG = 4096


class CappedTCPSite(TCPSite):
    """A TCP site whose listener turns connections beyond the cap away before aiohttp sees them."""

    def __init__(self, runner: AppRunner, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(runner, *args, **kwargs)
        self.max_connections = max_connections

    async def start(self) -> None:
        # TCPSite.start, with a protocol factory that asks the cap first.
        await BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        # aiohttp's ``server.connections`` copies every open connection into a new list: asked on each accept,
        # a storm of N reconnects cost O(N^2) (2-3 % of the worker's CPU at 5,000 tablets). Its dict's length
        # is the same count.
        open_connections = server._connections
        cap = ConnectionCap(self.max_connections, open_connections.__len__)
        capacity.OPEN.set_function(open_connections.__len__)
        self._server = await asyncio.get_running_loop().create_server(
            cap.protocol_factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]


class StormReadyWeb(Web):
    def __init__(self, app: AppT, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        from partner_stream.settings import get_settings  # here: the app module imports this one

        settings = get_settings()
        quiet_client_errors()
        planned = capacity.plan_capacity(settings.http_max_connections)
        capacity.report(planned)
        self.max_connections = planned.max_connections
        self._runner = AppRunner(
            self.web_app,
            access_log=access_log,
            access_log_class=RedactingAccessLogger,
            keepalive_timeout=settings.http_idle_timeout,
        )

    def _new_transport_tcp(self) -> BaseSite:
        return CappedTCPSite(
            self._runner,
            self.app.conf.web_bind,
            self.app.conf.web_port,
            ssl_context=self.app.conf.web_ssl_context,
            backlog=LISTEN_BACKLOG,
            max_connections=self.max_connections,
        )


def register() -> None:
    """Make ``partner-aiohttp://`` (the ``web`` setting) name this driver; idempotent."""
    DRIVERS.aliases[SCHEME] = f"{__name__}:StormReadyWeb"
