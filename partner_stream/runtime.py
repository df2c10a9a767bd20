"""Once the worker is ready: process-level tuning, and the producer taught the table's topics.

With thousands of sockets a worker holds hundreds of thousands of long-lived objects (aiohttp
requests, parsers, tasks, connections), and CPython's full collections rescan all of them: 400-700 ms
stop-the-world pauses were measured with 5,000 tablets, each one a latency spike for every tablet.
So: freeze what exists once startup is done (modules, the app, recovered state) and collect the young
generation less often. Cyclic garbage is still collected, only later.
"""

from __future__ import annotations

import gc
import logging

from . import event_loop
from .app import app, by_restaurant_topic, pending_orders

log = logging.getLogger(__name__)

#: gen-0 allocations between young collections (CPython: 700), then the usual 10/10 ratios made wider.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    log.info("garbage collector tuned: %d startup objects frozen, thresholds %s", gc.get_freeze_count(), GC_THRESHOLDS)


@app.task
async def tune_after_startup() -> None:
    """Faust runs app tasks once, after recovery: the startup objects exist by then."""
    tune_garbage_collector()
    log.info("event loop: %s", event_loop.loop_name())


@app.task
async def learn_table_partitions() -> None:
    """Make the producer keep the metadata of the topics Faust hashes restaurant IDs against.

    Faust's ``table_route`` (the operator API, the owner lookup) asks the producer which partition
    a key is on, and aiokafka's producer refreshes metadata only for the topics it tracks (those
    it has produced to): on a worker that has not written the changelog yet, routed requests
    would fail. ``add_topic`` tracks the topic for good (``partitions_for`` would only fetch it once).
    """
    client = app.producer._ensure_producer().client  # the aiokafka producer Faust wraps
    for topic in (pending_orders.changelog_topic.get_topic_name(), by_restaurant_topic.get_topic_name()):
        await client.add_topic(topic)
