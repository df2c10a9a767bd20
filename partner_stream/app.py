"""The Faust app, its topics and the pending-orders table, built from :mod:`settings`.

Data flow: the three upstream topics -> ``rekey_by_restaurant`` (decode, validate,
dead-letter) -> the internal by-restaurant topic -> ``apply_to_pending_orders``
-> the ``pending-orders`` table (RocksDB + changelog) -> the hub. A record already on
its restaurant's partition skips the internal topic (:mod:`routing`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from partner_stream_tables import store
from partner_stream_tables.storage import create_table

from . import event_loop
from .client_logs import limit_library_logs
from .disk import FreeSpaceWatch
from .faust_patches import check_versions, connection, offset_holes, transport
from .fencing import Fence
from .settings import ENV_PREFIX, Settings, get_settings


def embedded_broker_overrides() -> dict[str, Any]:
    """Faust settings the embedded Tansu broker needs; never applied to a real cluster.

    - Short session timeout: Tansu holds every JoinGroup for session_timeout / 2.

    (Producer batches stay Faust's: the recovery reads each changelog's true end, faust_patches/end_offsets.py.)
    """
    return {
        "broker_session_timeout": 6.0,
        "broker_heartbeat_interval": 1.0,
        "broker_rebalance_timeout": 10.0,
    }


class PartnerStreamApp(faust.App):
    """A Faust app that also knows its tuned fetch wait and mounts the hub's routes once."""

    #: Consumer fetch max wait (ms) forced by :mod:`partner_stream.faust_patches.transport`, or None for Faust's.
    fetch_max_wait_ms: int | None = None
    #: Whether recovery reads each partition's end from its newest batch (the embedded broker), not ListOffsets.
    true_end_offsets: bool = False
    #: Callbacks that add raw aiohttp routes (WebSockets) to Faust's web server before it starts.
    _route_installers: list
    _routes_installed: bool = False
    #: Free space of the data dir (a gauge, and a warning before RocksDB's writes fail).
    free_space: FreeSpaceWatch | None = None
    #: Whether this worker has fenced itself off (no heartbeat to the group): partner_stream/fencing.py.
    fence: Fence
    #: The settings the app was built from (``conf`` is Faust's own).
    service_settings: Settings

    def worker_init(self) -> None:
        """Faust calls this when a command (``faust worker``) prepares the app, before it creates the loop."""
        from .broker_check import check_broker_profile

        check_broker_profile(self.service_settings)
        event_loop.install()
        limit_library_logs()
        super().worker_init()
        if self.free_space is not None:
            self.free_space.report_at_start()

    def add_route_installer(self, installer: Any) -> None:
        self._route_installers.append(installer)

    def on_webserver_init(self, web: Any) -> None:
        """Call when Faust builds its web server; under ``faust worker`` this runs three times."""
        if self._routes_installed:
            return
        self._routes_installed = True
        for installer in self._route_installers:
            installer(web.web_app)


def create_app(settings: Settings) -> PartnerStreamApp:
    check_versions()
    connection.install()
    transport.register()
    store.register()
    brokers = settings.broker_urls
    options: dict[str, Any] = {
        "broker": brokers,
        "env_prefix": ENV_PREFIX,
        # RocksDB, with a changelog replay that keeps each key's newest record (tables/store.py).
        "store": f"{store.SCHEME}://",
        "datadir": str(settings.app_datadir),
        "topic_partitions": settings.topic_partitions,
        "table_standby_replicas": settings.table_standby_replicas,
        "web_bind": settings.web_bind,
        "web_port": settings.web_port,
        "processing_guarantee": settings.processing_guarantee,
        # A new deployment reads what the OrderService already wrote: no order is skipped.
        "consumer_auto_offset_reset": "earliest",
        "autodiscover": False,
        "origin": "partner_stream",
        # Faust's web server with a listen backlog for reconnect storms (web/site.py).
        "web": "partner-aiohttp://",
        # Faust's end-of-rebalance seek races the first fetch and can skip records (see recovery.py).
        "TableManager": "partner_stream.faust_patches.recovery:KeepReadRecordsTableManager",
    }
    if settings.web_host:
        options["web_host"] = settings.web_host
    if settings.embedded:
        options.update(embedded_broker_overrides())
    fetch_wait = settings.effective_fetch_max_wait_ms
    # Always: its fetch cannot swallow a backlog in a takeover (partner_stream/faust_patches/transport.py).
    options["broker_consumer"] = transport.consumer_urls(brokers)
    app = PartnerStreamApp(settings.app_id, **options)
    app._route_installers = []
    app.service_settings = settings
    app.fetch_max_wait_ms = fetch_wait
    app.paced_fetch = settings.paced_fetch
    # Tansu shows an offset before it stores its batch; a fetch must wait for it (faust_patches/offset_holes.py).
    app.offset_hole_grace = offset_holes.DEFAULT_HOLE_GRACE if settings.embedded else None
    # Tansu's ListOffsets counts a multi-record batch as one record (faust_patches/end_offsets.py).
    app.true_end_offsets = settings.embedded
    app.free_space = FreeSpaceWatch(lambda: Path(app.conf.datadir), settings.disk_low_free_mb)
    # The limit is set from Faust's session timeout once the worker runs (runtime.watch_heartbeats).
    app.fence = Fence(silence_limit=float("inf"))
    return app


settings = get_settings()
app = create_app(settings)

#: Upstream topics, consumed as raw bytes: the producer is .NET and writes plain JSON.
order_events_topic = app.topic(
    settings.topic_order_created,
    settings.topic_order_accepted,
    settings.topic_order_rejected,
    key_serializer="raw",
    value_serializer="raw",
)

#: Every event re-keyed by restaurant ID: one ordered stream per restaurant, co-partitioned
#: with the table, whatever partitioner the upstream producer used.
by_restaurant_topic = app.topic(
    f"{settings.app_id}-orders-by-restaurant",
    key_type=str,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
    internal=True,
)

#: Events we can never apply, with their original bytes and the reason in headers.
dead_letter_topic = app.topic(settings.topic_dead_letter, key_serializer="raw", value_serializer="raw")

#: What the platform is told about each order: a tablet saw it, or none did in time (partner_stream/announcements.py).
order_seen_topic = app.topic(settings.topic_order_seen, key_serializer="raw", value_serializer="raw")
order_unseen_topic = app.topic(settings.topic_order_unseen, key_serializer="raw", value_serializer="raw")

#: Each restaurant's pending orders (RocksDB + changelog), co-partitioned with the re-key topic.
pending_orders = create_table(app, partitions=settings.topic_partitions)
#: A fenced worker writes nothing until its table was rebuilt after the rejoin (partner_stream/fencing.py).
pending_orders.writes_held = lambda: app.fence.writes_held
