"""Process-level tuning once the worker is ready, and the data dir's free space watched while it runs.

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
from .app import app

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


@app.timer(interval=30.0)
async def watch_free_space() -> None:
    """Warn before the data dir's disk fills up (a full disk pauses event processing)."""
    if app.free_space is not None:
        app.free_space.check()
