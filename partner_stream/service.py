"""The composition root: the one module that knows every layer, and wires them into a worker.

Imports run one way: the event contract (``partner_stream.events``) -> the pending-orders
state (``tables``) -> the stream (``partner_stream.app``, ``agents``, ``runtime``) -> the tablet
side (``web``) -> here. Importing this module builds the Faust app and registers, in data-flow
order, the agents and timers, the tablet hub, the HTTP views and the routes, and the rebalance
and fencing reactions that connect them. Nothing else imports it: ``faust -A partner_stream
worker`` reaches it by asking the package for ``app``.

The hub is added with ``app.add_dependency`` so it starts before the web server and the agents
(no push can be missed) and stops after the web server; its sockets are closed from aiohttp's
``on_shutdown``, or a graceful stop would wait for every tablet to leave on its own.
"""
# ruff: noqa: I001  (import order is registration order)

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any

from aiohttp import web as aiohttp_web
from prometheus_client import REGISTRY

from .app import app, pending_orders, settings
from . import agents, runtime  # runtime: timers and rebalance reactions of the stream (and the announcer)
from . import metrics as stream_metrics
from .dev.central_hub_standin import install_central_hub_standin, standin_enabled

from partner_stream_web import views
from partner_stream_web.board import board_route_installer
from partner_stream_web.budget import ClientBudget
from partner_stream_web.endpoints import TabletEndpoints
from partner_stream_web.hub import Hub
from partner_stream_web.ownership import locate, owner_url, owners, owns_partition
from partner_stream_web.protocols.disconnects import NOT_OWNER, UNAVAILABLE

log = logging.getLogger(__name__)

# -- the tablet side, fed by the stream ------------------------------------------------------

hub = Hub(
    read_snapshot=pending_orders.state_of,
    read_version=pending_orders.version_of,
    submit_ack=agents.submit_acknowledgement,
    owns=owns_partition,
    ping_interval=settings.hub_ping_interval,
    client_timeout=settings.hub_client_timeout,
    budget=ClientBudget.from_settings(settings),
)
endpoints = TabletEndpoints(hub, settings, views.verifier, locate=locate, confirm_owner=owners.confirm)
app.add_dependency(hub)
agents.change_listeners.append(hub.publish)
# Every tablet of a restaurant ends on its owner's hub (relays pipe there): its count is the cluster's.
runtime.announcer.ports = dataclasses.replace(runtime.announcer.ports, count_tablets=hub.count)
views.serve_tablets(hub, endpoints.relay)


def install_tablet_routes(web_app: aiohttp_web.Application) -> None:
    endpoints.install(web_app)

    async def close_tablets(_: aiohttp_web.Application) -> None:
        await endpoints.relay.close_all()
        await hub.close_all()

    async def close_clients(_: aiohttp_web.Application) -> None:
        await endpoints.relay.close()
        await owners.close()

    web_app.on_shutdown.append(close_tablets)
    web_app.on_cleanup.append(close_clients)
    if not endpoints.verifier.configured:
        log.warning(
            "tablet authentication is not configured (PARTNER_STREAM_JWT_SECRET / PARTNER_STREAM_JWT_PUBLIC_KEY): "
            "every tablet connection will be refused with 503"
        )


def install_dev_routes(web_app: aiohttp_web.Application) -> None:
    """The CentralHub stand-in, in the dev stack only (it refuses to install anywhere else)."""
    if standin_enabled(settings):
        install_central_hub_standin(web_app, settings)


app.add_route_installer(install_tablet_routes)
app.add_route_installer(board_route_installer(settings.unseen_thresholds[0]))  # the board marks unseen orders
app.add_route_installer(install_dev_routes)

# -- reactions to the group: rebalances and fencing --------------------------------------------


@app.on_partitions_assigned.connect
async def close_moved_restaurants(sender: Any, assigned: Any, **kwargs: Any) -> None:
    """Call when a rebalance hands out partitions: tablets of restaurants now owned elsewhere must reconnect.

    That includes tablets relayed to another worker that no longer owns their restaurant (or never answered
    for it again): a frozen or cut-off worker must not keep them.
    """
    hub.disconnect_not_owned()
    moved = endpoints.relay.close_where(lambda restaurant_id, owner: owner_url(restaurant_id) != owner, NOT_OWNER)
    if moved:
        log.info("closed %d relayed tablet(s) whose restaurant changed owner", len(moved))


@app.on_partitions_revoked.connect
async def count_rebalance(sender: Any, revoked: Any, **kwargs: Any) -> None:
    """Call when a rebalance starts (Faust revokes every partition first)."""
    stream_metrics.REBALANCES.inc()


def fence_tablets() -> None:
    """This worker fenced itself: every tablet goes to a worker that is still in the group."""
    closed = hub.disconnect_all(UNAVAILABLE)
    relayed = endpoints.relay.close_where(lambda restaurant_id, owner: True, UNAVAILABLE)
    log.warning("fenced: closed %d tablet(s) and %d relayed tablet(s)", closed, len(relayed))


app.fence.on_fenced.append(fence_tablets)
REGISTRY.register(stream_metrics.ConsumerLagCollector(app))

# Importing ``partner_stream.app`` bound the *module* to the package's ``app`` attribute; Faust's
# ``-A partner_stream`` looks up that attribute and must find the App.
sys.modules["partner_stream"].app = app  # type: ignore[attr-defined]

__all__ = ["app"]
