"""Faust's aiohttp web driver with a listen backlog sized for reconnect storms.

Faust starts its site with aiohttp's default backlog of 128. When a worker restarts, thousands of
tablets reconnect within a second; connections beyond the backlog have their SYNs dropped and the
clients wait out TCP's 1-3-7-15 s retransmit back-off (a 5,000-tablet storm had a 66 s p99 because of
it). The kernel caps the value at ``net.core.somaxconn``.
"""

from __future__ import annotations

from aiohttp.web import BaseSite, TCPSite
from faust.web.drivers import DRIVERS
from faust.web.drivers.aiohttp import Web

SCHEME = "partner-aiohttp"
LISTEN_BACKLOG = 4096


class StormReadyWeb(Web):
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
