"""Run the worker on uvloop unless Faust was told which loop to use (``-L``/``FAUST_LOOP``).

Most of a loaded worker's time is event-loop work: socket writes to tablets, Kafka requests,
callbacks. uvloop does that in C: the throughput ramp pushed ~20 % more events per second
with it (docs/benchmarks.md). Faust's own switch (``faust -L uvloop``) only works on the
command line, so the app installs the policy in ``App.worker_init``, which Faust calls when
a command (``faust -A partner_stream worker``, ``partner-stream worker``, the container)
prepares the app, before it creates the worker's loop; Faust's consumer thread builds its
loop from the same policy. Importing the package (tests, tools, the bench harness) changes
nothing. ``FAUST_LOOP=aio`` (or ``-L aio``) keeps asyncio's default loop.
"""

from __future__ import annotations

import asyncio
import os

LOOP_ENV = "FAUST_LOOP"


def install() -> None:
    """Make uvloop the default event loop policy, unless a loop was chosen explicitly or is running."""
    if os.environ.get(LOOP_ENV):
        return  # faust's -L / FAUST_LOOP already applied its choice when faust was imported
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return  # called with a loop already running (app.main() from async code): never swap a policy under it
    try:
        import uvloop
    except ImportError:  # not installed (e.g. Windows): asyncio's loop works, only slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"
