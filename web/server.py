"""Wires the hub into the Faust worker: one Hub per process, its routes on Faust's web server.

The hub is added with ``app.add_dependency`` so it starts before the web server and
the agents (no push can be missed) and stops after the web server; its sockets are
closed from aiohttp's ``on_shutdown``, or a graceful stop would wait for every tablet
to leave on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from faust.exceptions import ConsumerNotStarted
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from partner_stream import agents
from partner_stream import metrics as stream_metrics
from partner_stream.app import app, by_restaurant_topic, pending_orders, settings
from partner_stream.central_hub_standin import install_board_and_dev_routes
from partner_stream.events import OrderAcknowledged, encode_internal

from . import views
from .budget import ClientBudget
from .endpoints import TabletEndpoints
from .hub import Hub
from .ownership import locate, owner_url, owns_partition
from .protocols.disconnects import NOT_OWNER, UNAVAILABLE
from .workers import owners

log = logging.getLogger(__name__)


async def submit_ack(restaurant_id: str, order_id: str) -> None:
    """Acknowledgements go through the stream like every other state change, never straight to the table."""
    event = OrderAcknowledged(order_id=order_id, restaurant_id=restaurant_id, acknowledged_at=datetime.now(UTC))
    await by_restaurant_topic.send(key=restaurant_id, value=encode_internal(event))


hub = Hub(
    read_snapshot=pending_orders.state_of,
    submit_ack=submit_ack,
    owns=owns_partition,
    ping_interval=settings.hub_ping_interval,
    client_timeout=settings.hub_client_timeout,
    budget=ClientBudget.from_settings(settings),
)
endpoints = TabletEndpoints(hub, settings, views.verifier, locate=locate, confirm_owner=owners.confirm)
app.add_dependency(hub)
agents.change_listeners.append(hub.publish)


def install_routes(web_app: web.Application) -> None:
    endpoints.install(web_app)

    async def close_tablets(_: web.Application) -> None:
        await endpoints.relay.close_all()
        await hub.close_all()

    async def close_clients(_: web.Application) -> None:
        await endpoints.relay.close()
        await owners.close()

    web_app.on_shutdown.append(close_tablets)
    web_app.on_cleanup.append(close_clients)
    if not endpoints.verifier.configured:
        log.warning(
            "tablet authentication is not configured (PARTNER_STREAM_JWT_SECRET / PARTNER_STREAM_JWT_PUBLIC_KEY): "
            "every tablet connection will be refused with 503"
        )


app.add_route_installer(install_routes)
# The order board (/board/, /static/) always; the CentralHub stand-in only in the dev stack.
app.add_route_installer(install_board_and_dev_routes)


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


def fence_tablets() -> None:
    """This worker fenced itself: every tablet goes to a worker that is still in the group."""
    closed = hub.disconnect_all(UNAVAILABLE)
    relayed = endpoints.relay.close_where(lambda restaurant_id, owner: True, UNAVAILABLE)
    log.warning("fenced: closed %d tablet(s) and %d relayed tablet(s)", closed, len(relayed))


app.fence.on_fenced.append(fence_tablets)


@app.on_partitions_revoked.connect
async def count_rebalance(sender: Any, revoked: Any, **kwargs: Any) -> None:
    """Call when a rebalance starts (Faust revokes every partition first)."""
    stream_metrics.REBALANCES.inc()


class ConsumerLagCollector:
    """Prometheus collector: per source partition, highwater minus the next offset to read, at scrape time.

    Table changelogs are left out: a worker reads them only to recover or to keep a standby warm, and
    their "lag" would grow with every write this worker makes, so a "lag growing" alarm would fire on a
    healthy worker.
    """

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "partner_stream_consumer_lag",
            "Records not yet read, per assigned partition.",
            labels=["topic", "partition"],
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        consumer = app.consumer
        # Faust keeps the last read offset per partition in a private mapping; read-only use.
        read_offsets = getattr(consumer, "_read_offset", {})
        try:
            assignment = sorted(consumer.assignment())
        except ConsumerNotStarted:
            assignment = []
        changelogs = app.tables.changelog_topics
        for tp in assignment:
            if tp.topic in changelogs:
                continue
            try:
                highwater = consumer.highwater(tp)
            except (KeyError, AssertionError, ConsumerNotStarted):
                continue
            if highwater is None:
                continue
            read = read_offsets.get(tp)
            lag = highwater - (read + 1 if read is not None else 0)
            family.add_metric([tp.topic, str(tp.partition)], max(0, lag))
        yield family


REGISTRY.register(ConsumerLagCollector())
