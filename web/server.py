"""Wires the hub into the Faust worker: one Hub per process, its routes on Faust's web server.

The hub is added with ``app.add_dependency`` so it starts before the web server and
the agents (no push can be missed) and stops after the web server; its sockets are
closed from aiohttp's ``on_shutdown``, or a graceful stop would wait for every tablet
to leave on its own.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from partner_stream import agents
from partner_stream.app import app, by_restaurant_topic, pending_orders, settings
from partner_stream.events import OrderAcknowledged, encode_internal
from tables.model import RestaurantOrders

from .access_log import access_log
from .endpoints import TabletEndpoints
from .hub import Hub
from .ownership import owns_partition

log = logging.getLogger(__name__)


def read_snapshot(restaurant_id: str) -> RestaurantOrders:
    return pending_orders.get(restaurant_id) or RestaurantOrders.empty(restaurant_id)


async def submit_ack(restaurant_id: str, order_id: str) -> None:
    """Acknowledgements go through the stream like every other state change, never straight to the table."""
    event = OrderAcknowledged(order_id=order_id, restaurant_id=restaurant_id, acknowledged_at=datetime.now(UTC))
    await by_restaurant_topic.send(key=restaurant_id, value=encode_internal(event))


hub = Hub(
    read_snapshot=read_snapshot,
    submit_ack=submit_ack,
    owns=owns_partition,
    ping_interval=settings.hub_ping_interval,
    client_timeout=settings.hub_client_timeout,
)
endpoints = TabletEndpoints(hub, settings)
app.add_dependency(hub)
agents.change_listeners.append(hub.publish)


def install_routes(web_app: web.Application) -> None:
    web_app.middlewares.append(access_log)
    endpoints.install(web_app)

    async def close_tablets(_: web.Application) -> None:
        await hub.close_all()

    web_app.on_shutdown.append(close_tablets)


app.add_route_installer(install_routes)


@app.on_partitions_assigned.connect
async def close_moved_restaurants(sender: Any, assigned: Any, **kwargs: Any) -> None:
    """Call when a rebalance hands out partitions: tablets of restaurants now owned elsewhere must reconnect."""
    hub.disconnect_not_owned()


if not endpoints.verifier.configured:
    log.warning(
        "tablet authentication is not configured (PARTNER_STREAM_JWT_SECRET / PARTNER_STREAM_JWT_PUBLIC_KEY): "
        "every tablet connection will be refused with 503"
    )
