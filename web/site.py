"""Faust's aiohttp web driver with a listen backlog sized for reconnect storms and an access log.

Faust starts its site with aiohttp's default backlog of 128. When a worker restarts, thousands of
tablets reconnect within a second; connections beyond the backlog have their SYNs dropped and the
clients wait out TCP's 1-3-7-15 s retransmit back-off (a 5,000-tablet storm had a 66 s p99 because of
it). The kernel caps the value at ``net.core.somaxconn``. Faust also builds its runner with no
access log; this one logs each request through :class:`web.access_log.RedactingAccessLogger`.
"""

from __future__ import annotations

from typing import Any

from aiohttp.web import AppRunner, BaseSite, TCPSite
from faust.types import AppT
from faust.web.drivers import DRIVERS
from faust.web.drivers.aiohttp import Web

from .access_log import RedactingAccessLogger
from .access_log import log as access_log

SCHEME = "partner-aiohttp"
LISTEN_BACKLOG = 4096


class StormReadyWeb(Web):
    def __init__(self, app: AppT, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._runner = AppRunner(self.web_app, access_log=access_log, access_log_class=RedactingAccessLogger)

    def _new_transport_tcp(self) -> BaseSite:
        return TCPSite(
            self._runner,
            self.app.conf.web_bind,
            self.app.conf.web_port,
            ssl_context=self.app.conf.web_ssl_context,
            backlog=LISTEN_BACKLOG,
        )


def register() -> None:
    """Make ``partner-aiohttp://`` (the ``web`` setting) name this driver; idempotent."""
    DRIVERS.aliases[SCHEME] = f"{__name__}:StormReadyWeb"
